"""The Deflated Sharpe Ratio and the Probability of Backtest Overfitting of a backtests sweep.

A sweep keeps each combination's metrics, not its returns, and both statistics need the
returns (studies.stats). They are computed on request: each combination's per-period
returns are read from the study-trial cache (a study over the same settings and range left
them there, keyed exactly as the sweep's combination would be) or, for the others, the
engine runs the combination again on the sweep's candles and caches the result, so a
second request computes nothing. The "best" is the sweep's own best by its rank metric.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from django.conf import settings

from backtests.models import RunStatus, Sweep
from backtests.services import BacktestConflict, RunSettings, run_engine_config
from marketdata.selectors import candle_data_version, candles_load
from persistence.hashing import params_hash
from persistence.models import StorageFormat
from persistence.services import cache_load, cache_lookup_many, cache_store_many
from strategies.library.indicators import IndicatorCache
from studies import stats
from studies.evaluation import InfeasibleTrial, window_evaluate
from studies.services.keys import TRIAL_CACHE_KIND
from studies.services.trials import plain


def _key(sweep: Sweep, params: dict[str, Any], data_version: str) -> str:
    settings_ = RunSettings.from_stored(sweep, parameters=params)
    return params_hash(
        {
            **settings_.hash_payload(data_version=data_version),
            "return_periods": settings.STUDY_RETURN_PERIODS,
        }
    )


def sweep_overfitting(*, sweep: Sweep) -> dict[str, Any]:
    """DSR of the sweep's best combination and PBO of choosing it; see the module docstring.
    A sweep that has not succeeded, or is too large to recompute on request, is a 409."""
    if sweep.status != RunStatus.SUCCEEDED:
        raise BacktestConflict(f"Sweep {sweep.pk} has no results ({sweep.status}).")
    combos = [row["params"] for row in sweep.results or []]
    if len(combos) < 2:
        raise BacktestConflict("A sweep of fewer than two combinations has nothing to select.")
    version = candle_data_version(
        instrument_id=sweep.instrument_id,
        timeframe=sweep.timeframe,
        start=sweep.start,
        end=sweep.end,
    )
    keys = [_key(sweep, params, version) for params in combos]
    found = cache_lookup_many(kinds=[TRIAL_CACHE_KIND], params_hashes=keys)
    returns = {key: json.loads(cache_load(entry=entry))["returns"] for key, entry in found.items()}
    missing = [
        (key, params) for key, params in zip(keys, combos, strict=True) if key not in returns
    ]
    computed = 0
    if missing:
        candles, _ = candles_load(
            instrument_id=sweep.instrument_id,
            timeframe=sweep.timeframe,
            start=sweep.start,
            end=sweep.end,
            data_version=version,
        )
        work = len(missing) * len(candles)
        if work > settings.STUDY_SWEEP_STATS_MAX_BAR_RUNS:
            raise BacktestConflict(
                f"{len(missing)} combinations of {len(candles)} bars are not cached: too many "
                "to backtest on request. Run the grid as a study (sampler grid) instead."
            )
        config = run_engine_config(sweep)
        indicators = IndicatorCache()
        contents = {}
        for key, params in missing:
            try:
                evaluated = window_evaluate(
                    candles,
                    sweep.kind,
                    params,
                    config,
                    start=0,
                    end=len(candles),
                    periods=settings.STUDY_RETURN_PERIODS,
                    cache=indicators,
                )
            except InfeasibleTrial:
                continue
            returns[key] = evaluated.returns
            contents[key] = json.dumps(
                {"metrics": plain(evaluated.metrics), "returns": evaluated.returns}
            ).encode()
        cache_store_many(kind=TRIAL_CACHE_KIND, contents=contents, format=StorageFormat.JSON)
        computed = len(contents)
    best_key = _key(sweep, sweep.best_parameters or combos[0], version)
    series = [returns[key] for key in keys if key in returns]
    length = min(len(s) for s in series)
    dsr = stats.deflated_sharpe_ratio(
        best_returns=returns.get(best_key, series[0]),
        trial_sharpes=[stats.sharpe_ratio(np.asarray(s)) for s in series],
    )
    pbo = stats.probability_of_backtest_overfitting(np.array([s[-length:] for s in series]).T)
    return plain(
        {
            "sweep": sweep.pk,
            "rank_metric": sweep.rank_metric,
            "best_parameters": sweep.best_parameters,
            "combinations": len(series),
            "computed": computed,
            "cached": len(series) - computed,
            "performance": "per-period Sharpe ratio of each combination's returns over "
            f"{length} equal periods of the range",
            "deflated_sharpe_ratio": dsr.as_dict(),
            "probability_of_backtest_overfitting": pbo.as_dict(with_logits=False),
        }
    )
