"""What a finished fold and a finished study are worth: the fold's choice (best trial or
Pareto front, under the constraints), parameter importance, the overfitting statistics;
the out-of-sample test of a walk-forward fold; the study's curves and summary.

How a fold chooses. Only complete trials that satisfy every constraint compete. With one
objective the best value in its direction wins (the lowest trial number on a tie). With
several, the Pareto front is Optuna's (`Study.best_trials`, in an in-memory study built
from the rows) and the choice is the front's best on the first objective.

How a walk-forward is stitched. One engine run over the whole out-of-sample span, with
each fold's chosen parameters deciding the target positions on its own out-of-sample bars
(indicators warmed up on the bars before them): the equity compounds from one fold into
the next, and a position both folds' parameters hold across a boundary is simply kept, as
it would be in live trading. Bars no fold covers (a step longer than out_of_sample) stay
flat. The whole-period optimum is tested over the same span the same way, so the two
curves compare like with like; it chose with hindsight of that span, the folds did not.

Walk-forward efficiency (Pardo) = annualised out-of-sample return / annualised in-sample
return: per fold, and overall as the stitched curve's over the mean of the folds'
in-sample ones. Undefined (None) when the in-sample return is not positive.
"""

from __future__ import annotations

import io
import json
import statistics
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
import pandas as pd
from django.conf import settings
from django.utils import timezone

from backtests.engine import run_positions
from backtests.models import RunStatus
from backtests.services import run_engine_config
from persistence.downloads import PARQUET_MIME
from persistence.hashing import params_hash
from persistence.models import StorageFormat
from persistence.selectors import artifact_for_hash
from persistence.services import (
    artifact_save,
    cache_load,
    cache_lookup,
    cache_lookup_many,
    cache_store,
)
from strategies.library.registry import get_kind
from studies import stats
from studies.evaluation import InfeasibleTrial, positions_for, stitched_positions, window_evaluate
from studies.models import FoldRole, Study, StudyFold, StudyTrial, TrialState
from studies.search import distributions
from studies.selectors import EQUITY_ARTIFACT
from studies.services.keys import (
    FOLD_CACHE_KIND,
    RESULT_CACHE_KIND,
    STUDY_VERSION,
    TRIAL_CACHE_KIND,
    oos_key,
    study_candles,
    window_data_version,
)
from studies.services.messages import fold_message, send_on_commit
from studies.services.trials import plain

# Bins of the PBO logit histogram kept on the fold (the logits themselves are ~13,000).
LOGIT_BINS = 20


def _in_memory(study: Study, trials: list[StudyTrial], *, first_only: bool = False) -> Any:
    directions = [objective["direction"] for objective in study.objectives]
    if first_only:
        directions = directions[:1]
    memory = optuna.create_study(directions=directions, storage=optuna.storages.InMemoryStorage())
    space = distributions(study.search_space)
    memory.add_trials(
        [
            optuna.trial.create_trial(
                params=trial.params,
                distributions={name: space[name] for name in trial.params if name in space},
                values=(trial.values or [])[: len(directions)],
                user_attrs={"slot": trial.slot},
            )
            for trial in trials
        ]
    )
    return memory


def _importance(study: Study, trials: list[StudyTrial]) -> dict[str, float]:
    """Optuna's PED-ANOVA importance of each searched parameter for the first objective
    (scikit-learn-free; Watanabe et al., 2023). Empty when too few trials vary a parameter
    for it to say anything."""
    if len(trials) < 4 or not study.search_space:
        return {}
    memory = _in_memory(study, trials, first_only=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                memory, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {name: round(float(value), 6) for name, value in found.items()}


def fold_choice(study: Study, trials: list[StudyTrial]) -> dict[str, Any]:
    """The fold's best trial (and Pareto front) among its feasible complete trials."""
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.feasible and t.values]
    by_slot = {t.slot: t for t in feasible}
    if not feasible:
        return {"best": None, "pareto_front": [], "importance": {}}
    memory = _in_memory(study, feasible)
    if len(study.objectives) == 1:
        best = by_slot[memory.best_trial.user_attrs["slot"]]
        front: list[StudyTrial] = []
    else:
        front = sorted(
            (by_slot[t.user_attrs["slot"]] for t in memory.best_trials), key=lambda t: t.slot
        )
        sign = 1.0 if study.objectives[0]["direction"] == "maximize" else -1.0
        best = max(front, key=lambda t: (sign * t.values[0], -t.slot))  # type: ignore[index]
    return {
        "best": best,
        "pareto_front": [
            {"number": t.number, "slot": t.slot, "values": t.values, "params": t.params}
            for t in front
        ],
        "importance": _importance(study, feasible),
    }


