"""Turning target positions into fills, trades and an equity curve.

The fill rules are those stated in `backtests.engine`'s docstring. Two paths implement them:

- The common case (targets of -1, 0 and +1, fraction-of-equity sizing, proportional fees,
  no quantity step or minimum notional) is vectorised over bars: a trade is a run of equal
  non-zero held positions, stops and liquidation only shorten a run, and because each entry
  commits a fixed fraction of equity the cash after every trade is a running product of
  per-trade growth factors.
- Everything else (fractional targets, the other sizing modes, fixed and minimum fees,
  quantity steps, minimum notional, leverage beyond the equity, a maintenance margin,
  borrow costs, entries other than at the next open, trailing, ATR and time stops) makes
  each order depend on the cash the previous one left, or on the path since entry, so
  `_simulate_orders` walks the orders in sequence: one step per change of target, not per
  bar. Bar ranges are only searched where a stop, target or liquidation level can be
  reached (every bar, under a trailing stop or borrow costs). A spread is only a larger
  market-fill cost, so it keeps the vectorised path.

Both paths describe the account as spans over which cash and quantity are constant, so
equity at every close is cash + quantity * close, computed in one vectorised pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtests.engine.candles import CandleArrays
from backtests.engine.config import (
    ENTRY_CLOSE,
    ENTRY_LIMIT,
    ENTRY_MARKET,
    ENTRY_STOP,
    SIZING_FIXED_NOTIONAL,
    SIZING_FIXED_QUANTITY,
    SIZING_FRACTION,
    SIZING_RISK,
    BacktestConfig,
)
from backtests.engine.errors import EngineError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

EXIT_SIGNAL, EXIT_STOP, EXIT_TARGET, EXIT_END, EXIT_LIQUIDATION = 0, 1, 2, 3, 4
EXIT_TRAILING_STOP, EXIT_ATR_STOP, EXIT_TIME_STOP = 5, 6, 7
EXIT_REASONS = np.array(
    [
        "signal",
        "stop",
        "target",
        "end",
        "liquidation",
        "trailing_stop",
        "atr_stop",
        "time_stop",
    ],
    dtype=object,
)

# Quantities within this many steps below a whole number of steps round up to it: float
# division turns 0.3 / 0.1 into 2.9999999999999996.
_STEP_TOLERANCE = 1e-9

TRADE_COLUMNS = [
    "entry_time",  # open time of the bar that filled the entry (at its open, close or a level)
    "exit_time",  # open time of the exit bar; for an open trade, of the last bar
    "direction",  # "long" or "short"
    "entry_price",  # fill price including slippage (quantity-weighted over adding fills)
    "exit_price",  # likewise over reducing fills; the last close for an open trade
    "quantity",  # units bought (long) or sold (short) to open and add, always positive
    "pnl",  # net of every fill's fee, in quote currency
    "pnl_pct",  # pnl / entry notional * 100
    "fees",  # every fill's fee (no exit fee while open)
    "duration",  # exit_time - entry_time, in seconds
    "exit_reason",  # one of EXIT_REASONS; "end" for a trade still open
    "is_open",  # True for a position still open at the last bar
]


@dataclass
class Trades:
    """Round trips as parallel arrays, in entry order."""

    entry_bar: IntArray
    exit_bar: IntArray  # bar whose open (signal) or range (stop/target) closed it; N-1 if open
    direction: FloatArray  # +1 long, -1 short
    entry_price: FloatArray
    exit_price: FloatArray
    quantity: FloatArray
    pnl: FloatArray
    pnl_pct: FloatArray
    fees: FloatArray
    reason: IntArray
    is_open: np.ndarray

    def __len__(self) -> int:
        return len(self.entry_bar)


@dataclass
class Simulation:
    equity: FloatArray
    position: np.ndarray  # int8 side held at each bar's close
    trades: Trades
    exposure_bars: int
    orders_skipped: int
    # The account as spans: from bar span_start[i] on, cash span_cash[i] and signed
    # quantity span_quantity[i]; span_of_bar maps each bar to its span.
    span_cash: FloatArray
    span_quantity: FloatArray
    span_of_bar: np.ndarray


ProgressFn = Callable[[int, int], None]


def _runs(held: np.ndarray) -> tuple[IntArray, IntArray, np.ndarray]:
    """Maximal runs of equal held position: (start bar, end bar exclusive, value)."""
    n = len(held)
    change = np.flatnonzero(held[1:] != held[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [n])).astype(np.int64)
    return starts, ends, held[starts]


def _first_in_segment(mask: np.ndarray, starts: IntArray, ends: IntArray) -> IntArray:
    """Index of the first True of `mask` within each [start, end) segment, or end if none."""
    n = len(mask)
    hit = np.where(mask, np.arange(n, dtype=np.int64), n)
    # reduceat over [start, next start); segments here tile a contiguous bar range.
    first = np.minimum.reduceat(hit, starts) if len(starts) else np.empty(0, np.int64)
    return np.minimum(first, ends)


def _checked_targets(target: np.ndarray) -> bool:
    """Refuse targets beyond [-1, 1]; True when some non-zero target is not -1 or +1."""
    magnitude = np.abs(target)
    if (magnitude > 1.0).any():  # NaN compares False: NaN means flat
        bad = int(np.argmax(magnitude > 1.0))
        raise EngineError(
            f"target positions must lie in [-1, 1] (a fraction of the full size; NaN means "
            f"flat); position {bad} is {target[bad]!r}"
        )
    return bool(((magnitude > 0.0) & (magnitude < 1.0)).any())


def _vectorisable(config: BacktestConfig) -> bool:
    return (
        config.sizing == SIZING_FRACTION
        and config.fixed_fee == 0
        and config.min_fee == 0
        and config.quantity_step is None
        and config.min_notional == 0
        and config.entry_order == ENTRY_MARKET
        and config.trailing_stop_pct is None
        and config.atr_stop_multiple is None
        and config.time_stop_bars is None
        # Leverage the sizing never uses changes nothing; a leveraged long can be liquidated.
        and config.size_fraction <= 1
        # Beyond this a short's entry costs could exceed the equity, which only the order
        # path caps (_payable_units); below it they never do.
        and config.market_cost <= 0.5
        and config.maintenance_margin_pct == 0
        and config.borrow_rate_pct == 0
    )


def simulate(
    bars: CandleArrays,
    target: FloatArray,
    config: BacktestConfig,
    progress: ProgressFn | None = None,
) -> Simulation:
    """Fill a target-position series under `config` (see the package docstring for rules)."""
    target = np.asarray(target, dtype=np.float64)
    fractional = _checked_targets(target)
    if not fractional and _vectorisable(config):
        return _simulate_vectorised(bars, target, config, progress)
    # NaN (warm-up) means flat; long-only turns short targets into flat.
    wanted = np.nan_to_num(target, nan=0.0)
    if not config.allow_short:
        wanted = np.maximum(wanted, 0.0)
    # A fill at the signal bar's own close needs one more slot: the last bar's signal.
    held = np.empty(len(bars) + (config.entry_order == ENTRY_CLOSE))
    held[0] = 0.0
    held[1:] = wanted[: len(held) - 1]
    return _simulate_orders(bars, held, config, progress, _borrow_per_bar(bars, config))


def _borrow_per_bar(bars: CandleArrays, config: BacktestConfig) -> float:
    """borrow_rate_pct as a fraction charged per bar, over the calendar's bars per year."""
    if config.borrow_rate_pct == 0:
        return 0.0
    # Imported here: metrics imports this module.
    from backtests.engine.metrics import BarContext, bars_per_year

    per_year = bars_per_year(config, BarContext(bars.ts_ns, bars.close))
    if per_year is None:
        raise EngineError("borrow_rate_pct needs the timeframe (set it, or let it be inferred)")
    return config.borrow_rate_pct / 100.0 / per_year


