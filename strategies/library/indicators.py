"""Vectorised technical indicators over float64 arrays, with NaN during warm-up.

Every function takes array-likes (numpy arrays or pandas Series) and returns numpy arrays of
the same length. A value is NaN until the indicator has seen enough bars; from then on it
is a number. Conventions (checked against the `ta` 0.11 library in tests/strategies_library):

- SMA: arithmetic mean of the last `window` values; first value at index window-1.
- EMA: alpha = 2 / (window + 1), seeded with the first value (pandas `ewm(adjust=False)`,
  as `ta` and vectorbt do); reported from index window-1.
- Wilder smoothing (RSI, ATR, ADX): alpha = 1 / window, seeded with a simple mean.
- RSI: average gain and loss are seeded with the mean of the first `window` price
  changes (Wilder 1978, TA-Lib), so the first value is at index `window`. `ta` instead
  treats bar 0 as a zero change and starts its recursion there; both converge once the
  seed has decayed, which is why the test compares them after that decay.
- ATR: true range of bar 0 is its high - low; ATR at index window-1 is the mean of the
  first `window` true ranges, then Wilder smoothing.
- ADX: Wilder's DMI. +DI/-DI first at index `window`, ADX (a Wilder average of DX seeded
  with the mean of the first `window` DX values) first at index 2*window-1.
- Stochastic: %K over `window` bars (50 when the range is zero), %D = SMA of %K.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
ArrayLike: TypeAlias = "np.ndarray | pd.Series"

# Rolling sums are taken from per-chunk prefix sums. One global cumulative sum would grow
# to ~1e8 over a million bars and lose ~1e-9 of absolute precision; restarting every few
# thousand bars keeps the error near 1e-11 while staying a few vectorised passes. Each
# chunk row also carries the `overlap` values before it, so one set of prefix sums serves
# every window up to `overlap` (a sweep computes it once for all its windows).
_ROLLING_CHUNK = 8192
_DEFAULT_OVERLAP = 1024


def _as_float(values: ArrayLike) -> FloatArray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64))


def _check_window(window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")


class PrefixSums:
    """Chunked prefix sums of one array, answering rolling sums for any window <= overlap."""

    def __init__(self, values: ArrayLike, overlap: int = _DEFAULT_OVERLAP) -> None:
        x = _as_float(values)
        self._values = x
        self.n = n = len(x)
        self.overlap = overlap
        chunk = _ROLLING_CHUNK
        self.chunks = chunks = max(1, -(-n // chunk))
        width = chunk + overlap + 1
        # Row r is the running sum over the overlap+1 values before chunk r (zeros stand in
        # before the first bar) followed by the chunk itself (zeros past the last bar).
        self._prefix = prefix = np.empty((chunks, width))
        for r in range(chunks):
            lo = r * chunk - overlap - 1  # index in x of the row's first position
            hi = lo + width
            if lo >= 0 and hi <= n:
                np.cumsum(x[lo:hi], out=prefix[r])
            else:
                row = np.zeros(width)
                src_lo, src_hi = max(lo, 0), min(hi, n)
                if src_hi > src_lo:
                    row[src_lo - lo : src_hi - lo] = x[src_lo:src_hi]
                np.cumsum(row, out=prefix[r])

    def window_sum(self, window: int, scale: float = 1.0) -> FloatArray:
        """scale * sum of the last `window` values; NaN for the first window-1 positions."""
        _check_window(window)
        if window > self.overlap:
            return PrefixSums(self._values, overlap=window).window_sum(window, scale)
        chunk = _ROLLING_CHUNK
        ov = self.overlap
        out = np.empty(self.chunks * chunk)
        grid = out.reshape(self.chunks, chunk)
        # Row position j + ov + 1 holds the prefix through bar (row start + j).
        np.subtract(
            self._prefix[:, ov + 1 : ov + 1 + chunk],
            self._prefix[:, ov + 1 - window : ov + 1 - window + chunk],
            out=grid,
        )
        if scale != 1.0:
            grid *= scale
        result = out[: self.n]
        result[: window - 1] = np.nan
        return result


def rolling_sum(values: ArrayLike, window: int) -> FloatArray:
    """Sum of the last `window` values; NaN for the first window-1 positions."""
    _check_window(window)
    return PrefixSums(values, overlap=window).window_sum(window)


def sma(values: ArrayLike, window: int, prefix: PrefixSums | None = None) -> FloatArray:
    """Simple moving average; pass `prefix` (of the same values) to share the prefix sums."""
    _check_window(window)
    if prefix is None:
        prefix = PrefixSums(values, overlap=window)
    return prefix.window_sum(window, scale=1.0 / window)


def rolling_std(values: ArrayLike, window: int) -> FloatArray:
    """Population (ddof=0) standard deviation over `window` values, as Bollinger uses."""
    x = _as_float(values)
    mean = sma(x, window)
    # Centre on the rolling mean's neighbourhood before squaring: E[x^2] - E[x]^2 on raw
    # prices cancels catastrophically, so use pandas' numerically careful rolling var.
    var = pd.Series(x).rolling(window, min_periods=window).var(ddof=0).to_numpy()
    var = np.where(np.isnan(mean), np.nan, np.maximum(var, 0.0))
    return np.sqrt(var)


def rolling_max(values: ArrayLike, window: int) -> FloatArray:
    _check_window(window)
    return pd.Series(_as_float(values)).rolling(window, min_periods=window).max().to_numpy()


def rolling_min(values: ArrayLike, window: int) -> FloatArray:
    _check_window(window)
    return pd.Series(_as_float(values)).rolling(window, min_periods=window).min().to_numpy()


def ema(values: ArrayLike, window: int) -> FloatArray:
    """Exponential moving average, alpha = 2/(window+1), seeded with the first value."""
    _check_window(window)
    x = _as_float(values)
    out = pd.Series(x).ewm(span=window, adjust=False, min_periods=window).mean().to_numpy()
    return out


def wilder_smooth(values: ArrayLike, window: int, seed_index: int) -> FloatArray:
    """Wilder's moving average (alpha = 1/window) seeded at `seed_index`.

    The seed is the mean of values[seed_index-window+1 .. seed_index]; earlier positions are
    NaN. Later values follow y[t] = y[t-1] + (x[t] - y[t-1]) / window.
    """
    _check_window(window)
    x = _as_float(values)
    n = len(x)
    out = np.full(n, np.nan)
    if seed_index >= n or seed_index - window + 1 < 0:
        return out
    seeded = x[seed_index:].copy()
    seeded[0] = x[seed_index - window + 1 : seed_index + 1].mean()
    # pandas' ewm(adjust=False) is exactly Wilder's recursion once the first value is the seed.
    out[seed_index:] = pd.Series(seeded).ewm(alpha=1.0 / window, adjust=False).mean().to_numpy()
    return out


def rsi(close: ArrayLike, window: int = 14) -> FloatArray:
    """Relative Strength Index with Wilder smoothing; 100 when there were no losses."""
    _check_window(window)
    c = _as_float(close)
    change = np.diff(c, prepend=np.nan)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain = wilder_smooth(gain, window, seed_index=window)
    avg_loss = wilder_smooth(loss, window, seed_index=window)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where(avg_loss == 0.0, 100.0, value)
    return np.where(np.isnan(avg_gain), np.nan, value)


def macd(
    close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line (EMA fast - EMA slow), its signal EMA and the histogram (line - signal)."""
    c = _as_float(close)
    line = ema(c, fast) - ema(c, slow)
    # The signal EMA starts on the first defined MACD value, as in `ta` and TA-Lib.
    first = slow - 1
    signal_line = np.full(len(c), np.nan)
    if len(c) > first:
        signal_line[first:] = ema(line[first:], signal)
    return line, signal_line, line - signal_line


