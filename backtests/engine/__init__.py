"""Tradelab's backtest engine: pure numpy/pandas, no Django.

Public API: run_backtest, run_positions (bring your own target positions), run_sweep,
expand_grid, grid_size, sample_grid, BacktestConfig, BacktestResult, the EngineError
family, ENGINE_VERSION, METRIC_DEFINITIONS and HEADLINE_METRICS.

Execution rules (each one is pinned by a test in tests/backtests/engine/test_rules.py):

1. Signals. The strategy's target position for bar t is computed from data up to bar t's
   close. A change of target fills at bar t+1's open; nothing ever fills on bar 0.
2. Slippage. Market fills (signal fills and triggered stops) move against the trader by
   slippage_bps: a buy fills at price * (1 + s), a sell at price * (1 - s).
3. Fees. Every fill pays fee_rate * quantity * fill price, entries and exits alike.
4. Sizing. An entry commits size_fraction of the equity at that moment (cash, since the
   engine is flat before every entry): quantity = fraction * equity / (price * (1 + fee)),
   so the notional and its fee together use exactly that fraction.
5. Long-only. With allow_short False, a target of -1 means flat. A target that flips from
   +1 to -1 closes the long and opens the short at the same open.
6. Stops and targets. stop_loss_pct / take_profit_pct are set from the entry fill price
   and checked against each later bar's low and high, starting with the entry bar itself
   (its whole range trades after the opening fill). A level hit within the bar fills at the
   level; a bar that opens beyond the level fills at that open. When the stop and the target
   both fall within one bar's range, the stop is assumed. Stops slip like market orders;
   take-profits are limit orders and do not. After a stop or target exit the engine stays
   flat until the strategy's target changes.
7. End of data. A position still open after the last bar is marked to the last close,
   reported with exit_reason "end" and is_open True, and pays no exit fee.
8. Ruin. If a trade leaves equity at or below zero, no further trades are opened.

Units: equity and pnl in quote currency; drawdown as a fraction <= 0; trade duration in
seconds; timestamps are bar open times in UTC.
"""

from __future__ import annotations

from backtests.engine.backtest import ENGINE_VERSION, run_backtest, run_positions
from backtests.engine.config import BacktestConfig, BacktestResult
from backtests.engine.errors import (
    EngineError,
    InsufficientDataError,
    InvalidCandlesError,
    InvalidConfigError,
    ParamValidationError,
    UnknownKindError,
)
from backtests.engine.metrics import HEADLINE_METRICS, METRIC_DEFINITIONS
from backtests.engine.simulate import TRADE_COLUMNS
from backtests.engine.sweep import expand_grid, grid_size, run_sweep, sample_grid

__all__ = [
    "ENGINE_VERSION",
    "HEADLINE_METRICS",
    "METRIC_DEFINITIONS",
    "TRADE_COLUMNS",
    "BacktestConfig",
    "BacktestResult",
    "EngineError",
    "InsufficientDataError",
    "InvalidCandlesError",
    "InvalidConfigError",
    "ParamValidationError",
    "UnknownKindError",
    "expand_grid",
    "grid_size",
    "run_backtest",
    "run_positions",
    "run_sweep",
    "sample_grid",
]