def _returns_of(trials: list[StudyTrial]) -> dict[str, list[float]]:
    hashes = [t.params_hash for t in trials if t.params_hash]
    found = cache_lookup_many(kinds=[TRIAL_CACHE_KIND], params_hashes=hashes)
    return {key: json.loads(cache_load(entry=entry))["returns"] for key, entry in found.items()}


def overfitting(trials: list[StudyTrial], best: StudyTrial | None) -> dict[str, Any] | None:
    """DSR of the chosen trial and PBO of the choice, over every complete trial's
    per-period returns (studies.stats; Sharpe ratios per period). None with fewer than two
    complete trials, or without a choice."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.params_hash]
    if best is None or len(complete) < 2:
        return None
    returns = _returns_of(complete)
    series = [returns[t.params_hash] for t in complete if t.params_hash in returns]
    if best.params_hash not in returns or len(series) < 2:
        return None
    length = min(len(s) for s in series)
    matrix = np.array([s[-length:] for s in series]).T
    dsr = stats.deflated_sharpe_ratio(
        best_returns=returns[best.params_hash],
        trial_sharpes=[stats.sharpe_ratio(np.asarray(s)) for s in series],
    )
    pbo = stats.probability_of_backtest_overfitting(matrix)
    pbo_data = pbo.as_dict(with_logits=False)
    if pbo.logits:
        counts, edges = np.histogram(pbo.logits, bins=LOGIT_BINS)
        pbo_data["logit_histogram"] = {
            "edges": [round(float(e), 6) for e in edges],
            "counts": counts.tolist(),
        }
    return plain(
        {
            "performance": "per-period Sharpe ratio of each trial's returns over "
            f"{length} equal periods of its window",
            "deflated_sharpe_ratio": dsr.as_dict(),
            "probability_of_backtest_overfitting": pbo_data,
        }
    )


def _trial_row(trial: StudyTrial) -> dict[str, Any]:
    """A trial as the fold cache keeps it (and a cache hit brings it back)."""
    return {
        "slot": trial.slot,
        "number": trial.number,
        "state": trial.state,
        "params": trial.params,
        "values": trial.values,
        "metrics": trial.metrics,
        "constraint_values": trial.constraint_values,
        "feasible": trial.feasible,
        "error": trial.error,
        "params_hash": trial.params_hash,
        "duration_seconds": trial.duration_seconds,
    }


def _oos_test(study: Study, fold: StudyFold) -> None:
    """Test the fold's choice on its out-of-sample window (cached like any trial)."""
    chosen = fold.chosen_parameters
    if fold.role != FoldRole.FOLD or chosen is None:
        return
    assert fold.oos_end_bar is not None and fold.oos_start is not None
    assert fold.oos_end is not None
    kind = get_kind(study.kind)
    lookback = min(fold.is_end_bar, kind.warmup_bars(kind.validate(chosen)) + 1)
    candles = study_candles(study)
    version = window_data_version(
        study, start=candles.index[fold.is_end_bar - lookback].to_pydatetime(), end=fold.oos_end
    )
    key = oos_key(
        study,
        chosen,
        start=fold.oos_start,
        end=fold.oos_end,
        lookback=lookback,
        data_version=version,
    )
    entry = cache_lookup(kind=TRIAL_CACHE_KIND, params_hash=key) if study.use_cache else None
    if entry is not None:
        metrics = json.loads(cache_load(entry=entry))["metrics"]
    else:
        try:
            evaluated = window_evaluate(
                candles,
                study.kind,
                chosen,
                run_engine_config(study),
                start=fold.is_end_bar,
                end=fold.oos_end_bar,
                lookback=lookback,
                periods=settings.STUDY_RETURN_PERIODS,
            )
        except InfeasibleTrial as exc:
            fold.error = f"The chosen parameters cannot trade out of sample: {exc}"
            return
        metrics = plain(evaluated.metrics)
        cache_store(
            kind=TRIAL_CACHE_KIND,
            params_hash=key,
            content=json.dumps({"metrics": metrics, "returns": evaluated.returns}).encode(),
            format=StorageFormat.JSON,
        )
    fold.oos_metrics = metrics
    fold.oos_params_hash = key


