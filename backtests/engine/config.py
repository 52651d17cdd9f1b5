"""The engine's input and output dataclasses: BacktestConfig and BacktestResult."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from backtests.engine.errors import InvalidConfigError
from marketdata.timeframes import TIMEFRAME_SECONDS


@dataclass(frozen=True)
class BacktestConfig:
    """How a backtest trades.

    - initial_capital: starting cash, in quote currency.
    - fee_rate: fraction of each fill's notional paid as a fee (0.001 = 0.1%).
    - slippage_bps: market fills move against you by this many basis points.
    - size_fraction: fraction of current equity committed to each new position.
    - allow_short: when False, a -1 target means flat.
    - stop_loss_pct / take_profit_pct: percent distance from the entry fill price, or None.
    - timeframe: bar length, used only to annualise metrics.
    """

    initial_capital: float = 10_000.0
    fee_rate: float = 0.001
    slippage_bps: float = 0.0
    size_fraction: float = 1.0
    allow_short: bool = False
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    timeframe: str = "1m"

    def validate(self) -> None:
        problems: list[str] = []

        def finite(name: str, value: Any) -> bool:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value!r}")
                return False
            return True

        if finite("initial_capital", self.initial_capital) and self.initial_capital <= 0:
            problems.append("initial_capital must be positive")
        if finite("fee_rate", self.fee_rate) and not 0 <= self.fee_rate < 1:
            problems.append("fee_rate must be in [0, 1)")
        if finite("slippage_bps", self.slippage_bps) and not 0 <= self.slippage_bps < 10_000:
            problems.append("slippage_bps must be in [0, 10000)")
        if finite("size_fraction", self.size_fraction) and not 0 < self.size_fraction <= 1:
            problems.append("size_fraction must be in (0, 1]")
        for name in ("stop_loss_pct", "take_profit_pct"):
            value = getattr(self, name)
            if value is not None and finite(name, value) and value <= 0:
                problems.append(f"{name} must be positive or None")
            # A long stopped 100% below entry would fill at a price of zero or less.
            elif name == "stop_loss_pct" and value is not None and value >= 100:
                problems.append("stop_loss_pct must be below 100")
        if self.timeframe not in TIMEFRAME_SECONDS:
            known = ", ".join(TIMEFRAME_SECONDS)
            problems.append(f"timeframe {self.timeframe!r} is unknown; known: {known}")
        if not isinstance(self.allow_short, bool):
            problems.append("allow_short must be a bool")
        if problems:
            raise InvalidConfigError("invalid backtest config: " + "; ".join(problems))

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000.0


@dataclass
class BacktestResult:
    """Everything one backtest produced.

    - equity: account value at each bar's close (cash plus open position marked to the close).
    - drawdown: equity / running peak - 1, a fraction <= 0 (-0.25 is 25% below the peak).
    - position: the position held at each bar's close: +1 long, -1 short, 0 flat.
    - trades: one row per round trip; see TRADE_COLUMNS in backtests.engine.simulate.
    - metrics: JSON-ready dict, keys and definitions in METRIC_DEFINITIONS.
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
