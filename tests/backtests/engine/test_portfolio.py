"""Each rule in backtests.engine.portfolio's docstring, pinned on hand-made candles, and the
account invariants on random portfolios."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtests.engine import (
    BacktestConfig,
    InvalidCandlesError,
    InvalidConfigError,
    run_backtest,
    run_positions,
)
from backtests.engine.metrics import METRIC_DEFINITIONS
from backtests.engine.portfolio import run_portfolio
from backtests.engine.simulate import TRADE_COLUMNS
from strategies.library.base import StrategyRef
from tests.backtests.engine.bars import make_candles, random_walk

NO_FEES = BacktestConfig(fee_rate=0.0, timeframe="1d")
FEES = BacktestConfig(fee_rate=0.01, timeframe="1d")


def flat(price: float, n: int) -> pd.DataFrame:
    return make_candles([price] * n, [price] * n)


def weights_on(candles: pd.DataFrame, **columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame(columns, index=candles.index, dtype=float)


# --- rules 5 and 6: when orders fill ---------------------------------------------------------


def test_weights_decided_at_a_close_fill_at_the_next_open():
    a = make_candles([100, 101, 102, 103, 104, 105], [100.5, 101.5, 102.5, 103.5, 104.5, 105.5])
    result = run_portfolio({"A": a}, weights_on(a, A=[0, 1, 1, 0, 0, 0]), NO_FEES)
    trade = result.trades.iloc[0]
    assert trade.entry_time == a.index[2] and trade.entry_price == pytest.approx(102.0)
    assert trade.exit_time == a.index[4] and trade.exit_price == pytest.approx(104.0)
    assert trade.quantity == pytest.approx(10_000 / 102)
    assert trade.instrument == "A" and trade.exit_reason == "signal"
    assert list(result.rebalances) == [a.index[2], a.index[4]]


def test_nothing_fills_on_the_first_bar():
    a = flat(100.0, 4)
    result = run_portfolio({"A": a}, weights_on(a, A=[1, 1, 1, 1]), NO_FEES)
    assert result.equity.iloc[0] == 10_000.0
    assert result.quantity.A.tolist()[0] == 0.0
    assert result.trades.entry_time.tolist() == [a.index[1]]


# --- rule 4: allocation ---------------------------------------------------------------------


def test_equal_allocation_splits_equity_among_instruments_whose_signal_is_on():
    a = make_candles([100, 100, 120, 120], [100, 110, 120, 125])
    b = make_candles([50, 50, 40, 40], [50, 45, 40, 42])
    signals = weights_on(a, A=[1, 1, 1, 1], B=[0, 1, 1, 1])
    result = run_portfolio({"A": a, "B": b}, signals, NO_FEES, allocation="equal")
    assert result.weights.to_numpy().tolist() == [[1, 0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
    # Bar 1: everything in A. Bar 2: half of the equity at that open in each.
    q_a = 10_000 / 100
    equity = q_a * 120
    assert result.quantity.A.iloc[1] == pytest.approx(q_a)
    assert result.quantity.A.iloc[2] == pytest.approx(0.5 * equity / 120)
    assert result.quantity.B.iloc[2] == pytest.approx(0.5 * equity / 40)


def test_fixed_allocation_multiplies_each_weight_by_the_signal():
    a, b = flat(100.0, 3), flat(50.0, 3)
    signals = weights_on(a, A=[1, 1, 1], B=[0.5, 0.5, 0.5])
    result = run_portfolio(
        {"A": a, "B": b}, signals, NO_FEES, allocation="fixed", weights={"A": 0.3, "B": 0.6}
    )
    assert result.weights.iloc[0].tolist() == pytest.approx([0.3, 0.3])
    assert result.quantity.iloc[1].tolist() == pytest.approx([3_000 / 100, 3_000 / 50])
    assert result.cash.iloc[1] == pytest.approx(4_000)


def test_signal_allocation_keeps_the_strongest_signals_ties_to_the_earlier_instrument():
    candles = {name: flat(100.0, 3) for name in "ABC"}
    signals = weights_on(candles["A"], A=[0.2] * 3, B=[0.6] * 3, C=[0.2] * 3)
    result = run_portfolio(candles, signals, NO_FEES, allocation="signal", max_positions=2)
    # B is strongest; A and C tie, and A comes first. Weights are proportional to the kept.
    assert result.weights.iloc[0].tolist() == pytest.approx([0.25, 0.75, 0.0])
    uncapped = run_portfolio(candles, signals, NO_FEES, allocation="signal")
    assert uncapped.weights.iloc[0].tolist() == pytest.approx([0.2, 0.6, 0.2])


def test_max_positions_also_caps_equal_allocation():
    candles = {name: flat(100.0, 3) for name in "ABC"}
    signals = weights_on(candles["A"], A=[1.0] * 3, B=[1.0] * 3, C=[1.0] * 3)
    result = run_portfolio(candles, signals, NO_FEES, allocation="equal", max_positions=2)
    assert result.weights.iloc[0].tolist() == [0.5, 0.5, 0.0]


def test_a_strategy_kind_gives_each_instrument_its_signal():
    a, b = random_walk(300, seed=1, freq="1D"), random_walk(300, seed=2, freq="1D")
    ref = StrategyRef("sma_cross", {"fast": 5, "slow": 20})
    result = run_portfolio({"A": a, "B": b}, ref, NO_FEES)
    own_a = run_backtest(a, ref, NO_FEES).position.to_numpy()
    own_b = run_backtest(b, ref, NO_FEES).position.to_numpy()
    # A signal on at bar t's close is a position held from bar t + 1.
    on = np.column_stack((own_a[1:], own_b[1:])) > 0
    count = on.sum(axis=1, keepdims=True)
    expected = np.divide(on, count, out=np.zeros(on.shape), where=count > 0)
    assert np.allclose(result.weights.to_numpy()[:-1], expected)


# --- rules 8 to 10: costs, order of execution, cash ------------------------------------------


def test_fills_slip_and_pay_the_fee_rate():
    a = make_candles([100, 101, 102], [100, 101, 102])
    config = BacktestConfig(fee_rate=0.01, slippage_bps=10, timeframe="1d")
    result = run_portfolio({"A": a}, weights_on(a, A=[0.5, 0.5, 0.5]), config)
    units = 0.5 * 10_000 / 101
    price = 101 * 1.001
    fee = 0.01 * units * price
    trade = result.trades.iloc[0]
    assert trade.entry_price == pytest.approx(price)
    assert trade.quantity == pytest.approx(units)
    assert trade.fees == pytest.approx(fee)  # still open: no exit fee
    assert result.cash.iloc[1] == pytest.approx(10_000 - units * price - fee)


def test_a_fill_pays_at_least_the_minimum_fee():
    a = flat(100.0, 3)
    config = BacktestConfig(fee_rate=0.01, fixed_fee=2.0, min_fee=60.0, timeframe="1d")
    result = run_portfolio({"A": a}, weights_on(a, A=[0.5, 0.5, 0.5]), config)
    # 0.01 * 5,000 + 2 = 52 is below the minimum of 60.
    assert result.trades.fees.iloc[0] == pytest.approx(60.0)
    assert result.cash.iloc[1] == pytest.approx(10_000 - 5_000 - 60)


def test_sells_execute_before_buys_and_fund_them():
    a = make_candles([100, 100, 110, 110], [100, 100, 110, 110])
    b = flat(50.0, 4)
    result = run_portfolio({"A": a, "B": b}, weights_on(a, A=[1, 0, 0, 0], B=[0, 1, 1, 1]), FEES)
    # Bar 1: all in A, the buy cut to what 10,000 pays for with its fee.
    q_a = 10_000 / (100 * 1.01)
    assert result.quantity.A.iloc[1] == pytest.approx(q_a)
    # Bar 2: selling A first raises the cash that buys B (cut again by the fee).
    proceeds = q_a * 110 * (1 - 0.01)
    assert result.quantity.A.iloc[2] == 0.0
    assert result.quantity.B.iloc[2] == pytest.approx(proceeds / (50 * 1.01))
    assert result.cash.iloc[2] == 0.0


def test_buys_go_smallest_first_and_the_one_that_runs_out_of_cash_is_cut():
    a, b = flat(100.0, 3), flat(50.0, 3)
    result = run_portfolio({"A": a, "B": b}, weights_on(a, A=[0.7] * 3, B=[0.3] * 3), FEES)
    # B's order (3,000) is smaller than A's (7,000): B fills whole, then A gets the rest.
    q_b = 3_000 / 50
    left = 10_000 - 3_000 * 1.01
    assert result.quantity.B.iloc[1] == pytest.approx(q_b)
    assert result.quantity.A.iloc[1] == pytest.approx(left / (100 * 1.01))
    assert result.cash.iloc[1] == 0.0


def test_equal_orders_go_in_instrument_order():
    a, b = flat(100.0, 3), flat(100.0, 3)
    result = run_portfolio({"A": a, "B": b}, weights_on(a, A=[0.5] * 3, B=[0.5] * 3), FEES)
    assert result.quantity.A.iloc[1] == pytest.approx(50.0)
    assert result.quantity.B.iloc[1] == pytest.approx((10_000 - 5_000 * 1.01) / (100 * 1.01))


def test_a_sale_whose_fee_exceeds_the_account_pays_only_what_there_is():
    a = make_candles([100, 100, 100, 0.5], [100, 100, 100, 0.5])
    config = BacktestConfig(fee_rate=0.0, min_fee=60.0, timeframe="1d")
    result = run_portfolio({"A": a}, weights_on(a, A=[1, 1, 0, 0]), config)
    units = (10_000 - 60) / 100  # the most that fits with the minimum fee
    assert result.quantity.A.iloc[1] == pytest.approx(units)
    proceeds = units * 0.5  # below the 60 fee: the fee takes what there is
    assert result.trades.fees.iloc[0] == pytest.approx(60 + proceeds)
    assert result.equity.iloc[-1] == 0.0
    assert (result.equity >= 0).all()


# --- rule 2: alignment ----------------------------------------------------------------------


def test_an_instrument_without_a_bar_is_marked_at_its_last_close_and_its_order_waits():
    a = make_candles([100, 100, 110, 120, 120, 120], [100, 100, 110, 120, 120, 120])
    b_full = make_candles([50, 50, 55, 60, 60, 60], [50, 50, 55, 60, 60, 60])
    b = b_full.drop(b_full.index[2])
    w = weights_on(a, A=[0.5] + [0.25] * 5, B=[0.5] + [0.75] * 5)
    result = run_portfolio({"A": a, "B": b}, w, NO_FEES)
    # Bar 1: half each.
    assert result.quantity.iloc[1].tolist() == pytest.approx([50.0, 100.0])
    # Bar 2: B has no bar; it is marked at its last close (50), A alone rebalances.
    equity_2 = 50 * 110 + 100 * 50
    q_a = 0.25 * equity_2 / 110
    cash_2 = (50 - q_a) * 110
    assert result.quantity.A.iloc[2] == pytest.approx(q_a)
    assert result.quantity.B.iloc[2] == 100.0
    assert result.equity.iloc[2] == pytest.approx(cash_2 + q_a * 110 + 100 * 50)
    # Bar 3: B's order fills at its next bar, sized from the equity at that open.
    equity_3 = cash_2 + q_a * 120 + 100 * 60
    q_b = 0.75 * equity_3 / 60
    assert (q_b - 100) * 60 <= cash_2  # (no cut in this case)
    assert result.quantity.B.iloc[3] == pytest.approx(q_b)
    assert result.quantity.A.iloc[3] == pytest.approx(q_a)
    assert list(result.rebalances) == list(a.index[1:4])
    assert result.missing_bars.to_dict() == {"A": 0, "B": 1}
    assert result.metrics["per_instrument"][1]["missing_bars"] == 1


def test_an_instrument_cannot_trade_before_its_first_bar():
    a = flat(100.0, 6)
    b = flat(50.0, 6).iloc[3:]
    result = run_portfolio({"A": a, "B": b}, weights_on(a, A=[0.5] * 6, B=[0.5] * 6), NO_FEES)
    assert result.quantity.A.iloc[1] == pytest.approx(50.0)
    assert result.quantity.B.iloc[:3].tolist() == [0.0, 0.0, 0.0]
    assert result.quantity.B.iloc[3] == pytest.approx(0.5 * 10_000 / 50)
    b_trade = result.trades[result.trades.instrument == "B"].iloc[0]
    assert b_trade.entry_time == a.index[3]
    assert result.missing_bars.B == 0


# --- rule 6: schedules and drift ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rebalance", "freq", "bars", "expected"),
    [
        ("1d", "1h", 60, [24, 48]),
        ("1w", "1D", 20, [7, 14]),  # 2024-01-01 is a Monday
        ("1M", "1D", 70, [31, 60]),  # February 2024 has 29 days
    ],
)
def test_a_schedule_rebalances_at_the_first_bar_of_each_period(rebalance, freq, bars, expected):
    rising = 100 * 1.01 ** np.arange(bars)
    a = make_candles(rising, rising, freq=freq)
    b = make_candles([50.0] * bars, [50.0] * bars, freq=freq)
    w = weights_on(a, A=[0.5] * bars, B=[0.5] * bars)
    config = BacktestConfig(fee_rate=0.0, timeframe=freq.lower())
    result = run_portfolio({"A": a, "B": b}, w, config, rebalance=rebalance)
    assert list(result.rebalances) == [a.index[i] for i in expected]
    first, second = expected
    assert result.quantity.A.iloc[first] == pytest.approx(0.5 * 10_000 / rising[first])
    before = second - 1
    q_a, q_b = result.quantity.A.iloc[before], result.quantity.B.iloc[before]
    equity = result.cash.iloc[before] + q_a * rising[second] + q_b * 50.0  # at that open
    assert result.quantity.A.iloc[second] == pytest.approx(0.5 * equity / rising[second])
    # Rebalancing on change only would have traded once.
    assert len(run_portfolio({"A": a, "B": b}, w, config).rebalances) == 1


@pytest.mark.parametrize(("threshold", "drifts"), [(0.1, True), (0.2, False)])
def test_drift_beyond_the_threshold_rebalances_at_the_next_open(threshold, drifts):
    opens = [100, 100, 100, 110, 130, 160]
    closes = [100, 100, 110, 130, 160, 160]
    a = make_candles(opens, closes)
    b = flat(100.0, 6)
    w = weights_on(a, A=[0.5] * 6, B=[0.5] * 6)
    result = run_portfolio({"A": a, "B": b}, w, NO_FEES, drift_threshold=threshold)
    # 50 units each from bar 1; A's weight at each close is 50 * close / equity.
    weight = [50 * c / (50 * c + 50 * 100) for c in closes]
    first = next((t for t in range(1, 6) if abs(weight[t] - 0.5) > threshold), None)
    assert (first is not None) == drifts
    if first is None:
        assert list(result.rebalances) == [a.index[1]]
        return
    assert first == 4
    assert list(result.rebalances) == [a.index[1], a.index[first + 1]]
    equity = 50 * 160 + 50 * 100
    assert result.quantity.A.iloc[5] == pytest.approx(0.5 * equity / 160)
    assert result.quantity.B.iloc[5] == pytest.approx(0.5 * equity / 100)


# --- rules 11 to 14: marking, trades, attribution, metrics -------------------------------------


def test_contribution_exposure_and_turnover_follow_their_definitions():
    a = make_candles([100, 100, 100, 100], [100, 100, 120, 130])
    b = make_candles([50, 50, 50, 50], [50, 50, 40, 45])
    result = run_portfolio({"A": a, "B": b}, weights_on(a, A=[0.5] * 4, B=[0.5] * 4), NO_FEES)
    q_a, q_b = 50.0, 100.0
    assert result.contribution.tolist() == pytest.approx([q_a * 30, q_b * -5])
    assert result.contribution.sum() == pytest.approx(result.equity.iloc[-1] - 10_000)
    equity = np.array([10_000, 10_000, q_a * 120 + q_b * 40, q_a * 130 + q_b * 45])
    assert result.equity.tolist() == pytest.approx(equity.tolist())
    exposure_a = np.array([0, q_a * 100, q_a * 120, q_a * 130]) / equity
    assert result.exposure.A.tolist() == pytest.approx(exposure_a.tolist())
    assert result.mean_exposure["A"] == pytest.approx(exposure_a.mean())
    assert result.turnover["A"] == pytest.approx(5_000 / equity.mean())
    rows = {row["instrument"]: row for row in result.metrics["per_instrument"]}
    assert rows["B"]["contribution"] == pytest.approx(-500)
    assert rows["A"]["exposure_pct"] == pytest.approx(exposure_a.mean() * 100)


def test_trades_carry_the_instrument_and_every_trade_column():
    a, b = flat(100.0, 5), flat(50.0, 5)
    w = weights_on(a, A=[0.5, 0.5, 0, 0, 0], B=[0.5] * 5)
    result = run_portfolio({"A": a, "B": b}, w, NO_FEES)
    assert list(result.trades.columns) == [*TRADE_COLUMNS, "instrument"]
    assert result.trades.instrument.tolist() == ["A", "B"]
    assert result.trades.is_open.tolist() == [False, True]
    assert result.trades.exit_reason.tolist() == ["signal", "end"]


def test_a_resized_trade_reports_weighted_prices_and_its_pnl():
    a = make_candles([100, 100, 200, 100, 100], [100, 100, 200, 100, 100])
    b = flat(100.0, 5)
    # A: 0.5 at bar 1 (50 units at 100), 0.25 at bar 2, flat at bar 3.
    w = weights_on(a, A=[0.5, 0.25, 0, 0, 0], B=[0.5, 0.5, 0.5, 0.5, 0.5])
    result = run_portfolio({"A": a, "B": b}, w, NO_FEES)
    equity_2 = 50 * 200 + 50 * 100
    kept = 0.25 * equity_2 / 200
    sold_2 = 50 - kept
    trade = result.trades[result.trades.instrument == "A"].iloc[0]
    assert trade.quantity == pytest.approx(50)
    assert trade.entry_price == pytest.approx(100)
    assert trade.exit_price == pytest.approx((sold_2 * 200 + kept * 100) / 50)
    assert trade.pnl == pytest.approx(sold_2 * 100)
    assert trade.exit_time == a.index[3]


def test_metrics_cover_every_definition_and_are_json_safe():
    a, b = random_walk(500, seed=3, freq="1D"), random_walk(500, seed=4, freq="1D")
    ref = StrategyRef("sma_cross", {"fast": 5, "slow": 20})
    result = run_portfolio({"A": a, "B": b}, ref, FEES, allocation="signal", max_positions=1)
    assert set(METRIC_DEFINITIONS) <= set(result.metrics)
    assert result.metrics["num_trades"] == int((~result.trades.is_open).sum())
    assert [row["instrument"] for row in result.metrics["per_instrument"]] == ["A", "B"]
    json.dumps(result.metrics, allow_nan=False)


# --- one instrument at weight 1 is the single-instrument engine -------------------------------


@st.composite
def single_markets(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    """Bars with moves and gaps up to 5%, and targets of 0, 1 or NaN."""
    n = draw(st.integers(2, 40))
    moves = draw(st.lists(st.floats(-0.05, 0.05), min_size=n, max_size=n))
    gaps = draw(st.lists(st.floats(-0.03, 0.03), min_size=n, max_size=n))
    close = 100.0 * np.exp(np.cumsum(moves))
    opens = np.r_[100.0, close[:-1]] * np.exp(gaps)
    targets = draw(st.lists(st.sampled_from([0.0, 1.0, math.nan]), min_size=n, max_size=n))
    return make_candles(opens, close), np.array(targets)


@st.composite
def cost_configs(draw: st.DrawFn) -> BacktestConfig:
    return BacktestConfig(
        fee_rate=draw(st.sampled_from([0.0, 0.001, 0.01])),
        slippage_bps=draw(st.sampled_from([0.0, 10.0, 200.0])),
        fixed_fee=draw(st.sampled_from([0.0, 1.0])),
        min_fee=draw(st.sampled_from([0.0, 5.0])),
        timeframe="1d",
    )


@settings(max_examples=200, deadline=None)
@given(market=single_markets(), config=cost_configs())
def test_one_instrument_at_weight_one_is_the_single_instrument_run(market, config):
    candles, targets = market
    single = run_positions(candles, targets, config)
    weights = pd.DataFrame({"A": targets}, index=candles.index)
    result = run_portfolio({"A": candles}, weights, config)
    assert np.allclose(result.equity.to_numpy(), single.equity.to_numpy(), rtol=1e-9, atol=0)
    ours, theirs = result.trades.drop(columns="instrument"), single.trades
    assert len(ours) == len(theirs)
    for column in ("entry_time", "exit_time", "direction", "exit_reason", "is_open"):
        assert ours[column].tolist() == theirs[column].tolist()
    for column in ("entry_price", "exit_price", "quantity", "pnl", "fees"):
        assert np.allclose(ours[column], theirs[column], rtol=1e-9, atol=1e-9)


def test_one_instrument_under_a_strategy_kind_is_run_backtest():
    candles = random_walk(2_000, seed=5)
    ref = StrategyRef("sma_cross", {"fast": 10, "slow": 50})
    config = BacktestConfig(fee_rate=0.001, slippage_bps=5, timeframe="1m")
    single = run_backtest(candles, ref, config)
    result = run_portfolio({"A": candles}, ref, config, allocation="fixed", weights={"A": 1.0})
    assert np.allclose(result.equity.to_numpy(), single.equity.to_numpy(), rtol=1e-9, atol=0)
    # With one instrument the basket is the asset: every metric agrees.
    for key in METRIC_DEFINITIONS:
        mine, theirs = result.metrics[key], single.metrics[key]
        if isinstance(theirs, float):
            assert mine == pytest.approx(theirs, rel=1e-6, abs=1e-9), key
        else:
            assert mine == theirs, key


# --- invariants on random portfolios ---------------------------------------------------------


@st.composite
def portfolios(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    """Up to three instruments with large moves, starting late or missing a bar, and random
    weights."""
    m = draw(st.integers(1, 3))
    n = draw(st.integers(2, 30))
    candles = {}
    for i in range(m):
        moves = draw(st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n))
        gaps = draw(st.lists(st.floats(-0.5, 0.5), min_size=n, max_size=n))
        close = 100.0 * np.exp(np.cumsum(moves))
        opens = np.r_[100.0, close[:-1]] * np.exp(gaps)
        frame = make_candles(opens, close).iloc[draw(st.integers(0, n - 1)) :]
        if len(frame) >= 4 and draw(st.booleans()):
            # One bar missing keeps the typical spacing at a day.
            frame = frame.drop(frame.index[draw(st.integers(1, len(frame) - 2))])
        candles[f"I{i}"] = frame
    index = functools.reduce(pd.Index.union, [c.index for c in candles.values()])
    m = len(candles)
    # No dust weights: a trade of 1e-300 units has a pnl_pct no metric can stand behind.
    weight = st.one_of(st.just(0.0), st.floats(0.001, 1.0))
    cells = len(index) * m
    raw = np.array(draw(st.lists(weight, min_size=cells, max_size=cells))).reshape(len(index), m)
    gross = raw.sum(axis=1, keepdims=True)
    raw = np.where(gross > 1.0, raw / np.maximum(gross, 1e-300), raw)
    raw[raw.sum(axis=1) > 1.0] = 0.0  # a rounding excess
    return candles, pd.DataFrame(raw, index=index, columns=list(candles))


@st.composite
def any_costs(draw: st.DrawFn) -> BacktestConfig:
    return BacktestConfig(
        fee_rate=draw(st.sampled_from([0.0, 0.001, 0.01])),
        slippage_bps=draw(st.sampled_from([0.0, 10.0, 200.0])),
        fixed_fee=draw(st.sampled_from([0.0, 1.0, 25.0])),
        min_fee=draw(st.sampled_from([0.0, 5.0, 60.0])),
        timeframe="1d",
    )


@settings(max_examples=200, deadline=None)
@given(
    portfolio=portfolios(),
    config=any_costs(),
    rebalance=st.sampled_from(["change", "1w"]),
    drift=st.sampled_from([None, 0.05]),
)
def test_equity_is_cash_plus_holdings_at_every_close_and_never_negative(
    portfolio, config, rebalance, drift
):
    candles, weights = portfolio
    result = run_portfolio(candles, weights, config, rebalance=rebalance, drift_threshold=drift)
    index = weights.index
    # Each instrument at its last close; before its first bar it holds nothing.
    close = pd.DataFrame({k: c.close.reindex(index).ffill() for k, c in candles.items()})
    held = result.quantity.to_numpy()
    assert (held[close.isna().to_numpy()] == 0).all()
    marked = result.cash.to_numpy() + (held * close.fillna(0.0).to_numpy()).sum(axis=1)
    equity = result.equity.to_numpy()
    assert np.allclose(marked, equity, rtol=1e-9, atol=1e-9)
    assert (equity >= 0).all() and (result.cash >= 0).all() and (held >= 0).all()
    profit = equity[-1] - config.initial_capital
    assert math.isclose(result.contribution.sum(), profit, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(result.trades.pnl.sum(), profit, rel_tol=1e-9, abs_tol=1e-6)
    json.dumps(result.metrics, allow_nan=False)


def test_long_spans_between_rebalances_mark_the_same_equity_and_exposure():
    # Few rebalances over many bars take the span-by-span path; check it from the frames.
    candles = {"A": random_walk(3_000, seed=6), "B": random_walk(3_000, seed=7)}
    index = candles["A"].index
    step = np.arange(3_000) // 500
    w = pd.DataFrame({"A": 0.2 + 0.1 * (step % 2), "B": 0.5}, index=index)
    result = run_portfolio(candles, w, BacktestConfig(fee_rate=0.001, timeframe="1m"))
    assert len(result.rebalances) == 6
    close = pd.DataFrame({k: c.close for k, c in candles.items()})
    value = result.quantity * close
    equity = result.cash + value.sum(axis=1)
    assert np.allclose(result.equity.to_numpy(), equity.to_numpy(), rtol=1e-12)
    exposure = value.div(equity, axis=0).mean()
    assert np.allclose(result.mean_exposure.to_numpy(), exposure.to_numpy(), rtol=1e-12)


def test_bad_candles_name_their_instrument():
    broken = flat(100.0, 4)
    broken.loc[broken.index[2], "close"] = float("nan")
    with pytest.raises(InvalidCandlesError, match=r"^B: close is NaN"):
        run_portfolio({"A": flat(100.0, 4), "B": broken}, weights_on(broken), NO_FEES)


# --- rule 15: bad configurations -------------------------------------------------------------


def two() -> dict[str, pd.DataFrame]:
    return {"A": flat(100.0, 4), "B": flat(50.0, 4)}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: run_portfolio({}, pd.DataFrame(), NO_FEES), "candles"),
        (
            lambda: run_portfolio(
                two(),
                weights_on(flat(1, 4), A=[1] * 4),
                NO_FEES,
                allocation="fixed",
                weights={"C": 0.5},
            ),
            "weights",
        ),
        (
            lambda: run_portfolio(
                two(),
                weights_on(flat(1, 4), A=[1] * 4),
                NO_FEES,
                allocation="fixed",
                weights={"A": 0.7, "B": 0.6},
            ),
            "weights",
        ),
        (
            lambda: run_portfolio(
                two(),
                weights_on(flat(1, 4), A=[1] * 4),
                NO_FEES,
                allocation="fixed",
                weights={"A": -0.1},
            ),
            "weights",
        ),
        (lambda: run_portfolio(two(), weights_on(flat(1, 4), C=[0.5] * 4), NO_FEES), "targets"),
        (lambda: run_portfolio(two(), weights_on(flat(1, 4), A=[-0.5] * 4), NO_FEES), "targets"),
        (
            lambda: run_portfolio(two(), weights_on(flat(1, 4), A=[0.6] * 4, B=[0.5] * 4), NO_FEES),
            "targets",
        ),
        (
            lambda: run_portfolio(
                {"A": flat(100.0, 4), "B": make_candles([1] * 4, [1] * 4, freq="1h")},
                StrategyRef("sma_cross", {"fast": 1, "slow": 2}),
                BacktestConfig(),
            ),
            "timeframe",
        ),
        (
            lambda: run_portfolio(two(), weights_on(flat(1, 4)), NO_FEES, allocation="momentum"),
            "allocation",
        ),
        (
            lambda: run_portfolio(
                two(), weights_on(flat(1, 4)), NO_FEES, allocation="signal", max_positions=0
            ),
            "max_positions",
        ),
        (
            lambda: run_portfolio(two(), weights_on(flat(1, 4)), NO_FEES, rebalance="2d"),
            "rebalance",
        ),
        (
            lambda: run_portfolio(two(), weights_on(flat(1, 4)), NO_FEES, drift_threshold=0),
            "drift_threshold",
        ),
        (
            lambda: run_portfolio(
                two(), weights_on(flat(1, 4)), BacktestConfig(allow_short=True, timeframe="1d")
            ),
            "allow_short",
        ),
        (
            lambda: run_portfolio(
                two(), weights_on(flat(1, 4)), BacktestConfig(stop_loss_pct=5.0, timeframe="1d")
            ),
            "stop_loss_pct",
        ),
    ],
)
def test_bad_configurations_name_the_offending_field(call, field):
    with pytest.raises(InvalidConfigError) as caught:
        call()
    assert field in caught.value.errors
