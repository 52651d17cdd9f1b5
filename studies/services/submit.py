"""Submitting a study: the request resolved and validated field by field, then the study
row created and its launch enqueued on commit. Bad input creates nothing."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from backtests.services import BacktestInputError, RunSettings, run_settings_resolve
from backtests.services.sweeps import MINIMIZED_METRICS, RANKABLE_METRICS
from marketdata.selectors import candle_list
from strategies.library.base import StrategyKind
from strategies.library.registry import get_kind
from strategies.models import Strategy
from studies.models import SamplerName, Study, StudyMode
from studies.search import SearchSpaceError, grid_size, search_space_resolve
from studies.services.dispatch import study_enqueue_on_commit
from studies.windows import MODES, ROLLING, fold_count, length_json, parse_length

MAXIMIZE, MINIMIZE = "maximize", "minimize"
DIRECTIONS = (MAXIMIZE, MINIMIZE)
# Multi-objective studies beyond three objectives have Pareto fronts too large to choose from.
MAX_OBJECTIVES = 3


def default_direction(metric: str) -> str:
    return MINIMIZE if metric in MINIMIZED_METRICS else MAXIMIZE


def _objectives_resolve(raw: Any, errors: dict[str, Any]) -> list[dict[str, str]]:
    if raw is None:
        return [{"metric": "sharpe", "direction": MAXIMIZE}]
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        errors["objectives"] = ["Must be a non-empty list of {metric, direction}."]
        return []
    if len(raw) > MAX_OBJECTIVES:
        errors["objectives"] = [f"At most {MAX_OBJECTIVES} objectives."]
        return []
    resolved, problems, bad = [], [], False
    for item in raw:
        problem: dict[str, list[str]] = {}
        metric = item.get("metric") if isinstance(item, Mapping) else None
        if metric not in RANKABLE_METRICS:
            problem["metric"] = [
                f"Unknown metric {metric!r}. Choose one of: {', '.join(RANKABLE_METRICS)}."
            ]
        direction = item.get("direction") if isinstance(item, Mapping) else None
        if direction is None and not problem:
            direction = default_direction(str(metric))
        if direction not in DIRECTIONS:
            problem.setdefault("direction", [f"Must be one of: {', '.join(DIRECTIONS)}."])
        problems.append(problem)
        bad = bad or bool(problem)
        if not problem:
            resolved.append({"metric": str(metric), "direction": str(direction)})
    metrics = [item["metric"] for item in resolved]
    if not bad and len(set(metrics)) != len(metrics):
        errors["objectives"] = ["Each metric may be an objective once."]
    elif bad:
        errors["objectives"] = problems
    return resolved


def _constraints_resolve(
    raw: Any, min_trades: int | None, errors: dict[str, Any]
) -> list[dict[str, Any]]:
    """[{metric, min, max}], with `min_trades` as {"metric": "num_trades", "min": n}."""
    resolved: list[dict[str, Any]] = []
    if min_trades is not None:
        if isinstance(min_trades, bool) or not isinstance(min_trades, int) or min_trades < 0:
            errors["min_trades"] = ["Must be a whole number, 0 or more."]
        elif min_trades > 0:
            resolved.append({"metric": "num_trades", "min": min_trades, "max": None})
    if raw is None:
        return resolved
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        errors["constraints"] = ["Must be a list of {metric, min, max}."]
        return resolved
    problems, bad = [], False
    for item in raw:
        problem: dict[str, list[str]] = {}
        if not isinstance(item, Mapping):
            problems.append({"non_field_errors": ["Must be an object {metric, min, max}."]})
            bad = True
            continue
        metric = item.get("metric")
        if metric not in RANKABLE_METRICS:
            problem["metric"] = [
                f"Unknown metric {metric!r}. Choose one of: {', '.join(RANKABLE_METRICS)}."
            ]
        bounds = {}
        for key in ("min", "max"):
            value = item.get(key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                problem[key] = ["Must be a finite number or null."]
            bounds[key] = value
        if not problem and bounds["min"] is None and bounds["max"] is None:
            problem["min"] = ["Give min, max or both."]
        if (
            not problem
            and bounds["min"] is not None
            and bounds["max"] is not None
            and bounds["min"] > bounds["max"]
        ):
            problem["max"] = ["Must not be below min."]
        problems.append(problem)
        bad = bad or bool(problem)
        if not problem:
            resolved.append({"metric": metric, "min": bounds["min"], "max": bounds["max"]})
    if bad:
        errors["constraints"] = problems
    return resolved


def _walk_forward_resolve(
    raw: Any, resolved: RunSettings, errors: dict[str, Any]
) -> dict[str, Any] | None:
    """The walk-forward's windows, checked against the data: a range too short for one
    fold is a 400 on `walk_forward.in_sample`, too many folds one on `walk_forward.step`."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        errors["walk_forward"] = ["Must be an object {mode, in_sample, out_of_sample, step}."]
        return None
    problems: dict[str, list[str]] = {}
    mode = raw.get("mode", ROLLING)
    if mode not in MODES:
        problems["mode"] = [f"Must be one of: {', '.join(MODES)}."]
    lengths: dict[str, Any] = {}
    for key in ("in_sample", "out_of_sample", "step"):
        value = raw.get(key)
        if value is None and key == "step":
            continue
        if value is None:
            problems[key] = ["This field is required."]
            continue
        try:
            lengths[key] = parse_length(value)
        except ValueError as exc:
            problems[key] = [str(exc)]
    unknown = sorted(set(raw) - {"mode", "in_sample", "out_of_sample", "step"})
    for key in unknown:
        problems[key] = ["Unknown field."]
    if not problems:
        lengths.setdefault("step", lengths["out_of_sample"])
        kinds = {isinstance(value, int) for value in lengths.values()}
        if len(kinds) > 1:
            problems["step"] = [
                "in_sample, out_of_sample and step must all be bar counts or all durations."
            ]
    if problems:
        errors["walk_forward"] = problems
        return None
    bars = candle_list(
        instrument_id=resolved.instrument_id,
        timeframe=resolved.timeframe,
        start=resolved.start,
        end=resolved.end,
    ).count()
    folds = fold_count(start=resolved.start, end=resolved.end, bars=bars, mode=mode, **lengths)
    if folds == 0:
        unit = "bars" if isinstance(lengths["in_sample"], int) else "time"
        have = f"{bars} bars" if unit == "bars" else f"{resolved.end - resolved.start} of data"
        errors["walk_forward"] = {
            "in_sample": [
                f"in_sample + out_of_sample ({length_json(lengths['in_sample'])} + "
                f"{length_json(lengths['out_of_sample'])}) is longer than the data: the range "
                f"holds {have}."
            ]
        }
        return None
    if folds > settings.STUDY_MAX_FOLDS:
        errors["walk_forward"] = {
            "step": [
                f"These windows make {folds} folds; at most {settings.STUDY_MAX_FOLDS} are "
                "allowed. Lengthen step or out_of_sample."
            ]
        }
        return None
    return {
        "mode": mode,
        **{key: length_json(value) for key, value in lengths.items()},
        "folds": folds,
        "bars": bars,
    }


