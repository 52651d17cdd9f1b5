"""Each kind's chart overlays are the indicators it trades on, one value per candle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from strategies.library import indicators as ind
from strategies.library.base import OSCILLATOR_PREFIX, ParamValidationError, oscillator
from strategies.library.registry import all_kinds, get_kind
from tests.strategies.library.test_kinds import candles_from_close


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return candles_from_close(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000))))


def _prior(values: np.ndarray) -> np.ndarray:
    shifted = np.full(len(values), np.nan)
    shifted[1:] = values[:-1]
    return shifted


# The indicators each kind trades on, computed here straight from the indicator library.
EXPECTED: dict[str, tuple[dict[str, float], Callable[[pd.DataFrame], dict[str, np.ndarray]]]] = {
    "sma_cross": (
        {"fast": 7, "slow": 40},
        lambda c: {"SMA 7": ind.sma(c.close, 7), "SMA 40": ind.sma(c.close, 40)},
    ),
    "ema_cross": (
        {"fast": 5, "slow": 30},
        lambda c: {"EMA 5": ind.ema(c.close, 5), "EMA 30": ind.ema(c.close, 30)},
    ),
    "rsi_reversion": (
        {"window": 10, "oversold": 25, "overbought": 75.5},
        lambda c: {
            oscillator("RSI 10"): ind.rsi(c.close, 10),
            oscillator("oversold 25"): np.full(len(c), 25.0),
            oscillator("overbought 75.5"): np.full(len(c), 75.5),
        },
    ),
    "macd_cross": (
        {"fast": 8, "slow": 21, "signal": 5},
        lambda c: {
            oscillator("MACD 8/21"): ind.macd(c.close, 8, 21, 5)[0],
            oscillator("signal 5"): ind.macd(c.close, 8, 21, 5)[1],
        },
    ),
    "bollinger_reversion": (
        {"window": 15, "num_std": 2.5},
        lambda c: {
            "upper band (+2.5 std)": ind.bollinger(c.close, 15, 2.5)[2],
            "middle band (SMA 15)": ind.bollinger(c.close, 15, 2.5)[1],
            "lower band (-2.5 std)": ind.bollinger(c.close, 15, 2.5)[0],
        },
    ),
    "donchian_breakout": (
        {"entry_window": 30, "exit_window": 12},
        lambda c: {
            "30-bar high (long entry)": _prior(ind.rolling_max(c.high, 30)),
            "12-bar low (long exit)": _prior(ind.rolling_min(c.low, 12)),
            "30-bar low (short entry)": _prior(ind.rolling_min(c.low, 30)),
            "12-bar high (short exit)": _prior(ind.rolling_max(c.high, 12)),
        },
    ),
    "buy_and_hold": ({}, lambda c: {}),
}


# Its overlay is the model's predicted probability: checked in test_ml.py, where training is.
CHECKED_ELSEWHERE = {"ml_predictor"}


def test_every_registered_kind_has_its_overlays_checked_here() -> None:
    assert {kind.name for kind in all_kinds()} - CHECKED_ELSEWHERE == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_kinds_overlays_are_the_indicators_it_trades_on(name: str, candles) -> None:  # type: ignore[no-untyped-def]
    params, expected = EXPECTED[name]
    overlays = get_kind(name).overlays(candles, params)
    wanted = expected(candles)
    assert list(overlays) == list(wanted)
    for line, values in overlays.items():
        assert values.shape == (len(candles),), line
        np.testing.assert_allclose(values, wanted[line], rtol=1e-12, atol=0, err_msg=line)
        assert np.isfinite(values[-1]), line  # past the warm-up, a number


@pytest.mark.parametrize("name", ["sma_cross", "bollinger_reversion", "donchian_breakout"])
def test_crossing_the_overlays_gives_the_positions_the_kind_trades(name: str, candles) -> None:  # type: ignore[no-untyped-def]
    """The lines a chart shows are the ones the signal was taken from, not look-alikes."""
    kind = get_kind(name)
    params, _ = EXPECTED[name]
    lines = list(kind.overlays(candles, params).values())
    close = candles.close.to_numpy()
    positions = kind.target_positions(candles, params)
    if name == "sma_cross":
        fast, slow = lines
        held = positions[np.isfinite(slow) & (positions != 0)]
        assert ((held > 0) == (fast > slow)[np.isfinite(slow) & (positions != 0)]).all()
    elif name == "bollinger_reversion":
        _upper, _middle, lower = lines
        # A long opens on the bar that closes below the lower band.
        entries = np.flatnonzero((positions[1:] == 1) & (positions[:-1] != 1)) + 1
        assert len(entries) and (close[entries] < lower[entries]).all()
    else:
        high_entry = lines[0]
        entries = np.flatnonzero((positions[1:] == 1) & (positions[:-1] != 1)) + 1
        assert len(entries) and (close[entries] > high_entry[entries]).all()


def test_only_oscillators_are_off_the_price_axis(candles) -> None:  # type: ignore[no-untyped-def]
    for name, (params, _) in EXPECTED.items():
        overlays = get_kind(name).overlays(candles, params)
        off_price = {line for line in overlays if line.startswith(OSCILLATOR_PREFIX)}
        assert bool(off_price) == (name in ("rsi_reversion", "macd_cross")), name
        if name not in ("rsi_reversion", "macd_cross"):
            # On the price scale: each line's median lies within the range prices span.
            for values in overlays.values():
                median = np.nanmedian(values)
                assert candles.low.min() <= median <= candles.high.max()


def test_overlays_validate_their_parameters(candles) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParamValidationError):
        get_kind("sma_cross").overlays(candles, {"fast": 50, "slow": 10})
    defaults = get_kind("sma_cross").overlays(candles, {})
    assert list(defaults) == ["SMA 10", "SMA 50"]
