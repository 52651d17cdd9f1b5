"""What a study's results are cached under, and the candles they are computed from.

- A trial is a backtest of one parameter set on one window: its key is the params hash a
  backtest of those settings over that window would have (settings, window, engine and
  candle data versions), plus the number of per-period returns kept. Cache kind
  "study_trial": {"metrics", "returns"}.
- An out-of-sample test also names the bars its indicators warmed up on (`lookback`).
- A fold's optimisation is keyed by everything that decides it: its window's settings and
  data version, the search space, the sampler and seed, the trial budget, the objectives
  and the constraints. Cache kind "study_fold": its trials and choice. Data after the
  window is in none of it, which is why a walk-forward re-run with one more fold
  computes only the new fold.
- A study's closing results (the curves and the walk-forward summary) are keyed by its
  folds' keys and out-of-sample keys. Cache kind "study_result".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from django.conf import settings

from backtests.services import RunSettings
from marketdata.selectors import candle_count, candle_data_version, candles_load
from persistence.hashing import params_hash
from studies.models import Study, StudyFold

TRIAL_CACHE_KIND = "study_trial"
FOLD_CACHE_KIND = "study_fold"
RESULT_CACHE_KIND = "study_result"
# Bump when what a study computes or stores for the same inputs changes.
STUDY_VERSION = "2"


def window_settings(
    study: Study, parameters: Mapping[str, Any], *, start: datetime, end: datetime
) -> RunSettings:
    """The study's settings with `parameters`, over [start, end)."""
    stored = RunSettings.from_stored(study, parameters=parameters)
    return dataclasses.replace(stored, start=start, end=end)


def trial_key(study: Study, fold: StudyFold, parameters: Mapping[str, Any]) -> str:
    run_settings = window_settings(study, parameters, start=fold.is_start, end=fold.is_end)
    return params_hash(
        {
            **run_settings.hash_payload(data_version=fold.data_version),
            "return_periods": settings.STUDY_RETURN_PERIODS,
        }
    )


def oos_key(
    study: Study,
    parameters: Mapping[str, Any],
    *,
    start: datetime,
    end: datetime,
    lookback: int,
    data_version: str,
) -> str:
    run_settings = window_settings(study, parameters, start=start, end=end)
    return params_hash(
        {
            **run_settings.hash_payload(data_version=data_version),
            "lookback_bars": lookback,
            "return_periods": settings.STUDY_RETURN_PERIODS,
        }
    )


def fold_key(study: Study, fold: StudyFold) -> str:
    run_settings = window_settings(study, study.parameters, start=fold.is_start, end=fold.is_end)
    return params_hash(
        {
            "window": run_settings.hash_payload(data_version=fold.data_version),
            "search_space": study.search_space,
            "sampler": study.sampler,
            "seed": study.seed,
            "n_trials": study.n_trials,
            "objectives": study.objectives,
            "constraints": study.constraints,
            "return_periods": settings.STUDY_RETURN_PERIODS,
            "study_version": STUDY_VERSION,
        }
    )


def window_data_version(study: Study, *, start: datetime, end: datetime) -> str:
    return candle_data_version(
        instrument_id=study.instrument_id, timeframe=study.timeframe, start=start, end=end
    )


def study_bar_count(study: Study) -> int:
    """How many bars the study's range holds (marketdata.selectors.candle_count)."""
    return candle_count(
        instrument_id=study.instrument_id,
        timeframe=study.timeframe,
        start=study.start,
        end=study.end,
    )


def study_candles(study: Study) -> pd.DataFrame:
    """The study's whole range, kept in this process: every trial of every fold slices it."""
    candles, _ = candles_load(
        instrument_id=study.instrument_id,
        timeframe=study.timeframe,
        start=study.start,
        end=study.end,
        keep_in_memory=True,
    )
    return candles
