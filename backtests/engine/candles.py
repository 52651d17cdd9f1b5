"""Candle validation: the engine's single gate between a DataFrame and float arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.errors import InvalidCandlesError

PRICE_COLUMNS = ("open", "high", "low", "close")

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class CandleArrays:
    """Validated OHLC as contiguous float64 arrays plus bar open times in UTC nanoseconds."""

    index: pd.DatetimeIndex
    ts_ns: np.ndarray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    # The bars' typical spacing in ns: the lower median of the gaps between open times, so
    # weekends and missing bars do not move it; 0 for a single bar.
    spacing_ns: int = 0

    def __len__(self) -> int:
        return len(self.close)


def _first_bad(mask: np.ndarray, index: pd.DatetimeIndex) -> str:
    pos = int(np.argmax(mask))
    return f"{int(mask.sum())} bar(s), first at {index[pos].isoformat()} (position {pos})"


def _ranges_consistent(o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray) -> bool:
    """low <= open, close <= high on every bar, checked in cache-sized slices."""
    step = 65_536
    for a in range(0, len(o), step):
        b = a + step
        top = np.maximum(o[a:b], c[a:b])
        bottom = np.minimum(o[a:b], c[a:b])
        if (top > h[a:b]).any() or (bottom < lo[a:b]).any():
            return False
    return True


def validate_candles(candles: pd.DataFrame) -> CandleArrays:
    """Check the candle frame and return its arrays, or raise InvalidCandlesError."""
    if not isinstance(candles, pd.DataFrame):
        raise InvalidCandlesError(f"candles must be a pandas DataFrame, got {type(candles)!r}")
    missing = [c for c in PRICE_COLUMNS if c not in candles.columns]
    if missing:
        raise InvalidCandlesError(f"candles are missing column(s): {', '.join(missing)}")
    index = candles.index
    if not isinstance(index, pd.DatetimeIndex):
        raise InvalidCandlesError("candles must be indexed by a DatetimeIndex of bar open times")
    if index.tz is None:
        raise InvalidCandlesError("candle timestamps must be timezone-aware (UTC)")
    if len(candles) == 0:
        raise InvalidCandlesError("candles are empty")
    if str(index.tz) != "UTC":
        index = index.tz_convert("UTC")
    ts_ns = index.asi8
    if index.unit != "ns":
        # Metrics work in nanoseconds; scaling the integers is cheaper than as_unit.
        ts_ns = ts_ns * {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}[index.unit]
    steps = np.diff(ts_ns)
    smallest = steps.min() if len(steps) else 1
    if smallest <= 0:
        dup = np.flatnonzero(steps == 0)
        if len(dup):
            at = index[int(dup[0]) + 1].isoformat()
            raise InvalidCandlesError(
                f"candle timestamps contain duplicates ({len(dup)}), first at {at}"
            )
        back = int(np.flatnonzero(steps < 0)[0]) + 1
        raise InvalidCandlesError(
            f"candle timestamps are not sorted ascending: {index[back].isoformat()} comes after "
            f"{index[back - 1].isoformat()}"
        )
    arrays: dict[str, FloatArray] = {}
    for name in PRICE_COLUMNS:
        try:
            values = np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise InvalidCandlesError(f"candle column {name!r} is not numeric: {exc}") from None
        # Two reductions settle the common case; NaN makes `lowest > 0` False.
        lowest, highest = values.min(), values.max()
        if not (lowest > 0 and highest < np.inf):
            bad = ~np.isfinite(values)
            if bad.any():
                raise InvalidCandlesError(f"{name} is NaN or infinite in {_first_bad(bad, index)}")
            nonpositive = values <= 0
            raise InvalidCandlesError(
                f"{name} is zero or negative in {_first_bad(nonpositive, index)}"
            )
        arrays[name] = values
    o, h, lo, c = arrays["open"], arrays["high"], arrays["low"], arrays["close"]
    if not _ranges_consistent(o, h, lo, c):
        inverted = h < lo
        if inverted.any():
            raise InvalidCandlesError(f"high < low in {_first_bad(inverted, index)}")
        # Stops are checked against high/low, so open and close must lie inside that range.
        outside = (np.maximum(o, c) > h) | (np.minimum(o, c) < lo)
        raise InvalidCandlesError(
            f"open or close outside the [low, high] range in {_first_bad(outside, index)}"
        )
    return CandleArrays(
        index=index,
        ts_ns=ts_ns,
        open=o,
        high=h,
        low=lo,
        close=c,
        spacing_ns=_spacing(steps, int(smallest)),
    )


def _spacing(steps: np.ndarray, smallest: int) -> int:
    if not len(steps):
        return 0
    if smallest == int(steps.max()):
        return smallest  # evenly spaced: no need to sort anything
    middle = (len(steps) - 1) // 2
    return int(np.partition(steps, middle)[middle])
