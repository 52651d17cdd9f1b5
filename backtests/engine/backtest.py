"""run_backtest: validate inputs, compute target positions, simulate and measure."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.candles import CandleArrays, validate_candles
from backtests.engine.config import BacktestConfig, BacktestResult
from backtests.engine.errors import (
    EngineError,
    InsufficientDataError,
    InvalidConfigError,
    UnknownKindError,
)
from backtests.engine.metrics import BarContext, compute_metrics
from backtests.engine.simulate import (
    EXIT_REASONS,
    TRADE_COLUMNS,
    ProgressFn,
    Simulation,
    Trades,
    simulate,
)
from marketdata.timeframes import spacing_matches, timeframe_of_spacing
from strategies.library.base import StrategyKind, StrategyRef
from strategies.library.indicators import IndicatorCache
from strategies.library.registry import UnknownStrategyKind, get_kind

# Part of every result's cache key: bump whenever any number the engine returns changes.
# 2.0.0: liquidation instead of negative equity, calendars, fractional targets, sizing modes.
# 2.1.0: trailing, ATR and time stops; close, limit and stop entries; spread.
# 2.1.1: an entry's fee and the spread and slippage it pays never exceed the equity.
ENGINE_VERSION = "2.1.1"


def resolve_kind(name: str) -> StrategyKind:
    try:
        return get_kind(name)
    except UnknownStrategyKind as exc:
        raise UnknownKindError(str(exc)) from None


def check_length(kind: StrategyKind, params: Mapping[str, Any], bars: int) -> None:
    needed = kind.min_bars(params)
    if bars < needed:
        described = ", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"
        raise InsufficientDataError(
            f"{kind.name} with {described} needs at least {needed} candles to trade; got {bars}"
        )


def _spacing_text(seconds: float) -> str:
    """A spacing in the largest whole unit that states it: "1 day", "90 minutes"."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def fit_to_candles(config: BacktestConfig, bars: CandleArrays) -> BacktestConfig:
    """`config` with its timeframe checked against the candles' spacing, or inferred.

    The typical spacing is the lower median of the gaps between bar open times, so weekends,
    holidays and missing bars do not move it. A timeframe the candles are not spaced at is
    refused: annualising daily bars as minutes would overstate Sharpe ~38 times.
    """
    if len(bars) < 2:
        return config  # a single bar has no spacing, and nothing to annualise
    spacing = bars.spacing_ns / 1e9
    if config.timeframe is None:
        inferred = timeframe_of_spacing(spacing)
        if inferred is None:
            raise InvalidConfigError(
                {
                    "timeframe": [
                        f"Cannot infer the timeframe: the candles are typically "
                        f"{_spacing_text(spacing)} apart, which is no known timeframe. "
                        "Set timeframe."
                    ]
                }
            )
        return dataclasses.replace(config, timeframe=inferred)
    if not spacing_matches(config.timeframe, spacing):
        actual = timeframe_of_spacing(spacing)
        named = f" ({actual} bars)" if actual else ""
        raise InvalidConfigError(
            {
                "timeframe": [
                    f"Timeframe {config.timeframe} does not match the candles: they are "
                    f"typically {_spacing_text(spacing)} apart{named}."
                ]
            }
        )
    return config


def drawdown_of(equity: np.ndarray) -> np.ndarray:
    # The peak is at least the (positive) initial capital, so the ratio is always defined.
    peak = np.maximum.accumulate(equity)
    drawdown = np.divide(equity, peak, out=peak)
    drawdown -= 1.0
    return drawdown


def trades_frame(sim: Simulation, bars: CandleArrays) -> pd.DataFrame:
    return trades_table(sim.trades, bars.index, bars.ts_ns)


