"""One trial's backtest on a window of a study's candles, through the public engine API.
Pure: pandas and the engine in, a result out; no Django.

A window is the bars [start, end) of the study's candles. The strategy's target positions
are computed on the window, or with `lookback` bars before it (out-of-sample windows,
whose indicators warm up on the bars just before them: the past, never the future); then
`run_positions` simulates the window alone, so the metrics describe exactly its bars.
With no lookback this is `run_backtest` on the window, bar for bar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine import BacktestConfig, BacktestResult, run_positions
from strategies.library.base import ParamValidationError
from strategies.library.indicators import IndicatorCache
from strategies.library.registry import get_kind
from studies.stats import period_returns


class InfeasibleTrial(Exception):
    """The parameters cannot be traded on this window: they break the kind's rules, or the
    window has too few bars for them. A reason a sampler should learn, not a failure."""


@dataclass(frozen=True)
class WindowResult:
    metrics: dict[str, Any]
    returns: list[float]
    result: BacktestResult


def positions_for(
    candles: pd.DataFrame,
    kind_name: str,
    params: Mapping[str, Any],
    *,
    start: int,
    end: int,
    lookback: int = 0,
    cache: IndicatorCache | None = None,
) -> np.ndarray:
    """Target positions of the bars [start, end), computed on [start - lookback, end)."""
    kind = get_kind(kind_name)
    try:
        cleaned = kind.validate(params)
    except ParamValidationError as exc:
        raise InfeasibleTrial(
            "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.errors.items())
        ) from exc
    first = max(0, start - lookback)
    needed = kind.min_bars(cleaned)
    if end - first < needed:
        raise InfeasibleTrial(
            f"{kind.name} with these parameters needs at least {needed} bars; "
            f"the window has {end - first}."
        )
    target = kind.positions(candles.iloc[first:end], cleaned, cache)
    return np.asarray(target[start - first :], dtype=np.float64)


def window_evaluate(
    candles: pd.DataFrame,
    kind_name: str,
    params: Mapping[str, Any],
    config: BacktestConfig,
    *,
    start: int,
    end: int,
    lookback: int = 0,
    periods: int,
    cache: IndicatorCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WindowResult:
    """Backtest `params` on the bars [start, end) of `candles`; see the module docstring.

    `cache` may be shared by calls on the same window (and lookback), never across windows.
    `periods` is how many per-period returns the result keeps for the overfitting
    statistics (studies.stats.period_returns).
    """
    target = positions_for(
        candles, kind_name, params, start=start, end=end, lookback=lookback, cache=cache
    )
    result = run_positions(candles.iloc[start:end], target, config, progress)
    returns = period_returns(
        result.equity.to_numpy(), initial=config.initial_capital, periods=periods
    )
    return WindowResult(
        metrics=dict(result.metrics),
        returns=[float(f"{value:.10g}") for value in returns],
        result=result,
    )


def stitched_positions(
    candles: pd.DataFrame,
    kind_name: str,
    pieces: list[tuple[Mapping[str, Any] | None, int, int]],
    *,
    span_start: int,
    span_end: int,
    lookback: int,
) -> np.ndarray:
    """Target positions over [span_start, span_end) made of `pieces` (params, start, end):
    each piece's bars take the positions its own parameters give there (warmed up on the
    `lookback` bars before it); bars no piece covers, or a piece without parameters (a fold
    with no feasible trial), stay flat."""
    target = np.zeros(span_end - span_start, dtype=np.float64)
    for params, start, end in pieces:
        if params is None or end <= start:
            continue
        try:
            piece = positions_for(
                candles, kind_name, params, start=start, end=end, lookback=lookback
            )
        except InfeasibleTrial:
            continue
        target[start - span_start : end - span_start] = piece
    return target
