"""The engine's input and output dataclasses: BacktestConfig and BacktestResult."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.errors import InvalidConfigError
from marketdata.timeframes import (
    CALENDAR_24_7,
    CALENDARS,
    TIMEFRAME_SECONDS,
    TRADING_DAYS_PER_YEAR,
)

SIZING_FRACTION = "fraction"
SIZING_FIXED_QUANTITY = "fixed_quantity"
SIZING_FIXED_NOTIONAL = "fixed_notional"
SIZING_RISK = "risk"
SIZINGS = (SIZING_FRACTION, SIZING_FIXED_QUANTITY, SIZING_FIXED_NOTIONAL, SIZING_RISK)

# The field each sizing mode reads its size from (fraction's has a default of 1).
ENTRY_MARKET = "market"
ENTRY_CLOSE = "close"
ENTRY_LIMIT = "limit"
ENTRY_STOP = "stop"
ENTRY_ORDERS = (ENTRY_MARKET, ENTRY_CLOSE, ENTRY_LIMIT, ENTRY_STOP)

SIZE_FIELD = {
    SIZING_FRACTION: "size_fraction",
    SIZING_FIXED_QUANTITY: "fixed_quantity",
    SIZING_FIXED_NOTIONAL: "fixed_notional",
    SIZING_RISK: "risk_pct",
}


def _finite_number(value: Any) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)


@dataclass(frozen=True)
class BacktestConfig:
    """How a backtest trades, and how its results annualise.

    Costs:
    - initial_capital: starting cash, in quote currency.
    - fee_rate: fraction of each fill's notional paid as a fee (0.001 = 0.1%).
    - fixed_fee / min_fee: a fee per fill in quote currency, and the least any fill pays:
      a fill pays max(fee_rate * notional + fixed_fee, min_fee).
    - slippage_bps: market fills move against you by this many basis points.
    - spread_bps: the bid-ask spread; market fills and triggered stops also pay half of it.

    Sizing (the "full size" a target of +1 or -1 asks for; a target of 0.5 asks for half):
    - sizing: "fraction" (size_fraction of equity, fees included), "fixed_quantity"
      (fixed_quantity units), "fixed_notional" (fixed_notional of quote currency) or "risk"
      (lose risk_pct % of equity if the stop at stop_loss_pct is hit; needs a stop).
    - max_leverage: a position's notional plus fee may be up to this many times the equity
      (1: no leverage); with sizing "fraction", size_fraction may go up to it.
    - maintenance_margin_pct: a position is liquidated when the equity left after closing
      it would fall to this % of its notional (0: when it would fall to nothing).
    - borrow_rate_pct: annual % charged at each close on a short's notional and on the cash
      a leveraged long borrowed, per bar of the calendar's year.
    - quantity_step: quantities are rounded down to a multiple of it (None: no rounding).
    - min_notional: an order whose notional is below it is skipped (and counted).
    - allow_short: when False, a negative target means flat.
    - stop_loss_pct / take_profit_pct: percent distance from the entry fill price, or None.

    Entries and exits (rules 1, 7 and 14 to 16 of the package docstring):
    - entry_order: "market" (the next open), "close" (the signal bar's close), "limit" or
      "stop" (entry_offset_pct % from the signal bar's close, valid for entry_valid_bars).
    - trailing_stop_pct: percent distance from the best price since entry, or None.
    - atr_stop_multiple / atr_period: a stop that many Wilder ATRs from the entry fill.
    - time_stop_bars: close the position after that many bars held, or None.

    Bars and calendars:
    - timeframe: the bar length; it must match the candles' spacing. None infers it.
    - calendar: "24/7" (365-day years) or "exchange" (trading_days_per_year sessions of
      bars_per_day bars each; bars_per_day None infers it from the candles).
    """

    initial_capital: float = 10_000.0
    fee_rate: float = 0.001
    slippage_bps: float = 0.0
    size_fraction: float = 1.0
    allow_short: bool = False
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    timeframe: str | None = None
    sizing: str = SIZING_FRACTION
    fixed_quantity: float | None = None
    fixed_notional: float | None = None
    risk_pct: float | None = None
    quantity_step: float | None = None
    min_notional: float = 0.0
    fixed_fee: float = 0.0
    min_fee: float = 0.0
    calendar: str = CALENDAR_24_7
    trading_days_per_year: float = float(TRADING_DAYS_PER_YEAR)
    bars_per_day: float | None = None
    spread_bps: float = 0.0
    entry_order: str = ENTRY_MARKET
    entry_offset_pct: float | None = None
    entry_valid_bars: int = 1
    trailing_stop_pct: float | None = None
    atr_stop_multiple: float | None = None
    atr_period: int = 14
    time_stop_bars: int | None = None
    max_leverage: float = 1.0
    maintenance_margin_pct: float = 0.0
    borrow_rate_pct: float = 0.0

    def validate(self) -> None:
        """Raise InvalidConfigError naming every field that is out of range."""
        problems: dict[str, list[str]] = {}

        def problem(name: str, message: str) -> None:
            problems.setdefault(name, []).append(message)

        def finite(name: str, optional: bool = False) -> bool:
            """True when the field holds a finite number (or None, if optional)."""
            value = getattr(self, name)
            if value is None and optional:
                return False
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value):
                problem(name, f"Must be a finite number, got {value!r}.")
                return False
            return True

        if finite("initial_capital") and self.initial_capital <= 0:
            problem("initial_capital", "Must be greater than zero.")
        if finite("fee_rate") and not 0 <= self.fee_rate < 1:
            problem("fee_rate", "Must be at least 0 and below 1.")
        for name in ("fixed_fee", "min_fee", "min_notional"):
            if finite(name) and getattr(self, name) < 0:
                problem(name, "Must be zero or more.")
        if finite("slippage_bps") and not 0 <= self.slippage_bps < 10_000:
            problem("slippage_bps", "Must be at least 0 and below 10000.")
        leverage = 1.0
        if finite("max_leverage"):
            if self.max_leverage < 1:
                problem("max_leverage", "Must be at least 1 (1 means no leverage).")
            else:
                leverage = self.max_leverage
        if finite("size_fraction") and not 0 < self.size_fraction <= leverage:
            if leverage == 1:
                problem("size_fraction", "Must be above 0 and at most 1 (max_leverage is 1).")
            else:
                problem(
                    "size_fraction", f"Must be above 0 and at most max_leverage ({leverage:g})."
                )
        if finite("maintenance_margin_pct"):
            if not 0 <= self.maintenance_margin_pct < 100:
                problem("maintenance_margin_pct", "Must be at least 0 and below 100.")
            elif _finite_number(self.fee_rate) and (
                self.fee_rate + self.maintenance_margin_pct / 100 >= 1
            ):
                # A long's liquidation price divides by 1 - fee_rate - margin.
                problem("maintenance_margin_pct", "With fee_rate, must stay below 100%.")
        if finite("borrow_rate_pct") and not 0 <= self.borrow_rate_pct <= 1_000:
            problem("borrow_rate_pct", "Must be at least 0 and at most 1000 (% a year).")
        for name in ("fixed_quantity", "fixed_notional", "quantity_step", "bars_per_day"):
            if finite(name, optional=True) and getattr(self, name) <= 0:
                problem(name, "Must be greater than zero.")
        if finite("risk_pct", optional=True) and not 0 < self.risk_pct <= 100:  # type: ignore[operator]
            problem("risk_pct", "Must be above 0 and at most 100.")
        if finite("stop_loss_pct", optional=True) and not 0 < self.stop_loss_pct < 100:  # type: ignore[operator]
            # A long stopped 100% below entry would fill at a price of zero or less.
            problem("stop_loss_pct", "Must be above 0 and below 100.")
        if finite("take_profit_pct", optional=True) and self.take_profit_pct <= 0:  # type: ignore[operator]
            problem("take_profit_pct", "Must be greater than zero.")
        if finite("trading_days_per_year") and not 0 < self.trading_days_per_year <= 366:
            problem("trading_days_per_year", "Must be above 0 and at most 366.")
        if finite("spread_bps") and not 0 <= self.spread_bps < 10_000:
            problem("spread_bps", "Must be at least 0 and below 10000.")
        if finite("trailing_stop_pct", optional=True) and not 0 < self.trailing_stop_pct < 100:  # type: ignore[operator]
            problem("trailing_stop_pct", "Must be above 0 and below 100.")
        if finite("atr_stop_multiple", optional=True) and self.atr_stop_multiple <= 0:  # type: ignore[operator]
            problem("atr_stop_multiple", "Must be greater than zero.")
        for name in ("atr_period", "entry_valid_bars", "time_stop_bars"):
            value = getattr(self, name)
            if value is None and name == "time_stop_bars":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problem(name, f"Must be a whole number of bars, at least 1, got {value!r}.")
        self._validate_entry(problem)
        self._validate_sizing(problem)
        if self.timeframe is not None and self.timeframe not in TIMEFRAME_SECONDS:
            known = ", ".join(TIMEFRAME_SECONDS)
            problem("timeframe", f"Unknown timeframe {self.timeframe!r}; known: {known}.")
        if self.calendar not in CALENDARS:
            problem(
                "calendar", f"Unknown calendar {self.calendar!r}; known: {', '.join(CALENDARS)}."
            )
        if not isinstance(self.allow_short, bool):
            problem("allow_short", "Must be true or false.")
        if problems:
            raise InvalidConfigError(problems)

    def _validate_entry(self, problem: Callable[[str, str], None]) -> None:
        if self.entry_order not in ENTRY_ORDERS:
            known = ", ".join(ENTRY_ORDERS)
            problem("entry_order", f"Unknown entry order {self.entry_order!r}; known: {known}.")
            return
        resting = self.entry_order in (ENTRY_LIMIT, ENTRY_STOP)
        if self.entry_offset_pct is None:
            if resting:
                problem("entry_offset_pct", f"Required when entry_order is {self.entry_order!r}.")
        elif not resting:
            problem(
                "entry_offset_pct",
                "Applies only when entry_order is 'limit' or 'stop' "
                f"(entry_order is {self.entry_order!r}).",
            )
        elif _finite_number(self.entry_offset_pct) and not 0 <= self.entry_offset_pct < 100:
            # A buy limit 100% below the close would rest at a price of zero or less.
            problem("entry_offset_pct", "Must be at least 0 and below 100.")
        elif not _finite_number(self.entry_offset_pct):
            problem("entry_offset_pct", f"Must be a finite number, got {self.entry_offset_pct!r}.")
        if self.entry_valid_bars != 1 and not resting:
            problem(
                "entry_valid_bars",
                "Applies only when entry_order is 'limit' or 'stop' "
                f"(entry_order is {self.entry_order!r}).",
            )

    def _validate_sizing(self, problem: Callable[[str, str], None]) -> None:
        if self.sizing not in SIZINGS:
            problem("sizing", f"Unknown sizing {self.sizing!r}; known: {', '.join(SIZINGS)}.")
            return
        for mode, name in SIZE_FIELD.items():
            given = getattr(self, name) is not None
            if mode == self.sizing and not given:
                problem(name, f"Required when sizing is {mode!r}.")
            elif mode != self.sizing and given and mode != SIZING_FRACTION:
                problem(name, f"Applies only when sizing is {mode!r} (sizing is {self.sizing!r}).")
        if self.sizing == SIZING_RISK and self.stop_loss_pct is None:
            problem(
                "stop_loss_pct",
                "Required when sizing is 'risk': the stop's distance sets the position size.",
            )

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000.0

    @property
    def market_cost(self) -> float:
        """How far a market fill (or a triggered stop) moves against the trader: slippage
        plus half the spread, as a fraction of the price."""
        return (self.slippage_bps + self.spread_bps / 2.0) / 10_000.0


@dataclass
class BacktestResult:
    """Everything one backtest produced.

    - equity: account value at each bar's close: cash + quantity * close.
    - drawdown: equity / running peak - 1, a fraction in [-1, 0] (-0.25 is 25% below the peak).
    - position: the side held at each bar's close: +1 long, -1 short, 0 flat.
    - cash, quantity (built on first use): cash, and units held (negative when short), at
      each bar's close.
    - trades: one row per round trip; see TRADE_COLUMNS in backtests.engine.simulate.
    - metrics: JSON-ready dict, keys and definitions in METRIC_DEFINITIONS.
    - config: the config as run, with `timeframe` (and an inferred one) filled in.
    """

    equity: pd.Series
    drawdown: pd.Series
    position: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float | int | str | None]
    kind: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    config: BacktestConfig = field(default_factory=BacktestConfig)
    engine_version: str = ""
    # (cash per span, quantity per span, span of each bar): equity is piecewise
    # cash + quantity * close, so the two series are cheap to build when asked for.
    spans: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def _per_bar(self, which: int, name: str) -> pd.Series:
        if self.spans is None:
            raise ValueError("this result carries no account spans")
        values = self.spans[which].take(self.spans[2])
        return pd.Series(values, index=self.equity.index, name=name, copy=False)

    @property
    def cash(self) -> pd.Series:
        return self._per_bar(0, "cash")

    @property
    def quantity(self) -> pd.Series:
        return self._per_bar(1, "quantity")