def bollinger(
    close: ArrayLike, window: int = 20, num_std: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands: (lower, middle, upper) with population standard deviation."""
    middle = sma(close, window)
    width = num_std * rolling_std(close, window)
    return middle - width, middle, middle + width


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> FloatArray:
    """max(high, previous close) - min(low, previous close); bar 0 is high - low."""
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    prev = np.empty_like(c)
    prev[1:] = c[:-1]
    if len(c):
        prev[0] = c[0]
    # With prev[0] = close[0] inside [low, high], bar 0 reduces to high - low.
    return np.maximum(h, prev) - np.minimum(lo, prev)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14) -> FloatArray:
    """Average True Range, Wilder-smoothed and seeded with the mean of the first window TRs."""
    return wilder_smooth(true_range(high, low, close), window, seed_index=window - 1)


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14, smooth: int = 3
) -> tuple[FloatArray, FloatArray]:
    """Stochastic oscillator (%K, %D)."""
    c = _as_float(close)
    highest = rolling_max(high, window)
    lowest = rolling_min(low, window)
    span = highest - lowest
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 100.0 * (c - lowest) / span
    # A zero range has no position within it; 50 (the middle) is the neutral reading.
    k = np.where(span == 0.0, 50.0, k)
    d = np.full(len(c), np.nan)
    first = window - 1
    if len(c) > first:
        d[first:] = sma(k[first:], smooth)
    return k, d


def adx(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, window: int = 14
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Wilder's ADX with +DI and -DI: returns (adx, plus_di, minus_di)."""
    _check_window(window)
    h, lo, c = _as_float(high), _as_float(low), _as_float(close)
    n = len(c)
    nan = np.full(n, np.nan)
    if n <= window:
        return nan, nan.copy(), nan.copy()
    up = np.diff(h, prepend=np.nan)
    down = -np.diff(lo, prepend=np.nan)
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    tr = true_range(h, lo, c)
    # Bar 0 has no previous bar, so directional movement starts at bar 1.
    tr_s = wilder_smooth(tr, window, seed_index=window)
    plus_s = wilder_smooth(plus_dm, window, seed_index=window)
    minus_s = wilder_smooth(minus_dm, window, seed_index=window)
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = np.where(tr_s == 0.0, 0.0, 100.0 * plus_s / tr_s)
        minus_di = np.where(tr_s == 0.0, 0.0, 100.0 * minus_s / tr_s)
        di_sum = plus_di + minus_di
        dx = np.where(di_sum == 0.0, 0.0, 100.0 * np.abs(plus_di - minus_di) / di_sum)
    plus_di = np.where(np.isnan(tr_s), np.nan, plus_di)
    minus_di = np.where(np.isnan(tr_s), np.nan, minus_di)
    dx = np.where(np.isnan(tr_s), np.nan, dx)
    adx_line = wilder_smooth(dx, window, seed_index=2 * window - 1)
    return adx_line, plus_di, minus_di


class IndicatorCache:
    """Memoises indicator arrays by key, so a sweep computes each one once.

    One cache belongs to one candle set; keys name the indicator and its arguments, e.g.
    ("sma", 50).
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        try:
            return self._values[key]
        except KeyError:
            value = compute()
            self._values[key] = value
            return value

    def __len__(self) -> int:
        return len(self._values)
