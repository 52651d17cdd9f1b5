"""The ML predictor's per-run diagnostics and trained models, stored as artifacts.

A run of the `ml_predictor` kind trains one model per walk-forward fold. Each model is
saved under the params hash of its training inputs (see `walkforward._model_key`), so a
re-run, or a sweep member that shares a fold, loads it instead of training it again.
Models are saved as skops or XGBoost JSON, never pickles. The per-fold diagnostics
(out-of-sample metrics, confusion matrix, importances) and the predicted probability are
saved once per run params hash, as JSON, and read back by the API and the lab.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from backtests.models import BacktestRun, RunStatus
from backtests.services.errors import BacktestConflict
from marketdata.selectors import candles_load
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load, artifact_save
from strategies.library.indicators import IndicatorCache
from strategies.library.ml.kind import DIAGNOSTICS_KEY, MODEL_STORE_KEY, spec_of
from strategies.library.ml.walkforward import WalkForwardResult
from strategies.library.registry import get_kind

ML_KIND = "ml_predictor"
DIAGNOSTICS_ARTIFACT = "ml-diagnostics.json"
MODEL_ARTIFACTS = {"skops": "ml-model.skops", "xgboost-json": "ml-model.xgboost.json"}
MODEL_MIME = {"skops": "application/octet-stream", "xgboost-json": "application/json"}
# The probability chart needs its shape, not every bar of a million-bar run.
MAX_SERIES_POINTS = 5000


class ArtifactModelStore:
    """A `ModelStore` over artifacts: one per trained model, keyed by its inputs' hash."""

    def load(self, key: str) -> tuple[bytes, str] | None:
        for fmt, name in MODEL_ARTIFACTS.items():
            artifact = artifact_for_hash(params_hash=key, name=name)
            if artifact is not None:
                return artifact_load(artifact=artifact), fmt
        return None

    def save(self, key: str, payload: bytes, fmt: str) -> None:
        artifact_save(
            name=MODEL_ARTIFACTS[fmt], mime_type=MODEL_MIME[fmt], content=payload, params_hash=key
        )


def ml_cache(*, on_fold: Any = None) -> IndicatorCache:
    """An indicator cache that lets an ML run reuse stored models and report its folds."""
    from strategies.library.ml.kind import PROGRESS_KEY

    cache = IndicatorCache()
    cache.get(MODEL_STORE_KEY, ArtifactModelStore)
    if on_fold is not None:
        cache.get(PROGRESS_KEY, lambda: on_fold)
    return cache


def _finite(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def diagnostics_json(
    run: BacktestRun, candles: pd.DataFrame, result: WalkForwardResult
) -> dict[str, Any]:
    """What the API and the lab show: folds, their mean importances and P(up) over price."""
    folds = [f.to_json() for f in result.folds]
    names = list(result.feature_names)
    stride = max(1, -(-len(candles) // MAX_SERIES_POINTS))
    sample = slice(None, None, stride)

    def mean_of(field: str) -> dict[str, float]:
        return {n: float(np.mean([f[field].get(n, 0.0) for f in folds])) for n in names}

    confusion = np.zeros((2, 2), dtype=np.int64)
    for f in folds:
        confusion += np.asarray(f["confusion"], dtype=np.int64)
    spec = spec_of(get_kind(ML_KIND).validate(run.parameters))
    return {
        "run": run.pk,
        "model": spec.model,
        "feature_set": spec.feature_set,
        "lookahead": spec.lookahead,
        "feature_names": names,
        "folds": folds,
        "confusion": confusion.tolist(),
        "importances": mean_of("importances") if folds else {},
        "permutation_importances": mean_of("permutation_importances") if folds else {},
        "series": {
            "ts": [ts.isoformat() for ts in candles.index[sample]],
            "close": _finite(candles["close"].to_numpy(dtype=np.float64)[sample]),
            "probability": _finite(result.probability[sample]),
        },
    }


def ml_diagnostics_save(
    *, run: BacktestRun, candles: pd.DataFrame, cache: IndicatorCache
) -> dict[str, Any] | None:
    """Save the diagnostics a finished run left in `cache`; None when it left none."""
    sink = cache.get(DIAGNOSTICS_KEY, dict)
    result = sink.get("latest")
    if result is None:
        return None
    payload = diagnostics_json(run, candles, result)
    artifact_save(
        name=DIAGNOSTICS_ARTIFACT,
        mime_type="application/json",
        content=json.dumps(payload).encode(),
        params_hash=run.params_hash,
    )
    return payload


def ml_diagnostics(*, run: BacktestRun) -> dict[str, Any]:
    """The run's per-fold diagnostics: stored ones, or rebuilt once from the run's candles.

    Rebuilding retrains nothing that is stored: every fold's model is loaded from its
    artifact when one exists. Raises BacktestConflict for another kind or an unfinished run.
    """
    if run.kind != ML_KIND:
        raise BacktestConflict(f"Run {run.pk} is a {run.kind} run, not an ML predictor run.")
    if run.status != RunStatus.SUCCEEDED:
        raise BacktestConflict(f"Run {run.pk} has no results ({run.status}).")
    stored = artifact_for_hash(params_hash=run.params_hash, name=DIAGNOSTICS_ARTIFACT)
    if stored is not None:
        payload: dict[str, Any] = json.loads(artifact_load(artifact=stored))
        payload["run"] = run.pk  # runs with one params hash share the artifact
        return payload
    candles, _ = candles_load(
        instrument_id=run.instrument_id, timeframe=run.timeframe, start=run.start, end=run.end
    )
    kind = get_kind(ML_KIND)
    cache = ml_cache()
    kind.positions(candles, kind.validate(run.parameters), cache)
    rebuilt = ml_diagnostics_save(run=run, candles=candles, cache=cache)
    assert rebuilt is not None
    return rebuilt