def _fold_close(study: Study, fold: StudyFold) -> None:
    fold.status = RunStatus.SUCCEEDED
    fold.finished_at = timezone.now()
    fold.save()
    if fold.role == FoldRole.FOLD:
        study.folds_done += 1
    study.save(update_fields=["folds_done"])
    send_on_commit(study.pk, fold_message(study, fold))


def fold_finish_locked(study: Study, fold: StudyFold) -> None:
    """Close a fold whose trials have all finished: choose, measure, test out of sample, and
    cache the fold's optimisation under its key. The caller holds the study's lock."""
    trials = list(fold.trials.order_by("slot"))
    choice = fold_choice(study, trials)
    best: StudyTrial | None = choice["best"]
    fold.best_trial_number = best.number if best else None
    fold.best_values = best.values if best else None
    fold.chosen_parameters = {**study.parameters, **best.params} if best else None
    fold.is_metrics = best.metrics if best else {}
    fold.pareto_front = choice["pareto_front"]
    fold.importance = choice["importance"]
    fold.overfitting = overfitting(trials, best) or {}
    if best is None:
        fold.error = (
            "No trial was complete and feasible in this window: nothing was chosen, and the "
            "fold holds no position out of sample."
        )
    _oos_test(study, fold)
    # Stored whatever use_cache said (it decides what is read, and this is a valid result
    # under its full key), unless a trial failed: a lost worker is no property of the inputs.
    if not any(t.state == TrialState.FAILED for t in trials):
        cache_store(
            kind=FOLD_CACHE_KIND,
            params_hash=fold.fold_key,
            content=json.dumps(
                plain(
                    {
                        "trials": [_trial_row(t) for t in trials],
                        "best_slot": best.slot if best else None,
                        "pareto_front": fold.pareto_front,
                        "importance": fold.importance,
                        "overfitting": fold.overfitting,
                        "error": fold.error,
                    }
                )
            ).encode(),
            format=StorageFormat.JSON,
        )
    _fold_close(study, fold)


def fold_cached(study: Study, fold: StudyFold) -> dict[str, Any] | None:
    if not study.use_cache or not fold.fold_key:
        return None
    entry = cache_lookup(kind=FOLD_CACHE_KIND, params_hash=fold.fold_key)
    return None if entry is None else json.loads(cache_load(entry=entry))


def fold_materialise_locked(study: Study, fold: StudyFold, cached: Mapping[str, Any]) -> None:
    """Answer a fold from the cache: its trials copied as cache hits, its choice as it was,
    its out-of-sample test from the cache or run now. The caller holds the study's lock."""
    now = timezone.now()
    rows = [
        StudyTrial(
            study=study,
            fold=fold,
            slot=row["slot"],
            number=row["number"],
            state=row["state"],
            params=row["params"],
            values=row["values"],
            metrics=row["metrics"],
            constraint_values=row["constraint_values"],
            feasible=row["feasible"],
            error=row["error"],
            params_hash=row["params_hash"],
            duration_seconds=row["duration_seconds"],
            cache_hit=True,
            started_at=now,
            finished_at=now,
        )
        for row in cached["trials"]
    ]
    StudyTrial.objects.bulk_create(rows)
    best = next((r for r in rows if r.slot == cached["best_slot"]), None)
    fold.cache_hit = True
    fold.started_at = now
    fold.trials_claimed = fold.trials_done = len(rows)
    fold.best_trial_number = best.number if best else None
    fold.best_values = best.values if best else None
    fold.chosen_parameters = {**study.parameters, **best.params} if best else None
    fold.is_metrics = best.metrics if best else {}
    fold.pareto_front = cached["pareto_front"]
    fold.importance = cached["importance"]
    fold.overfitting = cached["overfitting"]
    fold.error = cached["error"]
    _oos_test(study, fold)
    study.trials_done += len(rows)
    study.trials_cached += len(rows)
    study.trials_failed += sum(r.state == TrialState.FAILED for r in rows)
    study.progress = min(99.0, 100.0 * study.trials_done / max(study.trials_total, 1))
    study.save(update_fields=["trials_done", "trials_cached", "trials_failed", "progress"])
    _fold_close(study, fold)


