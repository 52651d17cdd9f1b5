"""Random markets, targets and configs: the account invariants hold on every bar, and both
simulation paths agree with the bar-by-bar reference."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backtests.engine import BacktestConfig, run_positions
from backtests.engine.config import SIZINGS
from tests.backtests.engine.bars import make_candles
from tests.backtests.engine.reference import reference_run


@st.composite
def markets(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    """Bars with log moves up to +-1.2 and gaps up to +-0.8 (enough to liquidate a short,
    or to gap through its liquidation price) and wicks of up to 50%."""
    n = draw(st.integers(2, 40))
    moves = draw(st.lists(st.floats(-1.2, 1.2), min_size=n, max_size=n))
    gaps = draw(st.lists(st.floats(-0.8, 0.8), min_size=n, max_size=n))
    wicks = draw(st.lists(st.floats(0.0, 0.5), min_size=2 * n, max_size=2 * n))
    close = 100.0 * np.exp(np.cumsum(moves))
    opens = np.r_[100.0, close[:-1]] * np.exp(gaps)
    highs = np.maximum(opens, close) * (1 + np.array(wicks[:n]))
    lows = np.minimum(opens, close) / (1 + np.array(wicks[n:]))
    # Half the time whole targets only, which the vectorised path can take.
    values = [-1.0, 0.0, 1.0, math.nan, *draw(st.sampled_from([[], [-0.5, 0.25]]))]
    targets = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    return make_candles(opens, close, highs, lows), np.array(targets)


@st.composite
def configs(draw: st.DrawFn, rules: bool = False) -> BacktestConfig:
    """Half the time a config the vectorised path takes (fraction sizing, fees as a rate);
    with `rules`, always one using the entry orders, exits and costs of rules 8, 14, 15."""
    plain = not rules and draw(st.booleans())
    sizing = "fraction" if plain else draw(st.sampled_from(SIZINGS))
    stop = draw(st.one_of(st.none(), st.floats(0.5, 60.0)))
    if sizing == "risk" and stop is None:
        stop = 5.0
    leverage = draw(st.sampled_from([1.0, 1.0, 3.0]))
    sizes = {
        "fraction": {"size_fraction": draw(st.floats(0.05, leverage))},
        "fixed_quantity": {"fixed_quantity": draw(st.floats(0.01, 500.0))},
        "fixed_notional": {"fixed_notional": draw(st.floats(10.0, 30_000.0))},
        "risk": {"risk_pct": draw(st.floats(0.1, 100.0))},
    }[sizing]
    # Half the time the order and exit rules of rules 14 and 15, which take the order path.
    orders: dict = {}  # type: ignore[type-arg]
    if rules or draw(st.booleans()):
        entry = draw(st.sampled_from(["market", "close", "limit", "stop"]))
        orders = {
            "entry_order": entry,
            "trailing_stop_pct": draw(st.one_of(st.none(), st.floats(0.5, 60.0))),
            "atr_stop_multiple": draw(st.one_of(st.none(), st.floats(0.1, 5.0))),
            "atr_period": draw(st.integers(1, 5)),
            "time_stop_bars": draw(st.one_of(st.none(), st.integers(1, 6))),
        }
        if entry in ("limit", "stop"):
            orders["entry_offset_pct"] = draw(st.floats(0.0, 30.0))
            orders["entry_valid_bars"] = draw(st.integers(1, 4))
    return BacktestConfig(
        spread_bps=draw(st.sampled_from([0.0, 30.0])),
        fee_rate=draw(st.sampled_from([0.0, 0.001, 0.01])),
        fixed_fee=0.0 if plain else draw(st.sampled_from([0.0, 1.0, 25.0])),
        min_fee=0.0 if plain else draw(st.sampled_from([0.0, 5.0, 60.0])),
        slippage_bps=draw(st.sampled_from([0.0, 10.0, 200.0])),
        allow_short=draw(st.booleans()),
        stop_loss_pct=stop,
        take_profit_pct=draw(st.one_of(st.none(), st.floats(0.5, 80.0))),
        quantity_step=None if plain else draw(st.sampled_from([None, 0.001, 1.0])),
        min_notional=0.0 if plain else draw(st.sampled_from([0.0, 500.0])),
        timeframe="1d",
        sizing=sizing,
        max_leverage=leverage,
        maintenance_margin_pct=0.0 if plain else draw(st.sampled_from([0.0, 5.0, 30.0])),
        borrow_rate_pct=0.0 if plain else draw(st.sampled_from([0.0, 50.0, 1_000.0])),
        **sizes,
        **orders,
    )


def assert_flat_equity_is_what_the_closed_trades_made(candles, result, config) -> None:  # type: ignore[no-untyped-def]
    """At the close of a bar where a round trip ended and no trade is held, the equity is
    the capital plus what every round trip closed so far made: the trades table against
    the equity curve, which the engine builds apart (cash and quantity spans)."""
    trades = result.trades
    entry = candles.index.get_indexer(trades.entry_time)
    exit_ = candles.index.get_indexer(trades.exit_time)
    is_open = trades.is_open.to_numpy()
    pnl = trades.pnl.to_numpy()
    equity = result.equity.to_numpy()
    for bar in sorted(set(exit_[~is_open])):
        held = (entry <= bar) & (is_open | (exit_ > bar))
        if held.any():
            continue
        made = pnl[~is_open & (exit_ <= bar)].sum()
        assert math.isclose(
            equity[bar], config.initial_capital + made, rel_tol=1e-9, abs_tol=1e-6
        ), bar


@settings(max_examples=300, deadline=None)
@given(market=markets(), config=configs())
def test_equity_is_never_negative_and_flat_equity_is_what_the_trades_made(market, config):
    candles, targets = market
    result = run_positions(candles, targets, config)
    equity = result.equity.to_numpy()
    assert (equity >= 0).all()
    assert_flat_equity_is_what_the_closed_trades_made(candles, result, config)
    assert np.array_equal(np.sign(result.quantity.to_numpy()), result.position.to_numpy())
    assert result.drawdown.min() >= -1.0
    # What the round trips made is what the account made.
    assert math.isclose(
        result.trades.pnl.sum(), equity[-1] - config.initial_capital, rel_tol=1e-9, abs_tol=1e-6
    )
    json.dumps(result.metrics, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(market=markets(), config=configs())
def test_the_engine_agrees_with_the_bar_by_bar_reference(market, config):
    candles, targets = market
    result = run_positions(candles, targets, config)
    expected = reference_run(candles, targets, config)
    assert np.allclose(result.equity.to_numpy(), expected.equity, rtol=1e-9, atol=1e-6)
    closed = result.trades[~result.trades.is_open]
    assert closed.exit_reason.tolist() == [why for why, _ in expected.exits]
    assert result.metrics["orders_skipped"] == expected.skipped


@settings(max_examples=300, deadline=None)
@given(market=markets(), config=configs(rules=True))
def test_entry_orders_exits_leverage_and_borrow_agree_with_the_reference(market, config):
    candles, targets = market
    result = run_positions(candles, targets, config)
    expected = reference_run(candles, targets, config)
    equity = result.equity.to_numpy()
    assert (equity >= 0).all()
    assert_flat_equity_is_what_the_closed_trades_made(candles, result, config)
    assert np.allclose(equity, expected.equity, rtol=1e-9, atol=1e-6)
    closed = result.trades[~result.trades.is_open]
    assert closed.exit_reason.tolist() == [why for why, _ in expected.exits]
    assert math.isclose(
        result.trades.pnl.sum(), equity[-1] - config.initial_capital, rel_tol=1e-9, abs_tol=1e-6
    )


@settings(max_examples=100, deadline=None)
@given(market=markets(), short=st.booleans(), fraction=st.floats(0.05, 1.0))
def test_whole_targets_under_fraction_sizing_take_the_vectorised_path_to_the_same_result(
    market, short, fraction
):
    # The same run through the order-by-order path: a minimum notional nothing is below.
    candles, targets = market
    whole = np.sign(targets)
    fast = BacktestConfig(allow_short=short, size_fraction=fraction, timeframe="1d")
    general = BacktestConfig(
        allow_short=short, size_fraction=fraction, timeframe="1d", min_notional=1e-300
    )
    a = run_positions(candles, whole, fast)
    b = run_positions(candles, whole, general)
    assert np.allclose(a.equity.to_numpy(), b.equity.to_numpy(), rtol=1e-9, atol=1e-6)
    assert a.trades.exit_reason.tolist() == b.trades.exit_reason.tolist()
    assert a.position.tolist() == b.position.tolist()