def _trials_resolve(
    sampler: str, n_trials: Any, space: dict[str, Any], errors: dict[str, Any]
) -> int:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        errors["n_trials"] = ["Must be at least 1: a study with zero trials has nothing to run."]
        return 0
    if n_trials > settings.STUDY_MAX_TRIALS:
        errors["n_trials"] = [f"At most {settings.STUDY_MAX_TRIALS} trials per optimisation."]
        return 0
    if sampler == SamplerName.GRID and space:
        try:
            size = grid_size(space)
        except SearchSpaceError as exc:
            errors["search_space"] = exc.errors
            return 0
        # A grid is run at most once through: more trials would repeat its points.
        return min(n_trials, size)
    return n_trials


def study_check(
    *,
    kind: StrategyKind,
    resolved: RunSettings,
    sampler: str,
    n_trials: Any,
    search_space: Mapping[str, Any] | None,
    objectives: Any,
    constraints: Any,
    min_trades: int | None,
    parallelism: Any,
    walk_forward: Any,
) -> dict[str, Any]:
    """Every field of a study request checked, or BacktestInputError naming each bad one."""
    errors: dict[str, Any] = {}
    space: dict[str, Any] = {}
    try:
        space = search_space_resolve(kind, search_space)
    except SearchSpaceError as exc:
        errors["search_space"] = exc.errors
    if sampler not in SamplerName.values:
        errors["sampler"] = [f"Must be one of: {', '.join(SamplerName.values)}."]
    trials = (
        _trials_resolve(sampler, n_trials, space, errors) if "search_space" not in errors else 0
    )
    resolved_objectives = _objectives_resolve(objectives, errors)
    if sampler == SamplerName.NSGA2 and len(resolved_objectives) < 2 and "objectives" not in errors:
        errors["objectives"] = ["NSGA-II is for two or more objectives; use tpe for one."]
    resolved_constraints = _constraints_resolve(constraints, min_trades, errors)
    if (
        isinstance(parallelism, bool)
        or not isinstance(parallelism, int)
        or not 1 <= parallelism <= settings.STUDY_MAX_PARALLELISM
    ):
        errors["parallelism"] = [f"Must be from 1 to {settings.STUDY_MAX_PARALLELISM}."]
    windows = _walk_forward_resolve(walk_forward, resolved, errors)
    if errors:
        raise BacktestInputError(errors)
    return {
        "search_space": space,
        "n_trials": trials,
        "objectives": resolved_objectives,
        "constraints": resolved_constraints,
        "walk_forward": windows,
    }