def trades_table(t: Trades, index: pd.DatetimeIndex, ts_ns: np.ndarray) -> pd.DataFrame:
    """The trades as the result's table (TRADE_COLUMNS), bars numbered along `index`."""
    entry_time = index[t.entry_bar]
    exit_time = index[t.exit_bar]
    duration = (ts_ns[t.exit_bar] - ts_ns[t.entry_bar]) / 1e9
    frame = pd.DataFrame(
        {
            "entry_time": entry_time,
            "exit_time": exit_time,
            "direction": pd.Categorical.from_codes(
                (t.direction < 0).astype(np.int8), categories=["long", "short"]
            ),
            "entry_price": t.entry_price,
            "exit_price": t.exit_price,
            "quantity": t.quantity,
            "pnl": t.pnl,
            "pnl_pct": t.pnl_pct,
            "fees": t.fees,
            "duration": duration,
            "exit_reason": pd.Categorical.from_codes(
                t.reason.astype(np.int8), categories=list(EXIT_REASONS)
            ),
            "is_open": t.is_open.astype(bool),
        },
        columns=TRADE_COLUMNS,
    )
    return frame


def run_backtest(
    candles: pd.DataFrame,
    strategy: StrategyRef,
    config: BacktestConfig | None = None,
    progress: ProgressFn | None = None,
    cache: IndicatorCache | None = None,
) -> BacktestResult:
    """Backtest `strategy` on `candles` under `config`; see the package docstring for rules.

    `progress(done, total)` is called with total = number of bars, at least every 2%.
    `cache`, when given, is the indicator cache the kind computes into, so the caller can
    read what the kind left there (the ML predictor's per-fold diagnostics).
    Raises EngineError subclasses (or ParamValidationError) for bad input.
    """
    config = config or BacktestConfig()
    config.validate()
    kind = resolve_kind(strategy.kind)
    params = kind.validate(strategy.params)
    bars = validate_candles(candles)
    if progress is not None:
        progress(0, len(bars))
    check_length(kind, params, len(bars))
    target = kind.positions(candles, params, cache if cache is not None else IndicatorCache())
    return _run(bars, target, config, progress, kind=kind.name, params=dict(params))


def run_positions(
    candles: pd.DataFrame,
    positions: np.ndarray | pd.Series,
    config: BacktestConfig | None = None,
    progress: ProgressFn | None = None,
) -> BacktestResult:
    """Backtest a ready-made target-position series (one value per candle, as a kind emits).

    For signals computed outside the strategy library, e.g. in a notebook.
    """
    config = config or BacktestConfig()
    config.validate()
    bars = validate_candles(candles)
    target = np.asarray(positions, dtype=np.float64)
    if target.shape != (len(bars),):
        raise EngineError(
            f"positions must have one value per candle ({len(bars)}), got shape {target.shape}"
        )
    if progress is not None:
        progress(0, len(bars))
    return _run(bars, target, config, progress, kind="", params={})


def _run(
    bars: CandleArrays,
    target: np.ndarray,
    config: BacktestConfig,
    progress: ProgressFn | None,
    *,
    kind: str,
    params: dict[str, Any],
) -> BacktestResult:
    n = len(bars)
    config = fit_to_candles(config, bars)
    sim = simulate(bars, target, config, progress)
    drawdown = drawdown_of(sim.equity)
    metrics = compute_metrics(
        context=BarContext(bars.ts_ns, bars.close),
        sim=sim,
        drawdown=drawdown,
        config=config,
    )
    result = BacktestResult(
        # copy=False: pandas 3 would otherwise copy each million-row array.
        equity=pd.Series(sim.equity, index=bars.index, name="equity", copy=False),
        drawdown=pd.Series(drawdown, index=bars.index, name="drawdown", copy=False),
        position=pd.Series(sim.position, index=bars.index, name="position", copy=False),
        trades=trades_frame(sim, bars),
        metrics=metrics,
        kind=kind,
        params=params,
        config=config,
        engine_version=ENGINE_VERSION,
        spans=(sim.span_cash, sim.span_quantity, sim.span_of_bar),
    )
    if progress is not None:
        progress(n, n)
    return result
