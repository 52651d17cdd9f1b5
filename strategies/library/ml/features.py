"""Feature matrices built from candles: causal, vectorised and named.

Every feature at bar t is a function of bars 0..t only (indicators are rolling or
recursive, returns look backwards, lags shift forwards in time), so a feature row never
knows the future. Indicators are normalised so one model serves any price level: RSI and
the stochastic on 0..1, the MACD histogram and ATR as fractions of the close, Bollinger %B.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from strategies.library import indicators as ind
from strategies.library.indicators import IndicatorCache

FeatureFn = Callable[["_Bars"], np.ndarray]


@dataclass(frozen=True)
class _Bars:
    """Price and volume columns with a shared indicator cache."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    cache: IndicatorCache

    def get(self, key: tuple[object, ...], compute: Callable[[], np.ndarray]) -> np.ndarray:
        return self.cache.get(("ml", *key), compute)  # type: ignore[no-any-return]


def _lag(values: np.ndarray, bars: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if bars < len(values):
        out[bars:] = values[: len(values) - bars]
    return out


def _log_return(b: _Bars, bars: int) -> np.ndarray:
    def compute() -> np.ndarray:
        log_close = b.get(("log_close",), lambda: np.log(b.close))
        return log_close - _lag(log_close, bars)

    return b.get(("ret", bars), compute)


def _zscore(values: np.ndarray, window: int) -> np.ndarray:
    mean = ind.sma(values, window)
    std = ind.rolling_std(values, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (values - mean) / std
    # A constant window has no spread; "at its mean" is the neutral reading.
    return np.where(std == 0.0, 0.0, z)


def _volume_z(b: _Bars) -> np.ndarray:
    return b.get(("volume_z", 20), lambda: _zscore(b.volume, 20))


def _rsi(b: _Bars) -> np.ndarray:
    return ind.rsi(b.close, 14) / 100.0


def _macd_hist(b: _Bars) -> np.ndarray:
    return ind.macd(b.close, 12, 26, 9)[2] / b.close


def _bollinger_b(b: _Bars) -> np.ndarray:
    lower, _, upper = ind.bollinger(b.close, 20, 2.0)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = (b.close - lower) / width
    return np.where(width == 0.0, 0.5, pct)


def _atr(b: _Bars) -> np.ndarray:
    return ind.atr(b.high, b.low, b.close, 14) / b.close


def _adx(b: _Bars) -> np.ndarray:
    return ind.adx(b.high, b.low, b.close, 14)[0] / 100.0


def _stochastic(b: _Bars, line: int) -> np.ndarray:
    pair = b.cache.get(("ml", "stoch"), lambda: ind.stochastic(b.high, b.low, b.close, 14, 3))
    return pair[line] / 100.0  # type: ignore[no-any-return]


def _volatility(b: _Bars) -> np.ndarray:
    # pandas' rolling window skips past bar 0's undefined return; prefix sums would not.
    return pd.Series(_log_return(b, 1)).rolling(20, min_periods=20).std(ddof=0).to_numpy()


def _close_over_sma(b: _Bars) -> np.ndarray:
    return b.close / ind.sma(b.close, 20) - 1.0


# Every feature the library knows, by name, with the first bar at which it is defined
# (its warm-up), so walk-forward training can start where every column is a number.
FEATURES: dict[str, tuple[FeatureFn, int]] = {
    "ret_1": (lambda b: _log_return(b, 1), 1),
    "ret_2": (lambda b: _log_return(b, 2), 2),
    "ret_5": (lambda b: _log_return(b, 5), 5),
    "ret_10": (lambda b: _log_return(b, 10), 10),
    "ret_20": (lambda b: _log_return(b, 20), 20),
    "ret_1_lag_1": (lambda b: _lag(_log_return(b, 1), 1), 2),
    "ret_1_lag_2": (lambda b: _lag(_log_return(b, 1), 2), 3),
    "ret_1_lag_3": (lambda b: _lag(_log_return(b, 1), 3), 4),
    "volatility_20": (_volatility, 20),
    "rsi_14": (_rsi, 14),
    "macd_hist_over_close": (_macd_hist, 33),
    "bollinger_pct_b": (_bollinger_b, 19),
    "atr_14_over_close": (_atr, 13),
    "adx_14": (_adx, 27),
    "stoch_k": (lambda b: _stochastic(b, 0), 13),
    "stoch_d": (lambda b: _stochastic(b, 1), 15),
    "close_over_sma_20": (_close_over_sma, 19),
    "volume_z_20": (_volume_z, 19),
    "volume_z_20_lag_1": (lambda b: _lag(_volume_z(b), 1), 20),
    "volume_z_20_lag_2": (lambda b: _lag(_volume_z(b), 2), 21),
}

# Named feature sets, in the order of their numeric code (the strategy's `feature_set`).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "returns": (
        "ret_1",
        "ret_2",
        "ret_5",
        "ret_10",
        "ret_20",
        "ret_1_lag_1",
        "ret_1_lag_2",
        "ret_1_lag_3",
        "volatility_20",
    ),
    "indicators": (
        "ret_1",
        "ret_5",
        "rsi_14",
        "macd_hist_over_close",
        "bollinger_pct_b",
        "atr_14_over_close",
        "adx_14",
        "stoch_k",
        "stoch_d",
    ),
    "full": tuple(FEATURES),
}


class UnknownFeatureSet(KeyError):
    def __str__(self) -> str:
        return f"unknown feature set {self.args[0]!r}; known sets: {', '.join(FEATURE_SETS)}"


def feature_names(feature_set: str) -> tuple[str, ...]:
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise UnknownFeatureSet(feature_set) from None


def feature_warmup(feature_set: str) -> int:
    """The first bar at which every feature of the set is defined."""
    return max(FEATURES[name][1] for name in feature_names(feature_set))


def build_features(
    candles: pd.DataFrame, feature_set: str, cache: IndicatorCache | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """The set's feature names and a (bars x features) float64 matrix, NaN during warm-up.

    Candles without a volume column get zero volume (its z-score is then 0 throughout).
    """
    names = feature_names(feature_set)

    def column(name: str) -> np.ndarray:
        if name not in candles:
            return np.zeros(len(candles))
        return np.ascontiguousarray(candles[name].to_numpy(dtype=np.float64))

    bars = _Bars(
        open=column("open"),
        high=column("high"),
        low=column("low"),
        close=column("close"),
        volume=column("volume"),
        cache=cache if cache is not None else IndicatorCache(),
    )
    matrix = np.empty((len(candles), len(names)))
    for j, name in enumerate(names):
        matrix[:, j] = bars.get(("feature", name), partial(FEATURES[name][0], bars))
    return names, matrix
