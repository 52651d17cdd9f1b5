"""Small hand-made candle frames for engine tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def make_candles(
    opens: Sequence[float],
    closes: Sequence[float],
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    freq: str = "1D",
    start: str = "2024-01-01",
) -> pd.DataFrame:
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes, dtype=float)
    h = np.maximum(o, c) if highs is None else np.asarray(highs, dtype=float)
    lo = np.minimum(o, c) if lows is None else np.asarray(lows, dtype=float)
    index = pd.date_range(start, periods=len(o), freq=freq, tz="UTC")
    return pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": 1.0}, index=index)


def random_walk(n: int, seed: int = 0, freq: str = "1min") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 3e-4, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 1e-3, n)))
    return make_candles(open_, close, high, low, freq=freq)
