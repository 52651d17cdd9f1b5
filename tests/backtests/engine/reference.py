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


def reference_run(candles: pd.DataFrame, target: np.ndarray, config: BacktestConfig) -> Reference:
    o, h, lo, c = (candles[k].to_numpy() for k in ("open", "high", "low", "close"))
    slip = config.slippage_bps / 1e4
    sl, tp = config.stop_loss_pct, config.take_profit_pct
    wanted = np.nan_to_num(np.asarray(target, dtype=float))
    if not config.allow_short:
        wanted = np.maximum(wanted, 0.0)
    held = np.r_[0.0, wanted[:-1]]

    def fee(notional: float) -> float:
        return max(config.fee_rate * notional + config.fixed_fee, config.min_fee)

    def affordable(budget: float, price: float) -> float:
        by_rate = (budget - config.fixed_fee) / (price * (1 + config.fee_rate))
        return max(0.0, min(by_rate, (budget - config.min_fee) / price))

    out = Reference()
    cash, qty = config.initial_capital, 0.0
    stop = target_px = math.nan
    ruined = False

    def close(price: float, why: str) -> None:
        nonlocal cash, qty, ruined
        cash += qty * price - fee(abs(qty) * price)
        qty = 0.0
        if why == "liquidation" or cash <= 0:
            cash, why, ruined = 0.0, "liquidation", True
        out.exits.append((why, price))

    for t in range(len(c)):
        changed = t > 0 and held[t] != held[t - 1]
        side = int(np.sign(held[t]))
        if changed and not ruined:
            d = int(np.sign(qty))
            if qty and side != d:
                close(o[t] * (1 - d * slip), "signal")
            if side and not ruined:
                equity = cash + qty * o[t]
                buy_in = o[t] * (1 + side * slip)
                if config.sizing == "fixed_quantity":
                    full = config.fixed_quantity
                elif config.sizing == "fixed_notional":
                    full = config.fixed_notional / buy_in
                elif config.sizing == "risk":
                    full = equity * config.risk_pct / 100 / (buy_in * sl / 100)
                else:
                    full = affordable(config.size_fraction * equity, buy_in)
                want_units = min(abs(held[t]) * full, affordable(equity, buy_in))
                if config.quantity_step:
                    want_units = math.floor(want_units / config.quantity_step + 1e-9)
                    want_units *= config.quantity_step
                change = want_units - abs(qty)
                if want_units == abs(qty):
                    out.skipped += qty == 0
                elif want_units <= 0:
                    close(o[t] * (1 - side * slip), "signal")
                else:
                    price = buy_in if change > 0 else o[t] * (1 - side * slip)
                    if abs(change) * price < config.min_notional:
                        out.skipped += 1
                    else:
                        if qty == 0:
                            stop = price * (1 - side * sl / 100) if sl else math.nan
                            target_px = price * (1 + side * tp / 100) if tp else math.nan
                        cash -= side * change * price + fee(abs(change) * price)
                        qty = side * want_units
        if qty and not ruined:
            d = int(np.sign(qty))
            # The price at which closing (with its fee) would leave nothing.
            units = abs(qty)
            if d > 0:
                liq = max(
                    (config.fixed_fee - cash) / (units * (1 - config.fee_rate)),
                    (config.min_fee - cash) / units,
                )
            else:
                liq = min(
                    (cash - config.fixed_fee) / (units * (1 + config.fee_rate)),
                    (cash - config.min_fee) / units,
                )
            worst, best = (lo[t], h[t]) if d > 0 else (h[t], lo[t])
            stop_hit = not math.isnan(stop) and d * worst <= d * stop
            liq_hit = d * worst <= d * liq
            target_hit = not math.isnan(target_px) and d * best >= d * target_px
            if liq_hit and d * o[t] <= d * liq:
                close(o[t], "liquidation")
            elif stop_hit and d * o[t] <= d * stop:
                close(o[t] * (1 - d * slip), "stop")
            elif target_hit and d * o[t] >= d * target_px:
                close(o[t], "target")
            elif stop_hit and (not liq_hit or d * stop >= d * liq):
                close(stop * (1 - d * slip), "stop")
            elif liq_hit:
                close(liq, "liquidation")
            elif target_hit:
                close(target_px, "target")
        out.cash.append(cash)
        out.quantity.append(qty)
        out.equity.append(cash + qty * c[t])
    return out
