"""The built-in strategy kinds: their parameters and the rule mapping candles to positions.

Every kind emits the position wanted after each bar's close (+1, 0, -1). Kinds that can
be short emit -1; a long-only backtest turns -1 into flat, which for every kind here is
the same as "exit the long and wait for the next long entry".

Each kind computes its indicator lines in one method that both `positions` (to trade) and
`overlays` (to chart) call, so a chart shows exactly the lines the kind traded on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from strategies.library import indicators as ind
from strategies.library.base import LessThan, Param, ParamSpec, StrategyKind, oscillator
from strategies.library.indicators import IndicatorCache
from strategies.library.registry import register
from strategies.library.signals import cross_positions, latch_positions


def _column(candles: pd.DataFrame, name: str, cache: IndicatorCache | None) -> np.ndarray:
    def read() -> np.ndarray:
        return np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64))

    return cache.get(("column", name), read) if cache is not None else read()


def _cached(cache: IndicatorCache | None, key: tuple[Any, ...], compute: Any) -> Any:
    return cache.get(key, compute) if cache is not None else compute()


def _number(value: float) -> str:
    """A parameter in an overlay's name: 2 rather than 2.0."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _sma(close: np.ndarray, window: int, cache: IndicatorCache | None) -> np.ndarray:
    if cache is None:
        return ind.sma(close, window)
    # One set of prefix sums of the closes serves every SMA window of a sweep.
    prefix = cache.get(("prefix", "close"), lambda: ind.PrefixSums(close))
    return cache.get(("sma", window), lambda: ind.sma(close, window, prefix))  # type: ignore[no-any-return]


