"""A bar-by-bar backtest written for clarity, to cross-check the engine's two paths.

It follows the rules in backtests.engine's docstring one bar at a time, with plain floats
and no arrays, so a rule the engine breaks shows up as a different equity curve or trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backtests.engine import BacktestConfig


@dataclass
class Reference:
    equity: list[float] = field(default_factory=list)
    cash: list[float] = field(default_factory=list)
    quantity: list[float] = field(default_factory=list)
    # (reason, exit fill price) of every fill that closed a position, in order.
    exits: list[tuple[str, float]] = field(default_factory=list)
    skipped: int = 0


def wilder_atr(h: np.ndarray, lo: np.ndarray, c: np.ndarray, period: int) -> list[float]:
    atr = [math.nan] * len(c)
    ranges = []
    for t in range(len(c)):
        tr = h[t] - lo[t]
        if t:
            tr = max(tr, abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1]))
        ranges.append(tr)
        if t == period - 1:
            atr[t] = sum(ranges) / period
        elif t >= period:
            atr[t] = (atr[t - 1] * (period - 1) + tr) / period
    return atr


@dataclass
class _Resting:
    """A limit or stop entry waiting for its level."""

    side: int
    fraction: float
    level: float
    last_bar: int
    signal_bar: int


def reference_run(candles: pd.DataFrame, target: np.ndarray, config: BacktestConfig) -> Reference:
    o, h, lo, c = (candles[k].to_numpy() for k in ("open", "high", "low", "close"))
    n = len(c)
    cost = (config.slippage_bps + config.spread_bps / 2) / 1e4
    sl, tp = config.stop_loss_pct, config.take_profit_pct
    at_close = config.entry_order == "close"
    resting_kind = config.entry_order if config.entry_order in ("limit", "stop") else None
    atr = wilder_atr(h, lo, c, config.atr_period) if config.atr_stop_multiple else None
    wanted = np.nan_to_num(np.asarray(target, dtype=float))
    if not config.allow_short:
        wanted = np.maximum(wanted, 0.0)
    # The target in force at bar t's order: decided at t - 1's close (or at t's own).
    order_target = wanted if at_close else np.r_[0.0, wanted[:-1]]
    previous_target = np.r_[0.0, order_target[:-1]]

    def fee(notional: float) -> float:
        return max(config.fee_rate * notional + config.fixed_fee, config.min_fee)

    def affordable(budget: float, price: float) -> float:
        by_rate = (budget - config.fixed_fee) / (price * (1 + config.fee_rate))
        return max(0.0, min(by_rate, (budget - config.min_fee) / price))

    # borrow_rate_pct per bar: the property tests run daily bars on the 24/7 calendar.
    borrow = 0.0
    if config.borrow_rate_pct:
        assert config.timeframe == "1d" and config.calendar == "24/7"
        borrow = config.borrow_rate_pct / 100 / 365
    out = Reference()
    cash, qty = config.initial_capital, 0.0
    stop = target_px = atr_stop = math.nan
    best = math.nan  # side * best price since entry, before the bar being checked
    time_bar = math.inf
    ruined = False
    pending: _Resting | None = None

    def close(price: float, why: str) -> None:
        nonlocal cash, qty, ruined
        cash += qty * price - fee(abs(qty) * price)
        qty = 0.0
        if (why == "liquidation" and not config.maintenance_margin_pct) or cash <= 0:
            cash, why, ruined = 0.0, "liquidation", True
        out.exits.append((why, price))

    def rebalance(
        t: int, side: int, fraction: float, mark: float, buy_in: float, sell_at: float, signal: int
    ) -> None:
        nonlocal cash, qty, stop, target_px, atr_stop, best, time_bar
        equity = cash + qty * mark
        if config.sizing == "fixed_quantity":
            full = config.fixed_quantity
        elif config.sizing == "fixed_notional":
            full = config.fixed_notional / buy_in
        elif config.sizing == "risk":
            full = equity * config.risk_pct / 100 / (buy_in * sl / 100)
        else:
            full = affordable(config.size_fraction * equity, buy_in)
        want_units = fraction * full
        if config.sizing != "fraction":
            want_units = min(want_units, affordable(config.max_leverage * equity, buy_in))
        if want_units > abs(qty):
            # The entry's own fee and what its fill gives away against the mark are paid
            # out of the equity: never more than it.
            lost = abs(buy_in - mark)

            def within(budget: float, per_unit: float) -> float:
                if per_unit > 0:
                    return budget / per_unit
                return math.inf if budget >= 0 else 0.0

            fee_cap = min(
                within(equity - config.fixed_fee, buy_in * config.fee_rate + lost),
                within(equity - config.min_fee, lost),
            )
            want_units = min(want_units, abs(qty) + max(0.0, fee_cap))
        if config.quantity_step:
            want_units = math.floor(want_units / config.quantity_step + 1e-9)
            want_units *= config.quantity_step
        change = want_units - abs(qty)
        if want_units == abs(qty):
            out.skipped += qty == 0
        elif want_units <= 0:
            close(sell_at, "signal")
        else:
            price = buy_in if change > 0 else sell_at
            if abs(change) * price < config.min_notional:
                out.skipped += 1
                return
            if qty == 0:
                stop = price * (1 - side * sl / 100) if sl else math.nan
                target_px = price * (1 + side * tp / 100) if tp else math.nan
                k = config.atr_stop_multiple
                atr_stop = price - side * k * atr[signal] if k and atr else math.nan
                best = side * price
                time_bar = t + config.time_stop_bars if config.time_stop_bars else math.inf
            cash -= side * change * price + fee(abs(change) * price)
            qty = side * want_units

    def act(t: int, price: float) -> None:
        """The order of a change of target (or a time stop) at bar t's open or close."""
        nonlocal pending
        changed = order_target[t] != previous_target[t]
        side = int(np.sign(order_target[t]))
        if changed:
            pending = None
        d = int(np.sign(qty))
        if qty and changed and side != d:
            close(price * (1 - d * cost), "signal")
        elif qty and time_bar <= t:
            close(price * (1 - d * cost), "time_stop")
            return  # a resize on the time stop's bar is dropped
        if not changed or not side or ruined:
            return
        signal = t if at_close else t - 1
        if resting_kind and qty == 0:
            x = config.entry_offset_pct / 100
            sign = -1 if resting_kind == "limit" else 1
            level = c[t - 1] * (1 + sign * side * x)
            pending = _Resting(
                side, abs(order_target[t]), level, t - 1 + config.entry_valid_bars, signal
            )
            return
        rebalance(
            t,
            side,
            abs(order_target[t]),
            price,
            price * (1 + side * cost),
            price * (1 - side * cost),
            signal,
        )

    def liquidation_level() -> float:
        d = int(np.sign(qty))
        units = abs(qty)
        # The price at which closing (with its fee) would leave m of the notional.
        m = config.maintenance_margin_pct / 100
        if d > 0:
            liq = max(
                (config.fixed_fee - cash) / (units * (1 - config.fee_rate - m)),
                (config.min_fee - cash) / (units * (1 - m)),
            )
        else:
            liq = min(
                (cash - config.fixed_fee) / (units * (1 + config.fee_rate + m)),
                (cash - config.min_fee) / (units * (1 + m)),
            )
        return liq

    def charge_borrow(t: int) -> None:
        """The borrow charge at bar t's close, and a liquidation there if it leaves the
        position beyond its level."""
        nonlocal cash
        if qty < 0:
            cash -= borrow * -qty * c[t]
        elif cash < 0:
            cash *= 1 + borrow
        d = int(np.sign(qty))
        if d * c[t] <= d * liquidation_level():
            close(c[t], "liquidation")

    def check_levels(t: int, target_allowed: bool) -> None:
        nonlocal best
        d = int(np.sign(qty))
        liq = liquidation_level()
        stops = [(stop, "stop"), (atr_stop, "atr_stop")]
        if config.trailing_stop_pct:
            trail = d * best * (1 - d * config.trailing_stop_pct / 100)
            stops.append((trail, "trailing_stop"))
        stops = [(level, why) for level, why in stops if not math.isnan(level)]
        # The nearest stop: the highest for a long, the lowest for a short; ties in order.
        nearest, stop_why = math.nan, ""
        for level, why in stops:
            if math.isnan(nearest) or d * level > d * nearest:
                nearest, stop_why = level, why
        worst, favourable = (lo[t], h[t]) if d > 0 else (h[t], lo[t])
        stop_hit = not math.isnan(nearest) and d * worst <= d * nearest
        liq_hit = d * worst <= d * liq
        target_hit = (
            target_allowed and not math.isnan(target_px) and d * favourable >= d * target_px
        )
        if liq_hit and d * o[t] <= d * liq:
            close(o[t], "liquidation")
        elif stop_hit and d * o[t] <= d * nearest:
            close(o[t] * (1 - d * cost), stop_why)
        elif target_hit and d * o[t] >= d * target_px:
            close(o[t], "target")
        elif stop_hit and (not liq_hit or d * nearest >= d * liq):
            close(nearest * (1 - d * cost), stop_why)
        elif liq_hit:
            close(liq, "liquidation")
        elif target_hit:
            close(target_px, "target")
        else:
            best = max(best, d * favourable)

    for t in range(n):
        if not at_close and t > 0 and not ruined:
            act(t, o[t])
        target_allowed = True
        if pending is not None and qty == 0 and not ruined:
            p = pending
            if t > p.last_bar:
                pending = None
            else:
                if resting_kind == "limit":
                    reached = lo[t] <= p.level if p.side > 0 else h[t] >= p.level
                    gapped = p.side * o[t] <= p.side * p.level
                    price = o[t] if gapped else p.level
                else:
                    reached = h[t] >= p.level if p.side > 0 else lo[t] <= p.level
                    gapped = p.side * o[t] >= p.side * p.level
                    price = (o[t] if gapped else p.level) * (1 + p.side * cost)
                if reached:
                    pending = None
                    rebalance(t, p.side, p.fraction, price, price, price, p.signal_bar)
                    target_allowed = gapped
        if qty and not ruined:
            # With fills at closes a position opened at this close is checked from the next
            # bar: act() comes after this check.
            check_levels(t, target_allowed)
        if at_close and not ruined:
            act(t, c[t])
        if borrow and qty and not ruined:
            charge_borrow(t)
        out.cash.append(cash)
        out.quantity.append(qty)
        out.equity.append(cash + qty * c[t])
    return out
