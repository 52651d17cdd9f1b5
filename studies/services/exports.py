"""A study's trials and folds as files: CSV (one table) or an xlsx workbook (summary,
trials, folds). Built on request from the rows: a study's tables are a few thousand rows."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from studies.models import FoldRole, Study
from studies.selectors import study_stages, study_trials

TABLES = ("trials", "folds")


def _flat(prefix: str, values: dict[str, Any] | None) -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in (values or {}).items()}


def trials_frame(study: Study) -> pd.DataFrame:
    """One row per trial: where it ran, its parameters (param_*), objective values
    (value_<metric>), metrics (metric_*) and constraints."""
    metrics = [objective["metric"] for objective in study.objectives]
    rows = []
    for trial in study_trials(study=study):
        values = dict(zip(metrics, trial.values or [], strict=False))
        rows.append(
            {
                "stage": trial.fold.role,
                "fold": trial.fold.index if trial.fold.role == FoldRole.FOLD else None,
                "slot": trial.slot,
                "number": trial.number,
                "state": trial.state,
                "feasible": trial.feasible,
                **_flat("param_", trial.params),
                **_flat("value_", values),
                **_flat("metric_", trial.metrics),
                "constraints": json.dumps(trial.constraint_values)
                if trial.constraint_values
                else "",
                "cache_hit": trial.cache_hit,
                "worker": trial.worker,
                "attempts": trial.attempts,
                "duration_seconds": trial.duration_seconds,
                "engine_seconds": trial.engine_seconds,
                "params_hash": trial.params_hash,
                "error": trial.error,
            }
        )
    return pd.DataFrame(rows)


def folds_frame(study: Study) -> pd.DataFrame:
    """One row per optimisation (each fold, then the whole period): its windows, choice and
    in-sample (is_*) and out-of-sample (oos_*) metrics."""
    rows = []
    for fold in study_stages(study=study):
        dsr = (fold.overfitting or {}).get("deflated_sharpe_ratio") or {}
        pbo = (fold.overfitting or {}).get("probability_of_backtest_overfitting") or {}
        rows.append(
            {
                "stage": fold.role,
                "fold": fold.index if fold.role == FoldRole.FOLD else None,
                "status": fold.status,
                "is_start": fold.is_start,
                "is_end": fold.is_end,
                "oos_start": fold.oos_start,
                "oos_end": fold.oos_end,
                "trials_done": fold.trials_done,
                "cache_hit": fold.cache_hit,
                "best_trial_number": fold.best_trial_number,
                **_flat("chosen_", fold.chosen_parameters),
                **_flat("is_", fold.is_metrics),
                **_flat("oos_", fold.oos_metrics),
                "deflated_sharpe_ratio": dsr.get("value"),
                "probability_of_backtest_overfitting": pbo.get("value"),
                "error": fold.error,
            }
        )
    return pd.DataFrame(rows)


def _naive(frame: pd.DataFrame) -> pd.DataFrame:
    """Excel has no time zones: timestamps go in as naive UTC."""
    frame = frame.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
        elif frame[name].dtype == object and frame[name].map(lambda v: hasattr(v, "tzinfo")).any():
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_localize(None)
    return frame


def study_export_csv(*, study: Study, table: str) -> bytes:
    frame = trials_frame(study) if table == "trials" else folds_frame(study)
    return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ").encode()


def study_export_xlsx(*, study: Study) -> bytes:
    summary = pd.DataFrame(
        [
            ("study", study.pk),
            ("kind", study.kind),
            ("symbol", study.instrument.symbol),
            ("timeframe", study.timeframe),
            ("start", study.start.isoformat()),
            ("end", study.end.isoformat()),
            ("mode", study.mode),
            ("sampler", study.sampler),
            ("n_trials", study.n_trials),
            ("objectives", json.dumps(study.objectives)),
            ("constraints", json.dumps(study.constraints)),
            ("search_space", json.dumps(study.search_space)),
            ("status", study.status),
            ("best_parameters", json.dumps(study.best_parameters)),
            ("best_values", json.dumps(study.best_values)),
            ("summary", json.dumps(study.summary, default=str)[:32_000]),
        ],
        columns=["field", "value"],
    )
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        summary.to_excel(writer, sheet_name="summary", index=False)
        _naive(trials_frame(study)).to_excel(writer, sheet_name="trials", index=False)
        _naive(folds_frame(study)).to_excel(writer, sheet_name="folds", index=False)
    return buffer.getvalue()
