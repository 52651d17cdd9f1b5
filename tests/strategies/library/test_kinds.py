"""The registered strategy kinds and the target positions each one emits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies.library import indicators as ind
from strategies.library.registry import UnknownStrategyKind, all_kinds, get_kind, kind_choices

EXPECTED_KINDS = {
    "sma_cross",
    "ema_cross",
    "rsi_reversion",
    "macd_cross",
    "bollinger_reversion",
    "donchian_breakout",
    "buy_and_hold",
}


def candles_from_close(close: np.ndarray, spread: float = 0.001) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return candles_from_close(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 2_000))))


def test_registry_holds_the_built_in_kinds():
    assert {kind.name for kind in all_kinds()} >= EXPECTED_KINDS
    assert ("sma_cross", "SMA crossover") in kind_choices()


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(UnknownStrategyKind, match="sma_cross"):
        get_kind("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_every_kind_emits_one_position_in_minus_one_zero_one_per_bar(name, walk):
    kind = get_kind(name)
    positions = kind.target_positions(walk, {})
    assert positions.shape == (len(walk),)
    assert set(np.unique(positions)) <= {-1.0, 0.0, 1.0}
    if not kind.allows_short:
        assert (positions >= 0).all()
    describe = kind.describe()
    assert describe["name"] == name and describe["label"] and describe["description"]


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_positions_do_not_look_ahead(name, walk):
    # Position at bar t may depend only on bars <= t: truncating the future changes nothing.
    kind = get_kind(name)
    full = kind.target_positions(walk, {})
    cut = 1_200
    assert np.array_equal(kind.target_positions(walk.iloc[:cut], {}), full[:cut])


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_nothing_changes_before_the_warmup_bar(name, walk):
    kind = get_kind(name)
    params = kind.validate({})
    positions = kind.target_positions(walk, params)
    warmup = kind.warmup_bars(params)
    assert (positions[:warmup] == 0).all() or name == "buy_and_hold"
    assert kind.min_bars(params) == warmup + 2


def test_sma_cross_holds_the_side_of_the_last_cross_and_is_flat_before_the_first():
    # Falls, rises, falls again: fast(2) vs slow(4) crosses up then down.
    close = np.array([10, 9, 8, 7, 6, 7, 9, 11, 13, 12, 10, 8, 6, 5], dtype=float)
    positions = get_kind("sma_cross").target_positions(
        candles_from_close(close), {"fast": 2, "slow": 4}
    )
    fast, slow = ind.sma(close, 2), ind.sma(close, 4)
    first_up = int(np.argmax(fast > slow))
    first_down_after = first_up + int(np.argmax(fast[first_up:] < slow[first_up:]))
    assert (positions[:first_up] == 0).all()  # already below at warm-up: no cross yet
    assert (positions[first_up:first_down_after] == 1).all()
    assert (positions[first_down_after:] == -1).all()


def test_a_tie_is_not_a_cross():
    from strategies.library.signals import cross_positions

    fast = np.array([np.nan, 1, 1, 2, 2, 2, 3, 2, 2], dtype=float)
    slow = np.array([np.nan, 2, 2, 1, 2, 2, 2, 2, 3], dtype=float)
    out = cross_positions(fast, slow)
    # below, cross up at 3, tie keeps long, above, tie keeps long, cross down at 8.
    assert out.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, -1]


def test_rsi_reversion_buys_when_oversold_and_exits_when_overbought():
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 600)))
    candles = candles_from_close(close)
    params = {"window": 14, "oversold": 30, "overbought": 70}
    positions = get_kind("rsi_reversion").target_positions(candles, params)
    rsi = ind.rsi(close, 14)
    state = 0.0
    for t in range(len(close)):
        if rsi[t] < 30:
            state = 1.0
        elif rsi[t] > 70:
            state = -1.0
        assert positions[t] == state, t


def test_bollinger_reversion_exits_at_the_middle_band():
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 800)))
    params = {"window": 20, "num_std": 2.0}
    positions = get_kind("bollinger_reversion").target_positions(candles_from_close(close), params)
    lower, middle, upper = ind.bollinger(close, 20, 2.0)
    state = 0.0
    for t in range(len(close)):
        if close[t] < lower[t]:
            state = 1.0
        elif close[t] > upper[t]:
            state = -1.0
        elif (state == 1.0 and close[t] >= middle[t]) or (state == -1.0 and close[t] <= middle[t]):
            state = 0.0
        assert positions[t] == state, t
    assert (positions == 1).any() and (positions == -1).any()


def test_donchian_breakout_uses_the_channel_of_previous_bars():
    rng = np.random.default_rng(9)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 800)))
    candles = candles_from_close(close)
    params = {"entry_window": 20, "exit_window": 10}
    positions = get_kind("donchian_breakout").target_positions(candles, params)
    high, low = candles.high.to_numpy(), candles.low.to_numpy()
    state = 0.0
    for t in range(20, len(close)):
        if close[t] > high[t - 20 : t].max():
            state = 1.0
        elif close[t] < low[t - 20 : t].min():
            state = -1.0
        elif state == 1.0 and close[t] < low[t - 10 : t].min():
            state = 0.0  # long exit: below the exit channel
        elif state == -1.0 and close[t] > high[t - 10 : t].max():
            state = 0.0  # short exit: above the exit channel
        assert positions[t] == state, t
    assert (positions == 1).any() and (positions == -1).any()


def test_macd_cross_follows_the_signal_line():
    rng = np.random.default_rng(13)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    positions = get_kind("macd_cross").target_positions(candles_from_close(close), {})
    line, signal, _ = ind.macd(close, 12, 26, 9)
    first = int(np.flatnonzero(positions != 0)[0])
    side = np.sign(line - signal)[first:]
    held = positions[first:]
    # After the first cross the position is the side of the line (ties keep the side).
    assert np.array_equal(side[side != 0], held[side != 0])


def test_buy_and_hold_is_always_long(walk):
    assert (get_kind("buy_and_hold").target_positions(walk, {}) == 1).all()