@register
class SmaCross(StrategyKind):
    name = "sma_cross"
    label = "SMA crossover"
    description = (
        "Long after the fast simple moving average of closes crosses above the slow one, "
        "short (or flat when long-only) after it crosses below. Flat until the first cross."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("fast", "int", 10, min=1, max=1000, step=1, help="Fast SMA window, in bars."),
            Param("slow", "int", 50, min=2, max=5000, step=1, help="Slow SMA window, in bars."),
        ),
        rules=(LessThan("fast", "slow"),),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        # The slow SMA exists from bar slow-1; a cross needs one more bar.
        return int(params["slow"])

    def _lines(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        close = _column(candles, "close", cache)
        return _sma(close, params["fast"], cache), _sma(close, params["slow"], cache)

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        return cross_positions(*self._lines(candles, params, cache))

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        cleaned = self.validate(params)
        fast, slow = self._lines(candles, cleaned, None)
        return {f"SMA {cleaned['fast']}": fast, f"SMA {cleaned['slow']}": slow}


@register
class EmaCross(StrategyKind):
    name = "ema_cross"
    label = "EMA crossover"
    description = (
        "Long after the fast exponential moving average of closes crosses above the slow "
        "one, short (or flat when long-only) after it crosses below."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("fast", "int", 12, min=1, max=1000, step=1, help="Fast EMA span, in bars."),
            Param("slow", "int", 26, min=2, max=5000, step=1, help="Slow EMA span, in bars."),
        ),
        rules=(LessThan("fast", "slow"),),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        return int(params["slow"])

    def _lines(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        close = _column(candles, "close", cache)
        fast = _cached(cache, ("ema", params["fast"]), lambda: ind.ema(close, params["fast"]))
        slow = _cached(cache, ("ema", params["slow"]), lambda: ind.ema(close, params["slow"]))
        return fast, slow

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        return cross_positions(*self._lines(candles, params, cache))

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        cleaned = self.validate(params)
        fast, slow = self._lines(candles, cleaned, None)
        return {f"EMA {cleaned['fast']}": fast, f"EMA {cleaned['slow']}": slow}


@register
class RsiReversion(StrategyKind):
    name = "rsi_reversion"
    label = "RSI mean reversion"
    description = (
        "Buy when RSI falls below the oversold level and exit when it rises above the "
        "overbought level; with shorting, the overbought exit also opens a short that is "
        "covered when RSI is next oversold."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("window", "int", 14, min=2, max=1000, step=1, help="RSI window, in bars."),
            Param("oversold", "float", 30.0, min=0, max=100, step=1, help="Buy below this RSI."),
            Param("overbought", "float", 70.0, min=0, max=100, step=1, help="Exit above this RSI."),
        ),
        rules=(LessThan("oversold", "overbought"),),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        return int(params["window"])

    def _rsi(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> np.ndarray:
        close = _column(candles, "close", cache)
        return _cached(cache, ("rsi", params["window"]), lambda: ind.rsi(close, params["window"]))  # type: ignore[no-any-return]

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        value = self._rsi(candles, params, cache)
        oversold = value < params["oversold"]
        overbought = value > params["overbought"]
        return latch_positions(oversold, overbought, overbought, oversold)

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        """RSI runs from 0 to 100, not on the price scale: an oscillator, with the two levels
        it is compared with as flat lines on the same axis."""
        cleaned = self.validate(params)
        levels = np.ones(len(candles))
        return {
            oscillator(f"RSI {cleaned['window']}"): self._rsi(candles, cleaned, None),
            oscillator(f"oversold {_number(cleaned['oversold'])}"): levels * cleaned["oversold"],
            oscillator(f"overbought {_number(cleaned['overbought'])}"): levels
            * cleaned["overbought"],
        }


@register
class MacdCross(StrategyKind):
    name = "macd_cross"
    label = "MACD signal-line cross"
    description = (
        "Long after the MACD line crosses above its signal line, short (or flat when "
        "long-only) after it crosses below."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("fast", "int", 12, min=1, max=1000, step=1, help="Fast EMA span."),
            Param("slow", "int", 26, min=2, max=5000, step=1, help="Slow EMA span."),
            Param("signal", "int", 9, min=1, max=1000, step=1, help="Signal EMA span."),
        ),
        rules=(LessThan("fast", "slow"),),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        # The signal line exists from bar slow+signal-2; a cross needs one more bar.
        return int(params["slow"]) + int(params["signal"]) - 1

    def _lines(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        close = _column(candles, "close", cache)
        key = ("macd", params["fast"], params["slow"], params["signal"])
        line, signal, _ = _cached(
            cache, key, lambda: ind.macd(close, params["fast"], params["slow"], params["signal"])
        )
        return line, signal

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        return cross_positions(*self._lines(candles, params, cache))

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        """The MACD line is a difference of prices, near zero: an oscillator, with its signal
        line on the same axis (the histogram is their difference, so it is left out)."""
        cleaned = self.validate(params)
        line, signal = self._lines(candles, cleaned, None)
        return {
            oscillator(f"MACD {cleaned['fast']}/{cleaned['slow']}"): line,
            oscillator(f"signal {cleaned['signal']}"): signal,
        }


@register
class BollingerReversion(StrategyKind):
    name = "bollinger_reversion"
    label = "Bollinger band reversion"
    description = (
        "Buy when the close is below the lower band and exit once it is back at or above "
        "the middle band; with shorting, sell above the upper band and cover at or below "
        "the middle band."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("window", "int", 20, min=2, max=5000, step=1, help="Band window, in bars."),
            Param(
                "num_std", "float", 2.0, min=0.1, max=10, step=0.1, help="Band width in std devs."
            ),
        ),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        return int(params["window"]) - 1

    def _bands(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        close = _column(candles, "close", cache)
        window, num_std = params["window"], params["num_std"]
        middle = _sma(close, window, cache)
        std = _cached(cache, ("std", window), lambda: ind.rolling_std(close, window))
        return middle - num_std * std, middle, middle + num_std * std

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        close = _column(candles, "close", cache)
        lower, middle, upper = self._bands(candles, params, cache)
        return latch_positions(close < lower, close >= middle, close > upper, close <= middle)

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        cleaned = self.validate(params)
        lower, middle, upper = self._bands(candles, cleaned, None)
        width = _number(cleaned["num_std"])
        return {
            f"upper band (+{width} std)": upper,
            f"middle band (SMA {cleaned['window']})": middle,
            f"lower band (-{width} std)": lower,
        }


@register
class DonchianBreakout(StrategyKind):
    name = "donchian_breakout"
    label = "Donchian channel breakout"
    description = (
        "Buy when the close breaks above the highest high of the previous entry_window "
        "bars; exit when it falls below the lowest low of the previous exit_window bars. "
        "With shorting, the mirror image opens and closes shorts."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param("entry_window", "int", 20, min=2, max=5000, step=1, help="Breakout window."),
            Param("exit_window", "int", 10, min=1, max=5000, step=1, help="Exit window."),
        ),
        rules=(LessThan("exit_window", "entry_window"),),
    )

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        # The channel of the *previous* entry_window bars exists from bar entry_window.
        return int(params["entry_window"])

    def _channels(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> dict[str, np.ndarray]:
        """The four channel lines, by role: long entry and exit, short entry and exit."""
        high = _column(candles, "high", cache)
        low = _column(candles, "low", cache)

        def prior(kind: str, values: np.ndarray, window: int) -> np.ndarray:
            def compute() -> np.ndarray:
                rolled = (
                    ind.rolling_max(values, window)
                    if kind == "max"
                    else ind.rolling_min(values, window)
                )
                # Shift by one bar: a breakout compares with the channel before this bar.
                shifted = np.full(len(rolled), np.nan)
                shifted[1:] = rolled[:-1]
                return shifted

            return _cached(cache, ("prior", kind, window), compute)  # type: ignore[no-any-return]

        entry, exit_ = params["entry_window"], params["exit_window"]
        return {
            "long_entry": prior("max", high, entry),
            "long_exit": prior("min", low, exit_),
            "short_entry": prior("min", low, entry),
            "short_exit": prior("max", high, exit_),
        }

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        close = _column(candles, "close", cache)
        lines = self._channels(candles, params, cache)
        return latch_positions(
            close > lines["long_entry"],
            close < lines["long_exit"],
            close < lines["short_entry"],
            close > lines["short_exit"],
        )

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        """The channels of the bars before each bar: the long side's entry (highest high)
        and exit (lowest low), and their mirror images, which open and close shorts."""
        cleaned = self.validate(params)
        lines = self._channels(candles, cleaned, None)
        entry, exit_ = cleaned["entry_window"], cleaned["exit_window"]
        return {
            f"{entry}-bar high (long entry)": lines["long_entry"],
            f"{exit_}-bar low (long exit)": lines["long_exit"],
            f"{entry}-bar low (short entry)": lines["short_entry"],
            f"{exit_}-bar high (short exit)": lines["short_exit"],
        }


@register
class BuyAndHold(StrategyKind):
    name = "buy_and_hold"
    label = "Buy and hold"
    description = "Buy on the first bar's signal (filled at the second bar's open) and hold."
    allows_short = False
    params = ParamSpec(params=())

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        return 0

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        return np.ones(len(candles))


# The ML predictor lives in its own package; importing it registers the kind.
from strategies.library.ml import kind as _ml_kind  # noqa: E402, F401