def _spans_to_bars(span_start: IntArray, n: int) -> np.ndarray:
    """Span index of each bar: a running count of the span starts at or before it."""
    span_of_bar = np.zeros(n, dtype=np.int32)
    span_of_bar[span_start[1:]] = 1
    np.cumsum(span_of_bar, out=span_of_bar)
    return span_of_bar


def _simulate_vectorised(
    bars: CandleArrays,
    target: FloatArray,
    config: BacktestConfig,
    progress: ProgressFn | None,
) -> Simulation:
    """Targets in {-1, 0, +1} under fraction sizing and proportional fees, without a bar loop.

    One function on purpose (about 130 lines): it is a single pass of array algebra whose
    intermediates (entry and exit bars, prices, quantities, cash per trade) feed every later
    step; split up, each step would take and return most of them.
    """
    n = len(bars)
    o, c = bars.open, bars.close
    fee = config.fee_rate
    slip = config.market_cost
    frac = config.size_fraction

    # Positions are small integers: int8 arrays keep the per-bar work in cache.
    wanted = np.greater(target, 0.0).view(np.int8)  # NaN (warm-up) compares False: flat
    if config.allow_short:
        wanted = wanted - np.less(target, 0.0).view(np.int8)
    # The target decided at bar t's close is held from bar t+1's open.
    held = np.empty(n, dtype=np.int8)
    held[0] = 0
    held[1:] = wanted[:-1]

    starts, ends, values = _runs(held)
    active = values != 0
    e_bar = starts[active]
    planned_end = ends[active]
    d = values[active].astype(np.float64)
    k = len(e_bar)

    # Market fills move against the trader: buys pay more, sells receive less.
    entry_px = o[e_bar] * (1.0 + d * slip)
    x_bar = planned_end.copy()
    reason = np.full(k, EXIT_SIGNAL, dtype=np.int64)
    exit_px = np.empty(k)

    liquidation = _short_liquidation_levels(bars, starts, active, d, entry_px, config)
    sl = config.stop_loss_pct
    tp = config.take_profit_pct
    shortened = k > 0 and (sl is not None or tp is not None or liquidation is not None)
    if shortened:
        x_bar, reason, exit_px = _apply_stops(
            bars, e_bar, planned_end, d, entry_px, config, liquidation
        )
    is_open = x_bar >= n
    closed_by_signal = (reason == EXIT_SIGNAL) & ~is_open
    sig_bars = x_bar[closed_by_signal]
    exit_px[closed_by_signal] = o[sig_bars] * (1.0 - d[closed_by_signal] * slip)
    reason[is_open] = EXIT_END
    exit_px[is_open] = c[-1]

    # Each entry buys (or sells short) q = frac * cash / (price * (1 + fee)), so that the
    # committed fraction pays for the notional and its fee; cash then grows by a factor.
    exit_fee_rate = np.where(is_open, 0.0, fee)
    gross = d * (exit_px - entry_px) - fee * entry_px - exit_fee_rate * exit_px
    growth = 1.0 + frac * gross / (entry_px * (1.0 + fee))
    # A liquidation leaves nothing by definition of its level; a fill beyond the level (a
    # gap) would leave less than nothing, and the account cannot lose more than it has.
    growth[reason == EXIT_LIQUIDATION] = 0.0
    wiped = growth <= 0.0
    ruined = bool(wiped.any())
    if ruined:
        growth[wiped] = 0.0
        reason[wiped] = EXIT_LIQUIDATION
        # Once the account is wiped out no further position can be opened.
        keep = int(np.argmax(wiped)) + 1
        e_bar, x_bar, d, entry_px, exit_px = (
            e_bar[:keep],
            x_bar[:keep],
            d[:keep],
            entry_px[:keep],
            exit_px[:keep],
        )
        reason, is_open, growth = reason[:keep], is_open[:keep], growth[:keep]
        exit_fee_rate, wiped = exit_fee_rate[:keep], wiped[:keep]
        k = keep
    cash_before = config.initial_capital * np.concatenate(([1.0], np.cumprod(growth)[:-1]))
    qty = frac * cash_before / (entry_px * (1.0 + fee))
    fees = qty * (fee * entry_px + exit_fee_rate * exit_px)
    pnl = qty * d * (exit_px - entry_px) - fees
    if ruined:
        pnl[wiped] = -cash_before[wiped]
    pnl_pct = pnl / (qty * entry_px) * 100.0
    cash_after = cash_before + pnl

    # Equity is piecewise "a + b * close": flat spans hold cash (b = 0); a trade's span
    # holds its leftover cash plus d * qty units. A span starts at each entry and exit bar;
    # when two start on one bar (a flip, or a stop on the entry bar) the later event wins.
    entry_a = cash_before - qty * fee * entry_px - d * qty * entry_px
    entry_b = d * qty
    ev_bar = np.empty(2 * k, dtype=np.int64)
    ev_bar[0::2] = e_bar
    ev_bar[1::2] = np.where(is_open, n, x_bar)
    ev_a = np.empty(2 * k)
    ev_a[0::2] = entry_a
    ev_a[1::2] = cash_after
    ev_b = np.empty(2 * k)
    ev_b[0::2] = entry_b
    ev_b[1::2] = 0.0
    last_of_bar = np.ones(2 * k, dtype=bool)
    if k:
        last_of_bar[:-1] = ev_bar[1:] != ev_bar[:-1]
    keep_ev = last_of_bar & (ev_bar < n)
    ev_bar, ev_a, ev_b = ev_bar[keep_ev], ev_a[keep_ev], ev_b[keep_ev]
    span_start = np.concatenate(([0], ev_bar))
    seg_a = np.concatenate(([config.initial_capital], ev_a))
    seg_b = np.concatenate(([0.0], ev_b))
    seg_id = _spans_to_bars(span_start, n)
    equity = _mark_to_market(seg_a, seg_b, seg_id, c, progress)
    # Without stops or ruin the held target is the position.
    reshaped = shortened or ruined
    position = np.sign(seg_b).astype(np.int8).take(seg_id) if reshaped else held

    x_report = np.where(is_open, n - 1, x_bar)
    exposure = int(np.sum(np.where(is_open, n, x_bar) - e_bar))
    trades = Trades(
        entry_bar=e_bar,
        exit_bar=x_report,
        direction=d,
        entry_price=entry_px,
        exit_price=exit_px,
        quantity=qty,
        pnl=pnl,
        pnl_pct=pnl_pct,
        fees=fees,
        reason=reason,
        is_open=is_open,
    )
    return Simulation(
        equity=equity,
        position=position,
        trades=trades,
        exposure_bars=exposure,
        orders_skipped=0,
        span_cash=seg_a,
        span_quantity=seg_b,
        span_of_bar=seg_id,
    )


