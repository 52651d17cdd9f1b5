"""run_backtest: validate inputs, compute target positions, simulate and measure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.candles import CandleArrays, validate_candles
from backtests.engine.config import BacktestConfig, BacktestResult
from backtests.engine.errors import EngineError, InsufficientDataError, UnknownKindError
from backtests.engine.metrics import BarContext, compute_metrics
from backtests.engine.simulate import EXIT_REASONS, TRADE_COLUMNS, ProgressFn, Simulation, simulate
from strategies.library.base import StrategyKind, StrategyRef
from strategies.library.indicators import IndicatorCache
from strategies.library.registry import UnknownStrategyKind, get_kind

# Part of every result's cache key: bump whenever any number the engine returns changes.
ENGINE_VERSION = "1.0.0"


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


def drawdown_of(equity: np.ndarray) -> np.ndarray:
    # The peak is at least the (positive) initial capital, so the ratio is always defined.
    peak = np.maximum.accumulate(equity)
    drawdown = np.divide(equity, peak, out=peak)
    drawdown -= 1.0
    return drawdown


def trades_frame(sim: Simulation, bars: CandleArrays) -> pd.DataFrame:
    t = sim.trades
    index = bars.index
    entry_time = index[t.entry_bar]
    exit_time = index[t.exit_bar]
    duration = (bars.ts_ns[t.exit_bar] - bars.ts_ns[t.entry_bar]) / 1e9
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
) -> BacktestResult:
    """Backtest `strategy` on `candles` under `config`; see the package docstring for rules.

    `progress(done, total)` is called with total = number of bars, at least every 2%.
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
    target = kind.positions(candles, params, IndicatorCache())
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
    sim = simulate(bars, target, config, progress)
    drawdown = drawdown_of(sim.equity)
    metrics = compute_metrics(
        context=BarContext(bars.ts_ns, bars.close),
        equity=sim.equity,
        drawdown=drawdown,
        trades=sim.trades,
        exposure_bars=sim.exposure_bars,
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
    )
    if progress is not None:
        progress(n, n)
    return result