@transaction.atomic
def study_submit(
    *,
    user: User,
    strategy: Strategy,
    start: datetime,
    end: datetime,
    sampler: str = SamplerName.TPE,
    n_trials: int = 100,
    search_space: Mapping[str, Any] | None = None,
    objectives: Sequence[Mapping[str, Any]] | None = None,
    constraints: Sequence[Mapping[str, Any]] | None = None,
    min_trades: int | None = None,
    parallelism: int = 2,
    seed: int = 0,
    walk_forward: Mapping[str, Any] | None = None,
    compare_whole_period: bool = True,
    overrides: Mapping[str, Any] | None = None,
    use_cache: bool = True,
) -> Study:
    """Create a study of `strategy` over [start, end) and enqueue its launch on commit.

    The search space names the parameters to search (None: all of them, over the spec's
    ranges); the others keep the strategy's (or the overrides') values. With
    `walk_forward`, each fold optimises on its in-sample window and is tested on the
    window after it; `compare_whole_period` adds one optimisation over the whole range.
    A grid study runs at most the grid's size of trials.
    """
    if strategy.owner_id != user.pk and not user.is_staff:
        raise BacktestInputError({"strategy": ["Not found."]})
    resolved = run_settings_resolve(strategy=strategy, start=start, end=end, overrides=overrides)
    kind = get_kind(resolved.kind)
    checked = study_check(
        kind=kind,
        resolved=resolved,
        sampler=sampler,
        n_trials=n_trials,
        search_space=search_space,
        objectives=objectives,
        constraints=constraints,
        min_trades=min_trades,
        parallelism=parallelism,
        walk_forward=walk_forward,
    )
    windows = checked["walk_forward"]
    folds = windows["folds"] if windows else 0
    whole = windows is None or compare_whole_period
    fields = resolved.model_fields()
    parameters = {
        name: value
        for name, value in fields.pop("parameters").items()
        if name not in checked["search_space"]
    }
    study = Study(
        owner=user,
        strategy=strategy,
        parameters=parameters,
        mode=StudyMode.WALK_FORWARD if windows else StudyMode.OPTIMIZE,
        sampler=sampler,
        search_space=checked["search_space"],
        objectives=checked["objectives"],
        constraints=checked["constraints"],
        n_trials=checked["n_trials"],
        parallelism=parallelism,
        seed=seed,
        walk_forward=windows,
        compare_whole_period=whole,
        use_cache=use_cache,
        optuna_prefix=f"tradelab-{uuid.uuid4().hex[:20]}",
        folds_total=folds,
        trials_total=checked["n_trials"] * (folds + int(whole)),
        celery_task_id=str(uuid.uuid4()),
        **fields,
    )
    try:
        study.full_clean(exclude=["owner", "strategy", "instrument"], validate_constraints=False)
    except ValidationError as exc:
        raise BacktestInputError.from_validation_error(exc) from exc
    study.save()
    study_enqueue_on_commit(study_id=study.pk, task_id=study.celery_task_id)
    return study