# --- The study's close ----------------------------------------------------------------


def _efficiency(oos: Any, ins: Any) -> float | None:
    if not isinstance(oos, int | float) or not isinstance(ins, int | float) or ins <= 0:
        return None
    return round(float(oos) / float(ins), 6)


def _stability(folds: list[StudyFold], names: list[str]) -> dict[str, Any]:
    """Per searched parameter: the value each fold chose, their spread and how often the
    most common choice was made (the share of folds agreeing with it)."""
    found = {}
    for name in names:
        values = [f.chosen_parameters[name] for f in folds if f.chosen_parameters]
        if not values:
            found[name] = {"values": [], "distinct": 0}
            continue
        mode, count = Counter(values).most_common(1)[0]
        entry: dict[str, Any] = {
            "values": values,
            "distinct": len(set(values)),
            "mode": mode,
            "mode_share": round(count / len(values), 6),
        }
        numbers = [
            float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if len(numbers) == len(values):
            mean = statistics.fmean(numbers)
            spread = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
            entry.update(
                mean=mean,
                std=spread,
                coefficient_of_variation=spread / abs(mean) if mean else None,
            )
        found[name] = entry
    return found


def _span_lookback(study: Study, chosen: list[dict[str, Any] | None], span_start: int) -> int:
    kind = get_kind(study.kind)
    warmups = [kind.warmup_bars(kind.validate(c)) + 1 for c in chosen if c]
    return min(span_start, max(warmups, default=0))


def _walk_forward_curves(
    study: Study, folds: list[StudyFold], whole: StudyFold | None
) -> tuple[dict[str, pd.Series], dict[str, Any]]:
    candles = study_candles(study)
    config = run_engine_config(study)
    span_start, span_end = folds[0].is_end_bar, folds[-1].oos_end_bar
    assert span_end is not None
    pieces = []
    for position, fold in enumerate(folds):
        following = folds[position + 1].is_end_bar if position + 1 < len(folds) else None
        end = min(fold.oos_end_bar or 0, following) if following else fold.oos_end_bar
        pieces.append((fold.chosen_parameters, fold.is_end_bar, end or fold.is_end_bar))
    lookback = _span_lookback(study, [f.chosen_parameters for f in folds], span_start)
    window = candles.iloc[span_start:span_end]
    stitched = run_positions(
        window,
        stitched_positions(
            candles,
            study.kind,
            pieces,
            span_start=span_start,
            span_end=span_end,
            lookback=lookback,
        ),
        config,
    )
    curves = {"stitched_oos": stitched.equity}
    in_sample = [f.is_metrics.get("annualized_return_pct") for f in folds if f.is_metrics]
    in_sample_numbers = [float(x) for x in in_sample if isinstance(x, int | float)]
    is_mean = statistics.fmean(in_sample_numbers) if in_sample_numbers else None
    oos_metrics = plain(stitched.metrics)
    summary: dict[str, Any] = {
        "folds": len(folds),
        "oos_start": window.index[0].isoformat(),
        "oos_end": (study.end if span_end >= len(candles) else candles.index[span_end]).isoformat(),
        "oos_metrics": oos_metrics,
        "efficiency": {
            "value": _efficiency(oos_metrics.get("annualized_return_pct"), is_mean),
            "oos_annualized_return_pct": oos_metrics.get("annualized_return_pct"),
            "is_annualized_return_pct_mean": is_mean,
            "per_fold": [
                _efficiency(
                    f.oos_metrics.get("annualized_return_pct"),
                    f.is_metrics.get("annualized_return_pct"),
                )
                for f in folds
            ],
        },
        "parameter_stability": _stability(folds, list(study.search_space)),
        "whole_period": None,
    }
    if whole is not None and whole.chosen_parameters:
        whole_lookback = _span_lookback(study, [whole.chosen_parameters], span_start)
        try:
            target = positions_for(
                candles,
                study.kind,
                whole.chosen_parameters,
                start=span_start,
                end=span_end,
                lookback=whole_lookback,
            )
        except InfeasibleTrial:
            target = np.zeros(span_end - span_start)
        over_span = run_positions(window, target, config)
        curves["whole_period"] = over_span.equity
        summary["whole_period"] = {
            "parameters": whole.chosen_parameters,
            "is_metrics": whole.is_metrics,
            "oos_span_metrics": plain(over_span.metrics),
        }
    return curves, summary


def _optimisation_curves(study: Study, whole: StudyFold) -> dict[str, pd.Series]:
    if not whole.chosen_parameters:
        return {}
    evaluated = window_evaluate(
        study_candles(study),
        study.kind,
        whole.chosen_parameters,
        run_engine_config(study),
        start=whole.is_first_bar,
        end=whole.is_end_bar,
        periods=settings.STUDY_RETURN_PERIODS,
    )
    return {"whole_period": evaluated.result.equity}


def _curves_parquet(curves: Mapping[str, pd.Series]) -> bytes:
    frame = pd.DataFrame(dict(curves))
    frame.index.name = "ts"
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def study_finish_locked(study: Study) -> None:
    """Close a study whose folds have all finished: its curves (saved as one parquet
    artifact), its walk-forward summary and its best. Identical studies share both,
    under a key made of their folds' keys. The caller holds the study's lock."""
    stages = list(study.folds.order_by("role", "index"))
    folds = [f for f in stages if f.role == FoldRole.FOLD]
    whole = next((f for f in stages if f.role == FoldRole.WHOLE), None)
    result_key = params_hash(
        {
            "folds": [f.fold_key for f in stages],
            "oos": [f.oos_params_hash for f in stages],
            "study_version": STUDY_VERSION,
        }
    )
    entry = (
        cache_lookup(kind=RESULT_CACHE_KIND, params_hash=result_key) if study.use_cache else None
    )
    artifact = artifact_for_hash(params_hash=result_key, name=EQUITY_ARTIFACT)
    if entry is not None and artifact is not None:
        walk_forward = json.loads(cache_load(entry=entry))["walk_forward"]
    else:
        if folds:
            curves, walk_forward = _walk_forward_curves(study, folds, whole)
        else:
            assert whole is not None
            curves, walk_forward = _optimisation_curves(study, whole), None
        if artifact is None:
            artifact_save(
                name=EQUITY_ARTIFACT,
                mime_type=PARQUET_MIME,
                content=_curves_parquet(curves),
                params_hash=result_key,
            )
        cache_store(
            kind=RESULT_CACHE_KIND,
            params_hash=result_key,
            content=json.dumps(plain({"walk_forward": walk_forward})).encode(),
            format=StorageFormat.JSON,
        )
    # The parameters to trade next: the last fold's choice in a walk-forward, else the
    # whole period's optimum.
    deciding = folds[-1] if folds else whole
    study.summary = plain(
        {
            "result_key": result_key,
            "walk_forward": walk_forward,
            "overfitting": whole.overfitting if whole else None,
            "importance": whole.importance if whole else {},
            "pareto_front": whole.pareto_front if whole else [],
            "whole_period_best": (
                {
                    "trial_number": whole.best_trial_number,
                    "parameters": whole.chosen_parameters,
                    "values": whole.best_values,
                    "metrics": whole.is_metrics,
                }
                if whole
                else None
            ),
        }
    )
    if deciding is not None:
        study.best_trial_number = deciding.best_trial_number
        study.best_values = deciding.best_values
        study.best_parameters = deciding.chosen_parameters
    study.status = RunStatus.SUCCEEDED
    study.progress = 100
    study.finished_at = timezone.now()
    study.save(
        update_fields=[
            "summary",
            "best_trial_number",
            "best_values",
            "best_parameters",
            "status",
            "progress",
            "finished_at",
        ]
    )
