"""Tradelab's backtest engine: pure numpy/pandas, no Django.

Public API: run_backtest, run_positions (bring your own target positions), run_sweep,
expand_grid, grid_size, sample_grid, BacktestConfig, BacktestResult, the EngineError
family, ENGINE_VERSION, METRIC_DEFINITIONS and HEADLINE_METRICS. Portfolios (several
instruments, shared cash) are `backtests.engine.portfolio.run_portfolio`, whose module
docstring states its own rules.

Execution rules (each one is pinned by a test in tests/backtests/engine/: test_rules.py
unless another module is named):

1. Signals. The strategy's target position for bar t is computed from data up to bar t's
   close. A change of target fills at bar t+1's open; nothing ever fills on bar 0 (with
   entry_order "market", the default; rule 15 gives the other entry orders).
2. Targets. A target is a fraction of the full size in [-1, 1]: +1 long, -1 short, 0 flat,
   0.5 half the full size long; NaN means flat; anything beyond [-1, 1] is refused. A
   change of target (of side or of size) is an order at the next open for the difference:
   going flat or to the other side closes the whole position first (a flip closes and
   reopens at the same open); resizing buys or sells only the difference, paying fees on
   that alone. An unchanged target places no order, so quantities are fixed between
   changes of target.
3. Slippage and spread. Market fills (signal fills, triggered stops of every kind, time
   stops and triggered stop entries) move against the trader by slippage_bps plus half of
   spread_bps: a buy fills at price * (1 + s), a sell at price * (1 - s), with
   s = (slippage_bps + spread_bps / 2) / 10,000. Limit fills (take-profits, limit entries)
   and liquidations pay neither (test_orders.py for the spread).
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
   at most max_leverage * E; size_fraction may be up to max_leverage), then rounded down
   to a multiple of quantity_step. An order whose quantity rounds down to nothing, or
   whose notional is below min_notional, is not placed and is counted in the metric
   orders_skipped; closing a whole position is never skipped.
6. Long-only. With allow_short False, a negative target means flat.
7. Stops and targets. stop_loss_pct / take_profit_pct are set from the fill price that
   opened the position (resizing does not move them) and checked against each later bar's
   low and high, starting with the entry bar itself (its whole range trades after the
   opening fill). A level hit within the bar fills at the level; a bar that opens beyond
   the level fills at that open. When the stop and the target both fall within one bar's
   range, the stop is assumed. Stops slip like market orders; take-profits are limit
   orders and do not. After a stop or target exit the engine stays flat until the
   strategy's target changes.
8. Liquidation and ruin. Equity never goes below zero. A position is liquidated when its
   liquidation value (cash + position at price p, less the fee for closing it) falls to
   maintenance_margin_pct % of its notional at p (0 by default: to zero): the bar whose
   high (for a short; low for a long) reaches that price closes the position there, or at
   the open if the bar opens beyond it, without slippage, with exit reason "liquidation".
   Without leverage (max_leverage 1, the default) a long costing no more than the equity
   can only reach a zero liquidation value through fixed or minimum fees; a short reaches
   it when the price rises far enough (about twice the entry price at full size); a long
   bought with borrowed cash (size_fraction or a fixed size above the equity, up to
   max_leverage) reaches it when the price falls by about 1 / leverage. The nearer of a
   stop and the liquidation price is hit first. Any fill that would leave the account
   below zero (a gap beyond the liquidation price) leaves it at exactly zero and is a
   liquidation: the account loses what it has and no more. After a liquidation that
   leaves nothing the engine stays flat to the end (ruin), and metrics say so: max
   drawdown -100%, Sharpe, Sortino and alpha None (test_rules.py, test_properties.py).
   A liquidation at a maintenance margin above zero leaves that margin in the account,
   and the engine stays flat until the target changes, as after a stop (test_orders.py).
   Borrow (test_orders.py): with borrow_rate_pct r, every close at which a position is
   held (after that close's fills) charges r / 100 / P of the short's notional at that
   close, or of the cash a long borrowed (its negative cash, so the debt compounds), P
   being the calendar's bars per year (rule 12). The entry bar's close counts, the exit
   bar's does not. A charge that leaves the close beyond the liquidation level liquidates
   the position at that close.
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
14. Trailing, ATR and time stops (test_orders.py). Like rule 7's stop-loss they are set
    when a position opens, checked against each later bar's low (a short's: high) from the
    entry bar on, fill at the level or at an open beyond it, slip, and leave the engine
    flat until the target changes.
    - trailing_stop_pct: on each bar the stop sits that % below the best price since
      entry: the highest of the entry fill price and the highs of the bars held before
      this one (for a short, that % above the lowest of the fill price and earlier lows).
      A bar's own high does not move its stop: the high may come after the low.
      Exit reason "trailing_stop".
    - atr_stop_multiple k: a stop at the entry fill price -/+ k * ATR (minus for a long),
      fixed at entry (resizing does not move it). ATR is Wilder's average true range over
      atr_period bars (14 by default) at the signal bar's close: the first ATR is the mean
      of the first atr_period true ranges, then ATR = (previous * (period - 1) + TR) /
      period, TR = max(high - low, |high - previous close|, |low - previous close|). A
      signal bar with no ATR yet (fewer than atr_period bars) sets no ATR stop. Exit
      reason "atr_stop".
    - Of several stops, the nearest to the price (the first it reaches) wins, and the exit
      reason names it; on a tie "stop", then "atr_stop", then "trailing_stop". Stops come
      before the take-profit within one bar, and a stop before an equal liquidation level
      (rules 7 and 8).
    - time_stop_bars N: a position opened on bar e (at its open, or within it for a limit
      or stop entry) is closed at bar e + N's open as a market order (rule 3), with exit
      reason "time_stop", after bars e to e + N - 1 were checked for the other exits; with
      entry_order "close" (opened at bar e's close) it closes at bar e + N's close, after
      bars e + 1 to e + N were checked. Resizing does not restart the count. A change of
      target that fills at that same open (or close) wins if it goes flat or to the other
      side (exit reason "signal"); a mere resize there is dropped and the time stop closes.
15. Entry orders (entry_order; test_orders.py).
    - "market" (default): rule 1.
    - "close": every order of a change of target decided at bar t's close (entries,
      resizes and exits) fills at bar t's close, bar 0 included, as a market order (rule
      3), sized from the equity marked to that close; exit levels are checked from bar t+1
      on. This is backtesting.py's trade_on_close.
    - "limit" and "stop": an order that opens a position from flat (also the new side of a
      flip) rests at a level set from the signal bar's close C, with x = entry_offset_pct
      / 100: a buy limit at C * (1 - x), a short-sell limit at C * (1 + x), a buy stop at
      C * (1 + x), a short-sell stop at C * (1 - x). It can fill on bars t+1 to
      t+entry_valid_bars (1 by default) and is cancelled, unfilled, after them. A buy limit
      fills on the first bar whose low reaches the limit, at min(open, limit): a bar that
      opens below it fills at its (better) open; no slippage or spread. A buy stop fills on
      the first bar whose high reaches the stop, at max(open, stop) * (1 + s) (rule 3).
      Short sells mirror both. A change of target while the order rests cancels it; the
      new target places its own order. The size is computed from the cash at the fill
      price (rule 5). Resizing an open position and closing it (target 0 or a flip) are
      market orders at the next open. On the fill bar, a fill at the open leaves the whole
      bar to rule 7; a fill within the bar checks the stops and the liquidation level
      against that bar's range (its low may come after the fill: the conservative choice)
      but the take-profit only from the next bar on.
16. Agreement with backtesting.py (bench/engine_agreement.py: final equity within 1e-9
    relative for market, close, limit and stop entries, stop-loss, take-profit and a
    trailing stop replayed by raising its stop-loss at each close). Differences on
    purpose: backtesting.py trades whole units (the bench uses fixed_quantity); it charges
    its `spread` in full on every entry, limit fills included, and none on exits (ours:
    half on each market fill, none on limit fills); when a stop-loss or take-profit level
    lies in the range of the bar a limit or stop entry filled in, it waits for the next
    bar (except a take-profit after a stop entry with no stop-loss in range), where we
    check the stops on that bar (rule 15); it has no built-in percentage trailing stop,
    ATR stop at entry, time stop, maintenance margin or borrow cost.

Invariant at every bar (test_properties.py): equity = cash + quantity * close >= 0.

Units: equity and pnl in quote currency; drawdown as a fraction in [-1, 0]; trade duration
in seconds; timestamps are bar open times in UTC.
"""

from __future__ import annotations

from backtests.engine.backtest import ENGINE_VERSION, run_backtest, run_positions
from backtests.engine.config import ENTRY_ORDERS, BacktestConfig, BacktestResult
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
    "ENTRY_ORDERS",
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
