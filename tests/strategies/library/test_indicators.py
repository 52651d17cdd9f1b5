"""Indicators agree with the `ta` library (0.11) to 1e-9 once warmed up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta

from strategies.library import indicators as ind

TOL = 1e-9


@pytest.fixture(scope="module")
def ohlc() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 3_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.003, n)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


def assert_matches(ours: np.ndarray, theirs: pd.Series, start: int, stop: int | None = None):
    """NaN exactly where `ta` has NaN (from `start` on) and equal within TOL elsewhere."""
    a = np.asarray(ours)[start:stop]
    b = np.asarray(theirs, dtype=float)[start:stop]
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) < TOL


def test_sma_matches_ta_and_is_nan_during_warmup(ohlc):
    for window in (1, 5, 20, 200):
        ours = ind.sma(ohlc.close, window)
        assert np.isnan(ours[: window - 1]).all()
        assert not np.isnan(ours[window - 1 :]).any()
        assert_matches(ours, ta.trend.SMAIndicator(ohlc.close, window).sma_indicator(), 0)


def test_sma_stays_exact_over_a_million_bars():
    # A naive global cumulative sum drifts by ~1e-9 at this length; chunking must not.
    x = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 1e-3, 1_000_000)))
    expected = pd.Series(x).rolling(50).mean().to_numpy()
    assert np.nanmax(np.abs(ind.sma(x, 50) - expected)) < 1e-10


def test_prefix_sums_serve_windows_beyond_their_overlap(ohlc):
    prefix = ind.PrefixSums(ohlc.close, overlap=8)
    for window in (3, 8, 9, 300):
        assert_matches(ind.sma(ohlc.close, window, prefix), ohlc.close.rolling(window).mean(), 0)


def test_ema_matches_ta(ohlc):
    for window in (2, 12, 26, 100):
        ours = ind.ema(ohlc.close, window)
        assert np.isnan(ours[: window - 1]).all()
        assert_matches(ours, ta.trend.EMAIndicator(ohlc.close, window).ema_indicator(), 0)


def test_rsi_is_wilder_seeded_and_converges_to_ta(ohlc):
    window = 14
    ours = ind.rsi(ohlc.close, window)
    # First value needs `window` price changes, i.e. window + 1 closes.
    assert np.isnan(ours[:window]).all()
    assert not np.isnan(ours[window:]).any()
    change = np.diff(ohlc.close.to_numpy())[:window]
    gain = change.clip(min=0).mean()
    loss = (-change).clip(min=0).mean()
    assert ours[window] == pytest.approx(100 - 100 / (1 + gain / loss), abs=1e-12)
    # `ta` seeds its recursion on bar 0 instead of with the mean; the seed's weight decays
    # as (1 - 1/14)^k, below 1e-12 after 30 windows, from where the two must agree.
    assert_matches(ours, ta.momentum.RSIIndicator(ohlc.close, window).rsi(), 30 * window)


def test_rsi_is_100_when_prices_only_rise():
    out = ind.rsi(np.arange(1.0, 40.0), 14)
    assert (out[14:] == 100).all()


def test_macd_line_signal_and_histogram_match_ta(ohlc):
    line, signal, hist = ind.macd(ohlc.close, 12, 26, 9)
    theirs = ta.trend.MACD(ohlc.close, window_slow=26, window_fast=12, window_sign=9)
    assert np.isnan(line[:25]).all() and not np.isnan(line[25:]).any()
    assert np.isnan(signal[:33]).all() and not np.isnan(signal[33:]).any()
    assert_matches(line, theirs.macd(), 0)
    assert_matches(signal, theirs.macd_signal(), 0)
    assert_matches(hist, theirs.macd_diff(), 0)


def test_bollinger_bands_match_ta(ohlc):
    lower, middle, upper = ind.bollinger(ohlc.close, 20, 2.0)
    theirs = ta.volatility.BollingerBands(ohlc.close, window=20, window_dev=2)
    assert np.isnan(lower[:19]).all()
    assert_matches(lower, theirs.bollinger_lband(), 0)
    assert_matches(middle, theirs.bollinger_mavg(), 0)
    assert_matches(upper, theirs.bollinger_hband(), 0)


def test_atr_matches_ta_after_warmup(ohlc):
    ours = ind.atr(ohlc.high, ohlc.low, ohlc.close, 14)
    assert np.isnan(ours[:13]).all()
    theirs = ta.volatility.AverageTrueRange(ohlc.high, ohlc.low, ohlc.close, 14)
    # `ta` reports 0 instead of NaN during warm-up; compare from the first value.
    assert_matches(ours, theirs.average_true_range(), 13)


def test_stochastic_k_and_d_match_ta(ohlc):
    k, d = ind.stochastic(ohlc.high, ohlc.low, ohlc.close, 14, 3)
    theirs = ta.momentum.StochasticOscillator(ohlc.high, ohlc.low, ohlc.close, 14, 3)
    assert np.isnan(k[:13]).all() and np.isnan(d[:15]).all()
    assert_matches(k, theirs.stoch(), 0)
    assert_matches(d, theirs.stoch_signal(), 0)


def test_stochastic_is_neutral_on_a_flat_range():
    flat = np.full(30, 5.0)
    k, d = ind.stochastic(flat, flat, flat, 14, 3)
    assert (k[13:] == 50).all() and (d[15:] == 50).all()


def test_adx_and_directional_indicators_match_ta(ohlc):
    window = 14
    adx, plus_di, minus_di = ind.adx(ohlc.high, ohlc.low, ohlc.close, window)
    theirs = ta.trend.ADXIndicator(ohlc.high, ohlc.low, ohlc.close, window)
    assert np.isnan(plus_di[:window]).all() and not np.isnan(plus_di[window:]).any()
    assert np.isnan(adx[: 2 * window - 1]).all() and not np.isnan(adx[2 * window - 1 :]).any()
    # `ta` leaves its first DI value (bar `window`) and its last bar at 0 (loop bounds in
    # its implementation), so the comparison skips exactly those bars.
    assert_matches(plus_di, theirs.adx_pos(), window + 1, -1)
    assert_matches(minus_di, theirs.adx_neg(), window + 1, -1)
    assert_matches(adx, theirs.adx(), 2 * window - 1, -1)


def test_indicators_are_all_nan_when_there_are_too_few_bars():
    short = np.array([1.0, 2.0, 3.0])
    assert np.isnan(ind.sma(short, 5)).all()
    assert np.isnan(ind.rsi(short, 14)).all()
    assert all(np.isnan(a).all() for a in ind.adx(short, short, short, 14))


def test_invalid_window_is_rejected():
    with pytest.raises(ValueError, match="window"):
        ind.sma(np.ones(10), 0)


def test_indicator_cache_computes_each_key_once():
    cache = ind.IndicatorCache()
    calls = []
    for _ in range(3):
        cache.get(("sma", 5), lambda: calls.append(1) or 42)
    assert calls == [1] and len(cache) == 1
