"""Tradelab's backtest engine: pure numpy/pandas, no Django.

Public API: run_backtest, run_positions (bring your own target positions), run_sweep,
expand_grid, grid_size, sample_grid, BacktestConfig, BacktestResult, the EngineError
family, ENGINE_VERSION, METRIC_DEFINITIONS and HEADLINE_METRICS.

Execution rules (each one is pinned by a test in tests/backtests/engine/: test_rules.py
unless another module is named):

1. Signals. The strategy's target position for bar t is computed from data up to bar t's
   close. A change of target fills at bar t+1's open; nothing ever fills on bar 0.
2. Targets. A target is a fraction of the full size in [-1, 1]: +1 long, -1 short, 0 flat,
   0.5 half the full size long; NaN means flat; anything beyond [-1, 1] is refused. A
   change of target (of side or of size) is an order at the next open for the difference:
   going flat or to the other side closes the whole position first (a flip closes and
   reopens at the same open); resizing buys or sells only the difference, paying fees on
   that alone. An unchanged target places no order, so quantities are fixed between
   changes of target.
3. Slippage. Market fills (signal fills and triggered stops) move against the trader by
   slippage_bps: a buy fills at price * (1 + s), a sell at price * (1 - s).
4. Fees. Every fill pays max(fee_rate * notional + fixed_fee, min_fee), entries, resizes
   and exits alike (notional = quantity * fill price).
5. Sizing. The full size is computed at the order's open from the equity E at that open
   (cash + position marked to the raw open) and the price p at which a position on the
   target's side is added to (the open with slippage):
   - "fraction": the most units whose notional and fee fit in size_fraction * E, i.e.
     fraction * E / (p * (1 + fee_rate)) when only the rate applies;
   - "fixed_quantity": fixed_quantity units; "fixed_notional": fixed_notional / p units;
   - "risk": risk_pct % of E / (p * stop_loss_pct %) units, so hitting the stop (before
     fees and slippage) loses risk_pct % of equity; it requires stop_loss_pct.
   The wanted quantity is |target| * full size, cut to what E affords (notional plus fee
   at most E: no leverage), then rounded down to a multiple of quantity_step. An order
   whose quantity rounds down to nothing, or whose notional is below min_notional, is not
   placed and is counted in the metric orders_skipped; closing a whole position is never
   skipped.
6. Long-only. With allow_short False, a negative target means flat.
7. Stops and targets. stop_loss_pct / take_profit_pct are set from the fill price that
   opened the position (resizing does not move them) and checked against each later bar's
   low and high, starting with the entry bar itself (its whole range trades after the
   opening fill). A level hit within the bar fills at the level; a bar that opens beyond
   the level fills at that open. When the stop and the target both fall within one bar's
   range, the stop is assumed. Stops slip like market orders; take-profits are limit
   orders and do not. After a stop or target exit the engine stays flat until the
   strategy's target changes.
8. Liquidation and ruin. Equity never goes below zero. Without leverage (the only mode so
   far) a position is liquidated when its liquidation value (cash + position at price p,
   less the fee for closing it) reaches zero: the bar whose high (for a short; low for a
   long) reaches that price closes the position there, or at the open if the bar opens
   beyond it, without slippage, with exit reason "liquidation". A long costing no more
   than the equity can only reach it through fixed or minimum fees; a short reaches it
   when the price rises far enough (about twice the entry price at full size). The
   nearer of a stop and the liquidation price is hit first. Any fill that would leave the
   account below zero (a gap beyond the liquidation price) leaves it at exactly zero and
   is a liquidation: the account loses what it has and no more. After a liquidation the
   engine stays flat to the end (ruin), and metrics say so: max drawdown -100%, Sharpe,
   Sortino and alpha None (test_rules.py, test_properties.py).
9. End of data. A position still open after the last bar is marked to the last close,
   reported with exit_reason "end" and is_open True, and pays no exit fee.
10. Trades. A trade is a round trip from flat (or a flip) back to flat. For a trade that
    was resized, entry_price and exit_price are the quantity-weighted means of its adding
    and reducing fills, quantity is the units added in all, and pnl is what the round
    trip did to the account (side * (exit notional - entry notional) - fees, unless the
    account was wiped out).
11. Timeframe. The configured timeframe must match the candles: their typical spacing
    (the lower median of the gaps between open times, so weekends, holidays and missing
    bars do not count) must be the timeframe's length, 28 to 31 days for "1M" (calendar
    months). A mismatch raises InvalidConfigError on `timeframe`; timeframe None infers
    it from the spacing (test_metrics.py).
12. Calendar. Annualisation (Sharpe, Sortino, volatility, alpha, annualised return)
    uses bars per year of the calendar: "24/7", 365 days (1d: 365 bars, 1h: 8,760);
    "exchange", trading_days_per_year sessions (252 by default; 1d: 252, 1w: 52, an
    intraday bar: 252 * bars per session, given as bars_per_day or inferred as the median
    count of bars per UTC day); "1M" is 12 a year on both. cagr_pct uses calendar time;
    METRIC_DEFINITIONS says how each metric annualises (test_metrics.py).
13. Bad configurations raise InvalidConfigError, whose `errors` names each offending
    field, never a number computed from them (test_errors.py).

Invariant at every bar (test_properties.py): equity = cash + quantity * close >= 0.

Units: equity and pnl in quote currency; drawdown as a fraction in [-1, 0]; trade duration
in seconds; timestamps are bar open times in UTC.
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
from backtests.engine.simulate import EXIT_REASONS, TRADE_COLUMNS
from backtests.engine.sweep import expand_grid, grid_size, run_sweep, sample_grid

__all__ = [
    "ENGINE_VERSION",
    "EXIT_REASONS",
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
