"""Turning target positions into fills, trades and an equity curve, without a per-bar loop.

The fill rules are those stated in `backtests.engine`'s docstring. The simulation is
vectorised over bars: a trade is a run of equal non-zero held positions, stops only shorten
a run, and because each entry commits a fixed fraction of equity the cash after every
trade is a running product of per-trade growth factors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtests.engine.candles import CandleArrays
from backtests.engine.config import BacktestConfig

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

EXIT_SIGNAL, EXIT_STOP, EXIT_TARGET, EXIT_END = 0, 1, 2, 3
EXIT_REASONS = np.array(["signal", "stop", "target", "end"], dtype=object)

TRADE_COLUMNS = [
    "entry_time",  # open time of the bar whose open filled the entry (UTC)
    "exit_time",  # open time of the exit bar; for an open trade, of the last bar
    "direction",  # "long" or "short"
    "entry_price",  # fill price including slippage
    "exit_price",  # fill price including slippage; the last close for an open trade
    "quantity",  # units of the instrument, always positive
    "pnl",  # net of entry and exit fees, in quote currency
    "pnl_pct",  # pnl / entry notional * 100
    "fees",  # entry fee + exit fee (no exit fee while open)
    "duration",  # exit_time - entry_time, in seconds
    "exit_reason",  # "signal", "stop", "target" or "end" (still open)
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
    position: np.ndarray  # int8, held at each bar's close
    trades: Trades
    exposure_bars: int


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


def simulate(
    bars: CandleArrays,
    target: FloatArray,
    config: BacktestConfig,
    progress: ProgressFn | None = None,
) -> Simulation:
    """Fill a target-position series under `config` (see the package docstring for rules).

    One function on purpose (about 120 lines): it is a single pass of array algebra whose
    intermediates (entry and exit bars, prices, quantities, cash per trade) feed every later
    step; split up, each step would take and return most of them.
    """
    n = len(bars)
    o, c = bars.open, bars.close
    fee = config.fee_rate
    slip = config.slippage
    frac = config.size_fraction

    # Positions are small integers: int8 arrays keep the per-bar work in cache.
    target = np.asarray(target, dtype=np.float64)
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

    sl = config.stop_loss_pct
    tp = config.take_profit_pct
    if k and (sl is not None or tp is not None):
        x_bar, reason, exit_px = _apply_stops(bars, e_bar, planned_end, d, entry_px, config)
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
    cash_before = config.initial_capital * np.concatenate(([1.0], np.cumprod(growth)[:-1]))
    ruined = np.flatnonzero(cash_before <= 0.0)
    if len(ruined):
        # Once the account is wiped out no further position can be opened.
        keep = int(ruined[0])
        e_bar, x_bar, d, entry_px, exit_px = (
            e_bar[:keep],
            x_bar[:keep],
            d[:keep],
            entry_px[:keep],
            exit_px[:keep],
        )
        reason, is_open, growth = reason[:keep], is_open[:keep], growth[:keep]
        exit_fee_rate, cash_before = exit_fee_rate[:keep], cash_before[:keep]
        k = keep
    qty = frac * cash_before / (entry_px * (1.0 + fee))
    fees = qty * (fee * entry_px + exit_fee_rate * exit_px)
    pnl = qty * d * (exit_px - entry_px) - fees
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
    seg_a = np.concatenate(([config.initial_capital], ev_a))
    seg_b = np.concatenate(([0.0], ev_b))
    # Segment id of each bar: a running count of the span starts at or before it.
    seg_id = np.zeros(n, dtype=np.int32)
    seg_id[ev_bar] = 1
    np.cumsum(seg_id, out=seg_id)
    equity = _mark_to_market(seg_a, seg_b, seg_id, c, progress)
    if sl is None and tp is None and not len(ruined):
        position = held  # without stops or ruin the held target is the position
    else:
        position = np.sign(seg_b).astype(np.int8).take(seg_id)

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
    return Simulation(equity=equity, position=position, trades=trades, exposure_bars=exposure)


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


def _apply_stops(
    bars: CandleArrays,
    e_bar: IntArray,
    planned_end: IntArray,
    d: FloatArray,
    entry_px: FloatArray,
    config: BacktestConfig,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Shorten each trade at its first stop or target hit; returns (exit bar, reason, price).

    Levels are set from the entry fill price and checked from the entry bar onward: the
    entry fills at that bar's open, so all of that bar's range trades after it.
    """
    o, h, lo = bars.open, bars.high, bars.low
    slip = config.slippage
    k = len(e_bar)
    # Every bar of every trade, tagged with its trade, as one flat array.
    lengths = planned_end - e_bar
    trade_of = np.repeat(np.arange(k), lengths)
    seg_starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    bar = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(seg_starts, lengths)
    bar += np.repeat(e_bar, lengths)
    dd = d[trade_of]
    long = dd > 0
    bo, bh, bl = o[bar], h[bar], lo[bar]
    # Express every price as "how far in the trade's favour", so one comparison serves both
    # sides: for a long, favour = price; for a short, favour = -price.
    worst = np.where(long, bl, -bh)
    best = np.where(long, bh, -bl)
    fo = dd * bo

    stop_hit = np.zeros(len(bar), dtype=bool)
    target_hit = np.zeros(len(bar), dtype=bool)
    stop_level = np.full(k, np.nan)
    target_level = np.full(k, np.nan)
    if config.stop_loss_pct is not None:
        stop_level = entry_px * (1.0 - d * config.stop_loss_pct / 100.0)
        stop_hit = worst <= d[trade_of] * stop_level[trade_of]
    if config.take_profit_pct is not None:
        target_level = entry_px * (1.0 + d * config.take_profit_pct / 100.0)
        target_hit = best >= d[trade_of] * target_level[trade_of]

    first = _first_in_segment(stop_hit | target_hit, seg_starts, seg_starts + lengths)
    hit = first < seg_starts + lengths
    x_bar = planned_end.copy()
    reason = np.full(k, EXIT_SIGNAL, dtype=np.int64)
    exit_px = np.full(k, np.nan)
    if not hit.any():
        return x_bar, reason, exit_px
    at = first[hit]
    t = np.flatnonzero(hit)
    fav_open = fo[at]
    s_fav = d[t] * stop_level[t]
    tgt_fav = d[t] * target_level[t]
    gap_stop = stop_hit[at] & (fav_open <= s_fav)
    gap_target = target_hit[at] & (fav_open >= tgt_fav) & ~gap_stop
    # Both levels inside one bar's range (and no gap): assume the stop came first.
    is_stop = gap_stop | (stop_hit[at] & ~gap_target)
    price = np.where(
        gap_stop | gap_target,
        bo[at],
        np.where(is_stop, stop_level[t], target_level[t]),
    )
    # A triggered stop is a market order and slips; a take-profit is a resting limit.
    price = np.where(is_stop, price * (1.0 - d[t] * slip), price)
    x_bar[t] = bar[at]
    reason[t] = np.where(is_stop, EXIT_STOP, EXIT_TARGET)
    exit_px[t] = price
    return x_bar, reason, exit_px