def _short_liquidation_levels(
    bars: CandleArrays,
    starts: IntArray,
    active: np.ndarray,
    d: FloatArray,
    entry_px: FloatArray,
    config: BacktestConfig,
) -> FloatArray | None:
    """Each trade's liquidation price (NaN for longs), or None when no bar reaches one.

    Without leverage a long never loses more than its cost, but a short loses without
    bound. Under fraction sizing the price at which closing a short (with its fee) would
    leave nothing is a fixed multiple of its entry price:
    entry * ((1 + fee) / fraction + 1 - fee) / (1 + fee).
    """
    if not config.allow_short or not (d < 0).any():
        return None
    fee, frac = config.fee_rate, config.size_fraction
    level = np.where(d < 0, entry_px * (((1.0 + fee) / frac + 1.0 - fee) / (1.0 + fee)), np.nan)
    # The highest high of each run of equal held position; a short whose run never reaches
    # its level (the usual case) needs no bar-by-bar look.
    run_high = np.maximum.reduceat(bars.high, starts)[active]
    if not (run_high >= level).any():  # NaN compares False
        return None
    return level


def _mark_to_market(
    seg_a: FloatArray,
    seg_b: FloatArray,
    seg_id: np.ndarray,
    close: FloatArray,
    progress: ProgressFn | None,
) -> FloatArray:
    """equity[t] = a + b * close[t] with (a, b) of bar t's span."""
    n = len(close)
    equity = seg_a.take(seg_id)
    # In slices: the b * close temporaries stay in cache, and progress moves every 2%.
    step = max(1, min(65_536, -(-n // 50)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        part = seg_b.take(seg_id[lo:hi])
        part *= close[lo:hi]
        equity[lo:hi] += part
        if progress is not None:
            progress(hi, n)
    return equity


def _resolve_exits(
    *,
    bar_open: FloatArray,
    d: FloatArray,
    stop_hit: np.ndarray,
    target_hit: np.ndarray,
    liq_hit: np.ndarray,
    stop_level: FloatArray,
    target_level: FloatArray,
    liq_level: FloatArray,
    slip: float,
) -> tuple[FloatArray, IntArray]:
    """Fill price and reason of exits on bars where some level was reached.

    A bar that opens beyond a level fills at the open (liquidation first, then the stop,
    then the target). Otherwise the adverse levels come before the target (the pessimistic
    assumption), and of the stop and the liquidation level the nearer one comes first.
    Stops are market orders and slip; take-profits (limit orders) and liquidations do not.
    """
    # Prices as "how far in the trade's favour": for a long favour = price, short -price.
    fav_open = d * bar_open
    s_fav, t_fav, l_fav = d * stop_level, d * target_level, d * liq_level
    gap_liq = liq_hit & (fav_open <= l_fav)
    gap_stop = stop_hit & (fav_open <= s_fav) & ~gap_liq
    gap_target = target_hit & (fav_open >= t_fav) & ~gap_stop & ~gap_liq
    gap = gap_liq | gap_stop | gap_target
    stop_first = stop_hit & (~liq_hit | (s_fav >= l_fav))
    is_liq = gap_liq | (~gap & liq_hit & ~stop_first)
    is_stop = gap_stop | (~gap & ~is_liq & stop_hit)
    level = np.where(is_liq, liq_level, np.where(is_stop, stop_level, target_level))
    price = np.where(gap, bar_open, level)
    price = np.where(is_stop, price * (1.0 - d * slip), price)
    reason = np.where(is_liq, EXIT_LIQUIDATION, np.where(is_stop, EXIT_STOP, EXIT_TARGET))
    return price, reason.astype(np.int64)


def _stop_levels(entry_px: FloatArray, d: FloatArray, config: BacktestConfig) -> tuple[Any, Any]:
    """Stop-loss and take-profit prices from the entry fill price (NaN where not set)."""
    nan = np.full(np.shape(entry_px), np.nan)
    stop = nan if config.stop_loss_pct is None else entry_px * (1 - d * config.stop_loss_pct / 100)
    target = (
        nan if config.take_profit_pct is None else entry_px * (1 + d * config.take_profit_pct / 100)
    )
    return stop, target


def _apply_stops(
    bars: CandleArrays,
    e_bar: IntArray,
    planned_end: IntArray,
    d: FloatArray,
    entry_px: FloatArray,
    config: BacktestConfig,
    liquidation: FloatArray | None,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Shorten each trade at its first stop, target or liquidation hit; returns (exit bar,
    reason, price).

    Levels are set from the entry fill price and checked from the entry bar onward: the
    entry fills at that bar's open, so all of that bar's range trades after it.
    """
    o, h, lo = bars.open, bars.high, bars.low
    k = len(e_bar)
    # Every bar of every trade, tagged with its trade, as one flat array.
    lengths = planned_end - e_bar
    trade_of = np.repeat(np.arange(k), lengths)
    seg_starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    bar = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(seg_starts, lengths)
    bar += np.repeat(e_bar, lengths)
    dd = d[trade_of]
    long = dd > 0
    bh, bl = h[bar], lo[bar]
    # For a long favour = price; for a short favour = -price: one comparison serves both.
    worst = np.where(long, bl, -bh)
    best = np.where(long, bh, -bl)

    stop_level, target_level = _stop_levels(entry_px, d, config)
    liq_level = np.full(k, np.nan) if liquidation is None else liquidation
    # NaN levels compare False: a level that is not set is never hit.
    stop_hit = worst <= (d * stop_level)[trade_of]
    target_hit = best >= (d * target_level)[trade_of]
    liq_hit = worst <= (d * liq_level)[trade_of]

    first = _first_in_segment(stop_hit | target_hit | liq_hit, seg_starts, seg_starts + lengths)
    hit = first < seg_starts + lengths
    x_bar = planned_end.copy()
    reason = np.full(k, EXIT_SIGNAL, dtype=np.int64)
    exit_px = np.full(k, np.nan)
    if not hit.any():
        return x_bar, reason, exit_px
    at = first[hit]
    t = np.flatnonzero(hit)
    price, why = _resolve_exits(
        bar_open=o[bar[at]],
        d=d[t],
        stop_hit=stop_hit[at],
        target_hit=target_hit[at],
        liq_hit=liq_hit[at],
        stop_level=stop_level[t],
        target_level=target_level[t],
        liq_level=liq_level[t],
        slip=config.market_cost,
    )
    x_bar[t] = bar[at]
    reason[t] = why
    exit_px[t] = price
    return x_bar, reason, exit_px


# --- Order by order -------------------------------------------------------------------


class _Account:
    """Cash, the signed quantity held, and the round trip in progress, fill by fill.

    Used by `_simulate_orders`; every number is a Python float, since the per-order work
    is scalar and numpy scalars would only slow it down.
    """

    def __init__(self, config: BacktestConfig, n: int) -> None:
        self.config = config
        self.n = n
        # Read on every fill: attributes of the account are quicker than of the config.
        self.fee_rate, self.fixed_fee, self.min_fee = (
            config.fee_rate,
            config.fixed_fee,
            config.min_fee,
        )
        self.maintenance = config.maintenance_margin_pct / 100.0
        self.borrow = 0.0  # borrow_rate_pct per bar
        self.cash = float(config.initial_capital)
        self.quantity = 0.0
        self.ruined = False
        self.skipped = 0
        self.span_start: list[int] = [0]
        self.span_cash: list[float] = [self.cash]
        self.span_quantity: list[float] = [0.0]
        self.rows: list[tuple[Any, ...]] = []
        # The round trip in progress.
        self.entry_bar = 0
        self.side = 0
        self.cash_before = 0.0
        self.added = self.added_notional = self.reduced = self.reduced_notional = 0.0
        self.fees = 0.0
        self.stop_level = math.nan
        self.target_level = math.nan
        self.atr_level = math.nan
        # The best price since entry, as side * price (higher is better for both sides).
        self.best = math.nan
        self.time_stop_bar = math.inf
        # The ATR at the signal bar of the order about to open a position (NaN: none).
        self.signal_atr = math.nan

    def _span(self, bar: int) -> None:
        # Several fills on one bar (a flip, a stop on the entry bar): the last one holds
        # at the close.
        if self.span_start[-1] == bar:
            self.span_cash[-1], self.span_quantity[-1] = self.cash, self.quantity
        else:
            self.span_start.append(bar)
            self.span_cash.append(self.cash)
            self.span_quantity.append(self.quantity)

    def _open(self, bar: int, side: int, price: float) -> None:
        """Start a round trip: its exit levels are set from the opening fill price."""
        c = self.config
        self.entry_bar, self.side, self.cash_before = bar, side, self.cash
        self.added = self.added_notional = self.reduced = self.reduced_notional = 0.0
        self.fees = 0.0
        sl, tp, k = c.stop_loss_pct, c.take_profit_pct, c.atr_stop_multiple
        self.stop_level = math.nan if sl is None else price * (1 - side * sl / 100)
        self.target_level = math.nan if tp is None else price * (1 + side * tp / 100)
        self.atr_level = math.nan if k is None else price - side * k * self.signal_atr
        self.best = side * price
        self.time_stop_bar = math.inf if c.time_stop_bars is None else bar + c.time_stop_bars

    def fill(self, bar: int, units: float, price: float, *, after: float | None = None) -> None:
        """Buy (units > 0) or sell (units < 0) at `price` on `bar`; `after` is the quantity
        held afterwards when the caller knows it exactly (on the quantity step)."""
        notional = abs(units) * price
        fee = max(self.fee_rate * notional + self.fixed_fee, self.min_fee)
        if self.quantity == 0.0:
            self._open(bar, 1 if units > 0 else -1, price)
        self.cash -= units * price + fee
        self.fees += fee
        if units * self.side > 0:
            self.added += abs(units)
            self.added_notional += notional
        else:
            self.reduced += abs(units)
            self.reduced_notional += notional
        self.quantity = self.quantity + units if after is None else after
        self._span(bar)

    def close(self, bar: int, price: float, reason: int) -> None:
        """Close the whole position; an account left with nothing is ruined."""
        self.fill(bar, -self.quantity, price, after=0.0)
        wiped = reason == EXIT_LIQUIDATION and self.maintenance == 0.0
        if wiped or self.cash <= 0.0:
            # The account cannot lose more than it has: a fill beyond the liquidation
            # level (a gap) costs everything, and no more.
            self.cash = 0.0
            reason = EXIT_LIQUIDATION
            self.ruined = True
            self._span(bar)
        self.rows.append(self._row(bar, reason, is_open=False, last_close=0.0))

    def _row(self, bar: int, reason: int, *, is_open: bool, last_close: float) -> tuple[Any, ...]:
        # pnl is what the round trip did to the account (for an open one, marked to the
        # last close): the same as side * (exit notional - entry notional) - fees, except
        # that a wiped-out account loses what it had and no more.
        pnl = self.cash + self.quantity * last_close - self.cash_before
        if is_open:
            units = abs(self.quantity)
            exit_price = (self.reduced_notional + units * last_close) / (self.reduced + units)
        else:
            exit_price = self.reduced_notional / self.reduced
        return (
            self.entry_bar,
            bar,
            float(self.side),
            self.added_notional / self.added,
            exit_price,
            self.added,
            pnl,
            pnl / self.added_notional * 100.0,
            self.fees,
            reason,
            is_open,
        )

    def mark_open_trade(self, last_close: float) -> None:
        if self.quantity != 0.0:
            self.rows.append(self._row(self.n - 1, EXIT_END, is_open=True, last_close=last_close))

    def liquidation_level(self, cash: Any = None) -> Any:
        """The price at which closing the position (with its fee) would leave the
        maintenance margin, a share m of its notional: cash + q * p - fee = m * |q| * p.
        `cash` (a float or an array) stands in for the account's cash when given."""
        scalar = cash is None
        cash = self.cash if scalar else cash
        units, m = abs(self.quantity), self.maintenance
        if self.quantity > 0:
            by_rate = (self.fixed_fee - cash) / (units * (1.0 - self.fee_rate - m))
            by_minimum = (self.min_fee - cash) / (units * (1.0 - m))
            return max(by_rate, by_minimum) if scalar else np.maximum(by_rate, by_minimum)
        by_rate = (cash - self.fixed_fee) / (units * (1.0 + self.fee_rate + m))
        by_minimum = (cash - self.min_fee) / (units * (1.0 + m))
        return min(by_rate, by_minimum) if scalar else np.minimum(by_rate, by_minimum)

    def charge(self, bars: list[int], cash_after: list[float]) -> None:
        """Record borrow charges: cash_after[i] is the cash after bar bars[i]'s close."""
        for bar, cash in zip(bars, cash_after, strict=True):
            self.cash = cash
            self._span(bar)


def _full_size(config: BacktestConfig, equity: float, price: float) -> float:
    """Units a target of 1 asks for at `price` with `equity` (see BacktestConfig.sizing)."""
    if config.sizing == SIZING_FIXED_QUANTITY:
        return float(config.fixed_quantity)  # type: ignore[arg-type]
    if config.sizing == SIZING_FIXED_NOTIONAL:
        return float(config.fixed_notional) / price  # type: ignore[arg-type]
    if config.sizing == SIZING_RISK:
        # Losing the stop distance on every unit costs risk_pct % of equity.
        distance = price * config.stop_loss_pct / 100.0  # type: ignore[operator]
        return equity * config.risk_pct / 100.0 / distance  # type: ignore[operator]
    return _affordable(config, config.size_fraction * equity, price)


def _affordable(config: BacktestConfig, budget: float, price: float) -> float:
    """Most units whose notional and fee together fit in `budget`."""
    by_rate = (budget - config.fixed_fee) / (price * (1.0 + config.fee_rate))
    by_minimum = (budget - config.min_fee) / price
    return max(0.0, min(by_rate, by_minimum))


def _units_within(budget: float, per_unit: float) -> float:
    if per_unit > 0.0:
        return budget / per_unit
    return math.inf if budget >= 0.0 else 0.0


def _payable_units(config: BacktestConfig, equity: float, price: float, mark: float) -> float:
    """Most units an entry at `price` can add whose own costs the equity (marked at `mark`)
    covers: its fee, and what the fill gives away against the mark (spread, slippage).

    With leverage, notional + fee may reach max_leverage times the equity, but these costs
    come out of the equity itself: a larger entry would leave the account below zero at the
    mark before the market moved at all."""
    lost = abs(price - mark)
    by_rate = _units_within(equity - config.fixed_fee, price * config.fee_rate + lost)
    by_minimum = _units_within(equity - config.min_fee, lost)
    return max(0.0, min(by_rate, by_minimum))


def wilder_atr(bars: CandleArrays, period: int) -> FloatArray:
    """Wilder's average true range at each bar's close (NaN for the first period - 1 bars).

    The true range is max(high - low, |high - previous close|, |low - previous close|)
    (high - low on the first bar); the first ATR is the mean of the first `period` true
    ranges, and each later one is (previous * (period - 1) + true range) / period.
    """
    h, lo, c = bars.high, bars.low, bars.close
    previous = np.r_[np.nan, c[:-1]]
    true_range = np.fmax(h - lo, np.fmax(np.abs(h - previous), np.abs(lo - previous)))
    atr = np.full(len(c), np.nan)
    if len(c) < period:
        return atr
    atr[period - 1] = true_range[:period].mean()
    for t in range(period, len(c)):
        atr[t] = (atr[t - 1] * (period - 1) + true_range[t]) / period
    return atr


def _simulate_orders(
    bars: CandleArrays,
    held: FloatArray,
    config: BacktestConfig,
    progress: ProgressFn | None,
    borrow: float = 0.0,
) -> Simulation:
    """The general case, one change of target at a time (see the module docstring).

    `held[s]` is the target decided at bar s - 1's close. A change of it acts at bar s's
    open (or, for entry_order "close", at bar s - 1's close), and the position it leaves is
    held through the ranges of bars s up to the next change.
    """
    n = len(bars)
    o, c = bars.open, bars.close
    cost = config.market_cost
    step = config.quantity_step
    at_close = config.entry_order == ENTRY_CLOSE
    resting = config.entry_order in (ENTRY_LIMIT, ENTRY_STOP)
    starts, raw_ends, values = _runs(held)
    ends = np.minimum(raw_ends, n)
    # The extremes of each run: only a run whose range reaches a level is searched bar by
    # bar. (With fills at closes the last run may start after the last bar: no range.)
    inside = starts < n
    run_high = np.full(len(starts), np.nan)
    run_low = np.full(len(starts), np.nan)
    run_high[inside] = np.maximum.reduceat(bars.high, starts[inside])
    run_low[inside] = np.minimum.reduceat(bars.low, starts[inside])
    atr = None if config.atr_stop_multiple is None else wilder_atr(bars, config.atr_period)
    account = _Account(config, n)
    account.borrow = borrow
    runs = zip(
        starts.tolist(),
        ends.tolist(),
        raw_ends.tolist(),
        values.tolist(),
        run_high.tolist(),
        run_low.tolist(),
        strict=True,
    )
    for s, e, raw_end, v, high, low in runs:
        side = (v > 0) - (v < 0)
        act = s - 1 if at_close else s
        act_price = float(c[act] if at_close else o[s])
        # The next change of target acts at this bar (n: none within the data).
        next_act = raw_end - 1 if at_close else e
        if account.quantity != 0.0:
            sell_at = act_price * (1.0 - account.side * cost)
            if side != account.side:
                # Flat or the other side: close everything here, as a signal.
                account.close(act, sell_at, EXIT_SIGNAL)
            elif account.time_stop_bar <= act:
                # A resize on the time stop's bar: the time stop closes, the resize is dropped.
                account.close(act, sell_at, EXIT_TIME_STOP)
                side = 0
            if account.ruined:
                break
        check_from, target_on_first = s, True
        if side:
            account.signal_atr = math.nan if atr is None else float(atr[s - 1])
            if resting and account.quantity == 0.0:
                filled = _fill_resting(account, bars, s, e, side, abs(v), step)
                if filled is None:
                    continue
                check_from, target_on_first = filled
            else:
                buy_in = act_price * (1.0 + side * cost)
                sell_at = act_price * (1.0 - side * cost)
                _rebalance(account, act, side, abs(v), act_price, buy_in, sell_at, step)
            if account.ruined:
                break
        if at_close and borrow and account.quantity != 0.0:
            # Held at this close after its fills: the close's borrow charge.
            _charge_at_close(account, bars, act)
            if account.ruined:
                break
        if account.quantity != 0.0:
            _check_levels(
                account, bars, check_from, e, next_act, high, low, target_on_first=target_on_first
            )
            if account.ruined:
                break
    account.mark_open_trade(float(c[-1]))

    span_start = np.asarray(account.span_start, dtype=np.int64)
    span_cash = np.asarray(account.span_cash)
    span_quantity = np.asarray(account.span_quantity)
    span_of_bar = _spans_to_bars(span_start, n)
    equity = _mark_to_market(span_cash, span_quantity, span_of_bar, c, progress)
    lengths = np.diff(np.concatenate((span_start, [n])))
    return Simulation(
        equity=equity,
        position=np.sign(span_quantity).astype(np.int8).take(span_of_bar),
        trades=_trades_of_rows(account.rows),
        exposure_bars=int(lengths[span_quantity != 0.0].sum()),
        orders_skipped=account.skipped,
        span_cash=span_cash,
        span_quantity=span_quantity,
        span_of_bar=span_of_bar,
    )


def _rebalance(
    account: _Account,
    bar: int,
    side: int,
    fraction: float,
    mark: float,
    buy_in: float,
    sell_at: float,
    step: float | None,
) -> None:
    """Bring the position to `fraction` of the full size on `side` at `bar`: equity is
    marked at `mark`, units are added at `buy_in` and taken off at `sell_at`."""
    config = account.config
    equity = account.cash + account.quantity * mark
    desired = fraction * _full_size(config, equity, buy_in)
    if config.sizing != SIZING_FRACTION:
        # No position may cost more than max_leverage times the equity: notional + fee <=
        # max_leverage * equity (a fraction of equity within max_leverage never does).
        desired = min(desired, _affordable(config, config.max_leverage * equity, buy_in))
    held = abs(account.quantity)
    if desired > held:
        desired = min(desired, held + _payable_units(config, equity, buy_in, mark))
    if step is not None:
        desired = math.floor(desired / step + _STEP_TOLERANCE) * step
    if desired == held:
        if held == 0.0:
            account.skipped += 1  # an entry that rounds down to nothing
        return
    if desired <= 0.0:
        # Closing entirely is never skipped: the position must be able to go.
        account.close(bar, sell_at, EXIT_SIGNAL)
        return
    change = desired - held
    price = buy_in if change > 0 else sell_at
    if abs(change) * price < config.min_notional:
        account.skipped += 1
        return
    account.fill(bar, side * change, price, after=side * desired)


def _fill_resting(
    account: _Account,
    bars: CandleArrays,
    start: int,
    end: int,
    side: int,
    fraction: float,
    step: float | None,
) -> tuple[int, bool] | None:
    """Fill a limit or stop entry placed at bar start - 1's close, if some bar of
    [start, end) within its validity reaches it; returns (fill bar, whether the fill bar's
    whole range traded after the fill), or None when the order lapsed or was cancelled."""
    config = account.config
    last = min(end, start + config.entry_valid_bars)
    offset = config.entry_offset_pct / 100.0  # type: ignore[operator]
    reference = float(bars.close[start - 1])
    opens = bars.open[start:last]
    # In favour terms (side * price): a limit rests below the market's favour, a stop above.
    if config.entry_order == ENTRY_LIMIT:
        level = reference * (1.0 - side * offset)
        reached = (bars.low[start:last] <= level) if side > 0 else (bars.high[start:last] >= level)
    else:
        level = reference * (1.0 + side * offset)
        reached = (bars.high[start:last] >= level) if side > 0 else (bars.low[start:last] <= level)
    if not reached.any():
        return None
    i = int(np.argmax(reached))
    bar, bar_open = start + i, float(opens[i])
    if config.entry_order == ENTRY_LIMIT:
        # A bar that opens beyond the limit fills at its (better) open; limits do not slip.
        at_open = side * bar_open <= side * level
        price = bar_open if at_open else level
    else:
        # A stop becomes a market order when touched: at the open if it gapped through.
        at_open = side * bar_open >= side * level
        price = (bar_open if at_open else level) * (1.0 + side * config.market_cost)
    _rebalance(account, bar, side, fraction, price, price, price, step)
    if account.quantity == 0.0:
        return None
    return bar, at_open


def _check_levels(
    account: _Account,
    bars: CandleArrays,
    start: int,
    end: int,
    next_act: int,
    high: float,
    low: float,
    *,
    target_on_first: bool,
) -> None:
    """Close the position at the first exit level reached in bars [start, end), all of
    which it is held through, or at its time stop if that comes before `next_act`; `high`
    and `low` bound the range of those bars. Rules 7, 8 and 14 of the package docstring."""
    config = account.config
    side = account.side
    at_close = config.entry_order == ENTRY_CLOSE
    time_bar = account.time_stop_bar
    # A time stop at an open ends the search before its bar; at a close, after it.
    last = int(min(end, time_bar + 1 if at_close else time_bar))
    liq = account.liquidation_level()
    fixed = [
        (side * account.stop_level, EXIT_STOP),
        (side * account.atr_level, EXIT_ATR_STOP),
    ]
    fixed = [(level, why) for level, why in fixed if not math.isnan(level)]
    fixed_adverse = max((level for level, _ in fixed), default=math.nan)
    trail = config.trailing_stop_pct
    worst = low if side > 0 else -high
    best = high if side > 0 else -low
    # NaN levels compare False.
    borrow = account.borrow
    reachable = (
        trail is not None
        or borrow
        or (worst <= fixed_adverse or worst <= side * liq or best >= side * account.target_level)
    )
    # Bars whose close charges borrow: held through to the close and not filled at it.
    charge_end = int(min(last, time_bar, next_act))
    if reachable and start < last:
        span = slice(start, last)
        worst_bars = bars.low[span] if side > 0 else -bars.high[span]
        best_bars = bars.high[span] if side > 0 else -bars.low[span]
        cash_after = closes_liquidated = None
        if borrow:
            # Each close's charge lowers the cash the next bar's liquidation level sees.
            closes = bars.close[span]
            cash_after = _borrow_path(account, closes)
            liq = account.liquidation_level(np.r_[account.cash, cash_after[:-1]])
            closes_liquidated = side * closes <= side * account.liquidation_level(cash_after)
            closes_liquidated[max(0, charge_end - start) :] = False
        adverse = np.full(last - start, fixed_adverse)
        trail_fav = adverse
        if trail is not None:
            # The best price before each bar: a bar's own extreme may come after its low.
            before = np.maximum.accumulate(np.r_[account.best, best_bars[:-1]])
            trail_fav = before * (1.0 - side * trail / 100.0)
            adverse = np.fmax(adverse, trail_fav)
        stop_hit = worst_bars <= adverse
        liq_hit = worst_bars <= side * liq
        target_hit = best_bars >= side * account.target_level
        if not target_on_first:
            target_hit[0] = False
        any_hit = stop_hit | liq_hit | target_hit
        if closes_liquidated is not None and cash_after is not None:
            # A close that leaves the position beyond its (charged) liquidation level
            # liquidates it at that close, unless the bar's range exited it first.
            at_close_hit = closes_liquidated & ~any_hit
            if at_close_hit.any():
                j = int(np.argmax(at_close_hit))
                if not any_hit[:j].any():
                    account.charge(list(range(start, start + j + 1)), cash_after[: j + 1].tolist())
                    account.close(start + j, float(bars.close[start + j]), EXIT_LIQUIDATION)
                    return
        if any_hit.any():
            i = int(np.argmax(any_hit))
            if cash_after is not None:
                account.charge(list(range(start, start + i)), cash_after[:i].tolist())
            bar_liq = float(liq[i]) if cash_after is not None else liq
            stops = [*fixed]
            if trail is not None:
                stops.append((float(trail_fav[i]), EXIT_TRAILING_STOP))
            price, reason = _exit_on_bar(
                side=side,
                bar_open=float(bars.open[start + i]),
                stops=stops,
                stop_hit=bool(stop_hit[i]),
                liq=bar_liq,
                liq_hit=bool(liq_hit[i]),
                target=account.target_level,
                target_hit=bool(target_hit[i]),
                cost=config.market_cost,
            )
            account.close(start + i, price, reason)
            return
        if trail is not None:
            account.best = max(account.best, float(best_bars.max()))
        if cash_after is not None and charge_end > start:
            account.charge(
                list(range(start, charge_end)), cash_after[: charge_end - start].tolist()
            )
    if time_bar < next_act:
        bar = int(time_bar)
        price = float(bars.close[bar] if at_close else bars.open[bar])
        account.close(bar, price * (1.0 - side * config.market_cost), EXIT_TIME_STOP)


def _borrow_path(account: _Account, closes: FloatArray) -> FloatArray:
    """The cash after each of these closes' borrow charges: a short pays the rate on its
    notional at the close, a long on the cash it borrowed (negative cash), compounding."""
    k = account.borrow
    if account.quantity < 0:
        return account.cash - np.cumsum(k * -account.quantity * closes)
    if account.cash < 0:
        return account.cash * np.cumprod(np.full(len(closes), 1.0 + k))
    return np.full(len(closes), account.cash)


def _charge_at_close(account: _Account, bars: CandleArrays, bar: int) -> None:
    """Charge bar `bar`'s close; liquidate there if that leaves the position beyond its
    liquidation level."""
    close = float(bars.close[bar])
    cash_after = float(_borrow_path(account, bars.close[bar : bar + 1])[0])
    account.charge([bar], [cash_after])
    if account.side * close <= account.side * account.liquidation_level():
        account.close(bar, close, EXIT_LIQUIDATION)


def _exit_on_bar(
    *,
    side: int,
    bar_open: float,
    stops: list[tuple[float, int]],
    stop_hit: bool,
    liq: float,
    liq_hit: bool,
    target: float,
    target_hit: bool,
    cost: float,
) -> tuple[float, int]:
    """Fill price and reason of an exit on a bar where some level was reached; `stops`
    holds (side * level, reason) of each stop that is set.

    The rules of `_resolve_exits`: a bar that opens beyond a level fills at the open
    (liquidation first, then the stops, then the target); otherwise the adverse levels come
    before the target, and the nearest adverse level (the first the price reaches) wins,
    a stop before the liquidation level on a tie, and of the stops the fixed one, then the
    ATR stop, then the trailing stop. Stops slip and pay half the spread; take-profits and
    liquidations do not.
    """
    fav_open = side * bar_open
    live = [(level, why) for level, why in stops if not math.isnan(level)]
    nearest, why = max(live, key=lambda lv: lv[0]) if live else (math.nan, EXIT_STOP)
    if liq_hit and fav_open <= side * liq:
        return bar_open, EXIT_LIQUIDATION
    if stop_hit and fav_open <= nearest:
        return bar_open * (1.0 - side * cost), why
    if target_hit and fav_open >= side * target:
        return bar_open, EXIT_TARGET
    if stop_hit and (not liq_hit or nearest >= side * liq):
        return side * nearest * (1.0 - side * cost), why
    if liq_hit:
        return liq, EXIT_LIQUIDATION
    return target, EXIT_TARGET


def _trades_of_rows(rows: list[tuple[Any, ...]]) -> Trades:
    if not rows:
        empty = np.empty(0)
        none = np.empty(0, dtype=np.int64)
        return Trades(
            none, none, empty, empty, empty, empty, empty, empty, empty, none, empty.astype(bool)
        )
    columns = list(zip(*rows, strict=True))
    return Trades(
        entry_bar=np.asarray(columns[0], dtype=np.int64),
        exit_bar=np.asarray(columns[1], dtype=np.int64),
        direction=np.asarray(columns[2]),
        entry_price=np.asarray(columns[3]),
        exit_price=np.asarray(columns[4]),
        quantity=np.asarray(columns[5]),
        pnl=np.asarray(columns[6]),
        pnl_pct=np.asarray(columns[7]),
        fees=np.asarray(columns[8]),
        reason=np.asarray(columns[9], dtype=np.int64),
        is_open=np.asarray(columns[10], dtype=bool),
    )
