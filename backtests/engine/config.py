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
SIZE_FIELD = {
    SIZING_FRACTION: "size_fraction",
    SIZING_FIXED_QUANTITY: "fixed_quantity",
    SIZING_FIXED_NOTIONAL: "fixed_notional",
    SIZING_RISK: "risk_pct",
}


@dataclass(frozen=True)
class BacktestConfig:
    """How a backtest trades, and how its results annualise.

    Costs:
    - initial_capital: starting cash, in quote currency.
    - fee_rate: fraction of each fill's notional paid as a fee (0.001 = 0.1%).
    - fixed_fee / min_fee: a fee per fill in quote currency, and the least any fill pays:
      a fill pays max(fee_rate * notional + fixed_fee, min_fee).
    - slippage_bps: market fills move against you by this many basis points.

    Sizing (the "full size" a target of +1 or -1 asks for; a target of 0.5 asks for half):
    - sizing: "fraction" (size_fraction of equity, fees included), "fixed_quantity"
      (fixed_quantity units), "fixed_notional" (fixed_notional of quote currency) or "risk"
      (lose risk_pct % of equity if the stop at stop_loss_pct is hit; needs a stop).
    - quantity_step: quantities are rounded down to a multiple of it (None: no rounding).
    - min_notional: an order whose notional is below it is skipped (and counted).
    - allow_short: when False, a negative target means flat.
    - stop_loss_pct / take_profit_pct: percent distance from the entry fill price, or None.

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
        if finite("size_fraction") and not 0 < self.size_fraction <= 1:
            problem("size_fraction", "Must be above 0 and at most 1.")
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
