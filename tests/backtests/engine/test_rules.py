"""Each execution rule in backtests.engine's docstring, pinned on hand-made candles."""

from __future__ import annotations

import numpy as np
import pytest

from backtests.engine import BacktestConfig, run_positions
from tests.backtests.engine.bars import make_candles

NO_FEES = BacktestConfig(fee_rate=0.0, timeframe="1d")

# Six daily bars with distinct opens, so a fill price tells which bar filled it.
OPENS = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
CLOSES = [100.5, 101.5, 102.5, 103.5, 104.5, 105.5]


def test_a_signal_on_a_close_fills_at_the_next_open():
    candles = make_candles(OPENS, CLOSES)
    result = run_positions(candles, [0, 1, 1, 0, 0, 0], NO_FEES)
    trade = result.trades.iloc[0]
    assert trade.entry_time == candles.index[2] and trade.entry_price == 102.0
    assert trade.exit_time == candles.index[4] and trade.exit_price == 104.0
    assert trade.exit_reason == "signal" and not trade.is_open
    assert result.position.tolist() == [0, 0, 1, 1, 0, 0]


def test_nothing_fills_on_the_first_bar():
    result = run_positions(make_candles(OPENS, CLOSES), [1] * 6, NO_FEES)
    assert result.trades.iloc[0].entry_time == make_candles(OPENS, CLOSES).index[1]
    assert result.equity.iloc[0] == 10_000.0


def test_slippage_moves_fills_against_the_trader():
    config = BacktestConfig(fee_rate=0.0, slippage_bps=10, allow_short=True, timeframe="1d")
    long_trade = run_positions(make_candles(OPENS, CLOSES), [1, 0, 0, 0, 0, 0], config).trades
    assert long_trade.entry_price[0] == pytest.approx(101.0 * 1.001)
    assert long_trade.exit_price[0] == pytest.approx(102.0 * 0.999)
    short = run_positions(make_candles(OPENS, CLOSES), [-1, 0, 0, 0, 0, 0], config).trades
    assert short.direction[0] == "short"
    assert short.entry_price[0] == pytest.approx(101.0 * 0.999)
    assert short.exit_price[0] == pytest.approx(102.0 * 1.001)


def test_fees_are_charged_on_every_fill_and_sizing_includes_the_entry_fee():
    config = BacktestConfig(fee_rate=0.01, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    trade = result.trades.iloc[0]
    qty = 10_000 / (102.0 * 1.01)
    assert trade.quantity == pytest.approx(qty)
    fees = qty * 102.0 * 0.01 + qty * 103.0 * 0.01
    assert trade.fees == pytest.approx(fees)
    assert trade.pnl == pytest.approx(qty * (103.0 - 102.0) - fees)
    assert trade.pnl_pct == pytest.approx(trade.pnl / (qty * 102.0) * 100)
    assert result.metrics["commissions"] == pytest.approx(fees)
    assert result.metrics["final_equity"] == pytest.approx(10_000 + trade.pnl)


def test_size_fraction_commits_that_share_of_equity():
    config = BacktestConfig(fee_rate=0.0, size_fraction=0.5, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    assert result.trades.quantity[0] == pytest.approx(5_000 / 102.0)
    # While long, equity is the idle half plus the position marked to the close.
    assert result.equity.iloc[2] == pytest.approx(5_000 + 5_000 / 102.0 * 102.5)


def test_long_only_treats_a_short_target_as_flat():
    result = run_positions(make_candles(OPENS, CLOSES), [1, 1, -1, -1, 1, 1], NO_FEES)
    assert result.trades.direction.tolist() == ["long", "long"]
    assert result.trades.exit_time[0] == make_candles(OPENS, CLOSES).index[3]
    assert result.position.tolist() == [0, 1, 1, 0, 0, 1]


def test_a_flip_closes_and_reopens_at_the_same_open():
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    trades = run_positions(make_candles(OPENS, CLOSES), [1, 1, -1, -1, 0, 0], config).trades
    assert trades.direction.tolist() == ["long", "short"]
    assert trades.exit_time[0] == trades.entry_time[1]
    assert trades.exit_price[0] == trades.entry_price[1] == 103.0


def test_stop_loss_fills_at_the_stop_price_when_the_low_reaches_it():
    lows = [100, 101, 102, 96, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=4.0, timeframe="1d")
    trade = run_positions(candles, [1, 1, 1, 1, 1, 1], config).trades.iloc[0]
    assert trade.exit_reason == "stop"
    assert trade.exit_price == pytest.approx(101.0 * 0.96)
    assert trade.exit_time == candles.index[3]


def test_a_gap_through_the_stop_fills_at_the_open():
    opens = [100, 101, 102, 90, 91, 92]
    closes = [100.5, 101.5, 102.5, 90.5, 91.5, 92.5]
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=4.0, timeframe="1d")
    trade = run_positions(make_candles(opens, closes), [1] * 6, config).trades.iloc[0]
    assert trade.exit_reason == "stop" and trade.exit_price == 90.0


def test_take_profit_fills_at_the_target_or_at_a_gapped_open():
    config = BacktestConfig(fee_rate=0.0, take_profit_pct=2.0, timeframe="1d")
    highs = [100.5, 101.5, 102.5, 103.5, 104.5, 105.5]
    highs[2] = 103.5  # reaches 101 * 1.02 = 103.02 during bar 2
    trade = run_positions(make_candles(OPENS, CLOSES, highs=highs), [1] * 6, config).trades
    assert trade.exit_reason[0] == "target"
    assert trade.exit_price[0] == pytest.approx(101.0 * 1.02)
    gap = run_positions(make_candles([100, 101, 110, 111], [100, 101, 110, 111]), [1] * 4, config)
    assert gap.trades.exit_price[0] == 110.0 and gap.trades.exit_reason[0] == "target"


def test_when_stop_and_target_are_both_inside_one_bar_the_stop_is_assumed():
    highs = [100.5, 101.5, 110.0, 103.5, 104.5, 105.5]
    lows = [100.0, 101.0, 90.0, 103.0, 104.0, 105.0]
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=5, take_profit_pct=5, timeframe="1d")
    trade = run_positions(make_candles(OPENS, CLOSES, highs, lows), [1] * 6, config).trades
    assert trade.exit_reason[0] == "stop"
    assert trade.exit_price[0] == pytest.approx(101.0 * 0.95)


def test_stops_are_checked_on_the_entry_bar_itself():
    lows = [100, 95, 102, 103, 104, 105]
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=4.0, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES, lows=lows), [1] * 6, config)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "stop" and trade.entry_time == trade.exit_time
    assert result.position.tolist() == [0, 0, 0, 0, 0, 0]


def test_short_stop_triggers_on_the_high():
    highs = [100.5, 101.5, 106.0, 103.5, 104.5, 105.5]
    config = BacktestConfig(fee_rate=0.0, allow_short=True, stop_loss_pct=4, timeframe="1d")
    trade = run_positions(make_candles(OPENS, CLOSES, highs=highs), [-1] * 6, config).trades
    assert trade.direction[0] == "short" and trade.exit_reason[0] == "stop"
    assert trade.exit_price[0] == pytest.approx(101.0 * 1.04)


def test_stop_fills_slip_but_take_profits_do_not():
    lows = [100, 101, 102, 96, 104, 105]
    config = BacktestConfig(fee_rate=0.0, slippage_bps=10, stop_loss_pct=4.0, timeframe="1d")
    trade = run_positions(make_candles(OPENS, CLOSES, lows=lows), [1] * 6, config).trades
    entry = 101.0 * 1.001
    assert trade.exit_price[0] == pytest.approx(entry * 0.96 * 0.999)


def test_after_a_stop_the_engine_waits_for_the_target_to_change():
    lows = [100, 101, 102, 96, 104, 105, 106, 107]
    opens = [*OPENS, 106.0, 107.0]
    closes = [*CLOSES, 106.5, 107.5]
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=4.0, timeframe="1d")
    result = run_positions(make_candles(opens, closes, lows=lows), [1, 1, 1, 1, 0, 1, 1, 1], config)
    first, second = result.trades.iloc[0], result.trades.iloc[1]
    assert first.exit_reason == "stop"
    # Stopped on bar 3 while the target stayed long; it went flat on bar 4 and long again
    # on bar 5, so the re-entry is bar 6's open.
    assert second.entry_time == result.equity.index[6]
    assert result.position.tolist() == [0, 1, 1, 0, 0, 0, 1, 1]


def test_an_open_position_is_marked_to_the_last_close_and_reported_open():
    config = BacktestConfig(fee_rate=0.01, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 0, 0, 1, 1, 1], config)
    trade = result.trades.iloc[-1]
    assert trade.is_open and trade.exit_reason == "end"
    assert trade.exit_price == 105.5 and trade.exit_time == result.equity.index[-1]
    qty = 10_000 / (104.0 * 1.01)
    entry_fee = qty * 104.0 * 0.01
    assert trade.fees == pytest.approx(entry_fee)  # no exit fee while open
    assert result.metrics["final_equity"] == pytest.approx(10_000 - entry_fee + qty * 1.5)
    assert result.metrics["num_trades"] == 0 and result.metrics["open_trades"] == 1


def test_equity_is_cash_plus_position_marked_at_each_close():
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 1, 0, 0, 0], NO_FEES)
    qty = 10_000 / 102.0
    expected = [10_000, 10_000, qty * 102.5, qty * 103.5, qty * 104, qty * 104]
    assert np.allclose(result.equity.to_numpy(), expected, rtol=1e-12)


def test_drawdown_is_a_fraction_below_the_running_peak():
    result = run_positions(make_candles([100, 100, 120, 90], [100, 120, 90, 108]), [1] * 4, NO_FEES)
    assert np.allclose(result.drawdown.to_numpy(), [0, 0, -0.25, -0.1])


def test_a_short_is_liquidated_where_closing_it_would_leave_nothing():
    # Short 10,000 / 100 = 100 units from bar 1; closing at 200 (no fees) leaves 0. Bar 2's
    # high reaches 250: the position closes at 200, and the account stays flat afterwards
    # although the strategy keeps asking for a short.
    opens = [100, 100, 150, 120, 100, 90]
    highs = [100, 100, 250, 120, 100, 90]
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    result = run_positions(make_candles(opens, opens, highs=highs), [-1, -1, -1, -1, 0, -1], config)
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1
    assert trade.exit_reason == "liquidation" and trade.exit_price == pytest.approx(200.0)
    assert trade.exit_time == result.equity.index[2]
    assert trade.pnl == pytest.approx(-10_000.0)
    assert result.equity.tolist()[2:] == [0.0] * 4
    assert result.position.tolist() == [0, -1, 0, 0, 0, 0]
    m = result.metrics
    assert m["liquidated"] == 1 and m["final_equity"] == 0.0
    assert m["max_drawdown_pct"] == -100.0 and m["return_pct"] == -100.0
    assert m["sharpe"] is None and m["sortino"] is None


def test_the_liquidation_level_counts_the_exit_fee_and_sizing():
    # Half the equity short at 100 with a 1% fee: 5,000 / 101 units, cash after the entry
    # 10,000 + units * 99; closing at p costs units * p * 1.01, so nothing is left at
    # p = cash / (units * 1.01).
    config = BacktestConfig(fee_rate=0.01, allow_short=True, size_fraction=0.5, timeframe="1d")
    opens = [100.0, 100.0, 200.0, 200.0]
    highs = [100.0, 100.0, 400.0, 200.0]
    result = run_positions(make_candles(opens, opens, highs=highs), [-1] * 4, config)
    units = 5_000 / 101
    level = (10_000 + units * 99) / (units * 1.01)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_price == pytest.approx(level)
    assert result.metrics["final_equity"] == 0.0


def test_a_gap_through_the_liquidation_level_fills_at_the_open_and_costs_only_the_account():
    opens = [100, 100, 300, 300]
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    result = run_positions(make_candles(opens, opens), [-1, -1, -1, -1], config)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_price == 300.0
    # Buying back at 300 would leave -10,000: the account loses what it has, no more.
    assert trade.pnl == pytest.approx(-10_000.0)
    assert result.equity.min() == 0.0


def test_a_signal_exit_that_would_leave_less_than_nothing_is_a_liquidation():
    # The short is closed by its signal at bar 3's open, which gapped to 300.
    opens = [100, 100, 150, 300, 300]
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    result = run_positions(make_candles(opens, opens), [-1, -1, 0, 0, 0], config)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_time == result.equity.index[3]
    assert result.metrics["final_equity"] == 0.0


def test_a_constant_short_on_a_rising_asset_ends_at_zero_not_below():
    # The defect: this used to end near -17,000% with a drawdown beyond -100% and a positive
    # Sharpe ratio.
    closes = 100 * np.exp(np.linspace(0, 5, 400))
    opens = np.r_[100, closes[:-1]]
    config = BacktestConfig(allow_short=True, timeframe="1d")
    result = run_positions(make_candles(opens, closes), -np.ones(400), config)
    m = result.metrics
    assert result.equity.min() == 0.0 and m["return_pct"] == -100.0
    assert m["max_drawdown_pct"] == -100.0 and result.drawdown.min() >= -1.0
    assert m["sharpe"] is None and m["cagr_pct"] == -100.0


def test_a_long_is_liquidated_when_it_is_worth_less_than_the_fee_to_close_it():
    # 100 of capital, a fixed fee of 10: 0.9 units at 100 leave no cash. Closing at p
    # returns 0.9 * p - 10, nothing at p = 11.11; bar 2's low of 5 goes through it.
    config = BacktestConfig(initial_capital=100, fee_rate=0.0, fixed_fee=10.0, timeframe="1d")
    opens = [100.0, 100.0, 50.0, 50.0]
    lows = [100.0, 100.0, 5.0, 50.0]
    result = run_positions(make_candles(opens, opens, lows=lows), [1, 1, 1, 1], config)
    trade = result.trades.iloc[0]
    assert trade.quantity == pytest.approx(0.9)
    assert trade.exit_reason == "liquidation" and trade.exit_price == pytest.approx(100 / 9)
    assert result.equity.tolist()[2:] == [0.0, 0.0]


def test_a_stop_nearer_than_the_liquidation_level_is_hit_first():
    highs = [100, 100, 250, 120]
    opens = [100, 100, 110, 120]
    config = BacktestConfig(fee_rate=0.0, allow_short=True, stop_loss_pct=20, timeframe="1d")
    trade = run_positions(make_candles(opens, opens, highs=highs), [-1] * 4, config).trades
    assert trade.exit_reason[0] == "stop" and trade.exit_price[0] == pytest.approx(120.0)


def test_progress_is_reported_at_least_every_two_percent():
    from tests.backtests.engine.bars import random_walk

    candles = random_walk(10_000)
    calls: list[tuple[int, int]] = []
    config = BacktestConfig(fee_rate=0.0, timeframe="1m")
    run_positions(candles, np.ones(10_000), config, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert calls[0] == (0, 10_000) and calls[-1] == (10_000, 10_000)
    assert all(t == 10_000 for _, t in calls)
    assert max(np.diff(done)) <= 200
    assert done == sorted(done)


# --- Fees beyond a rate ---------------------------------------------------------------


def test_a_fill_pays_the_rate_plus_the_fixed_fee_or_the_minimum_fee():
    config = BacktestConfig(fee_rate=0.001, fixed_fee=2.0, min_fee=15.0, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    trade = result.trades.iloc[0]
    # Entry: the rate on ~10,000 plus 2 is ~12, below the minimum: 15 is paid, and sizing
    # leaves room for it: qty * 102 + 15 = 10,000.
    qty = (10_000 - 15.0) / 102.0
    assert trade.quantity == pytest.approx(qty)
    exit_fee = max(0.001 * qty * 103.0 + 2.0, 15.0)
    assert trade.fees == pytest.approx(15.0 + exit_fee)
    assert result.metrics["final_equity"] == pytest.approx(qty * 103.0 - exit_fee)
    big = BacktestConfig(initial_capital=1e6, fee_rate=0.001, fixed_fee=2.0, min_fee=15.0)
    trade = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], big).trades.iloc[0]
    qty = (1e6 - 2.0) / (102.0 * 1.001)  # above the minimum: rate plus fixed fee
    assert trade.quantity == pytest.approx(qty)
    assert trade.fees == pytest.approx(0.001 * qty * 205.0 + 4.0)


# --- Sizing ---------------------------------------------------------------------------


def test_fixed_quantity_buys_that_many_units():
    config = BacktestConfig(fee_rate=0.0, sizing="fixed_quantity", fixed_quantity=7, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    assert result.trades.quantity[0] == 7
    assert result.equity.iloc[2] == pytest.approx(10_000 + 7 * (102.5 - 102.0))


def test_fixed_notional_buys_that_much_quote_currency():
    config = BacktestConfig(
        fee_rate=0.0, sizing="fixed_notional", fixed_notional=2_040, timeframe="1d"
    )
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    assert result.trades.quantity[0] == pytest.approx(20.0)  # 2,040 / 102


def test_risk_sizing_loses_risk_pct_of_equity_at_the_stop():
    config = BacktestConfig(
        fee_rate=0.0, sizing="risk", risk_pct=1.0, stop_loss_pct=2.0, timeframe="1d"
    )
    lows = [100, 101, 102, 99, 104, 105]  # bar 3 reaches the stop at 102 * 0.98
    result = run_positions(make_candles(OPENS, CLOSES, lows=lows), [0, 1, 1, 1, 1, 1], config)
    trade = result.trades.iloc[0]
    assert trade.quantity == pytest.approx(100 / (102 * 0.02))
    assert trade.exit_reason == "stop" and trade.pnl == pytest.approx(-100.0)


def test_a_size_beyond_the_equity_is_cut_to_what_the_equity_buys():
    # Without leverage 1,000 units at 102 (102,000) cannot be bought with 10,000.
    config = BacktestConfig(fee_rate=0.0, sizing="fixed_quantity", fixed_quantity=1_000)
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    assert result.trades.quantity[0] == pytest.approx(10_000 / 102.0)


def test_quantities_round_down_to_the_step():
    config = BacktestConfig(fee_rate=0.0, quantity_step=0.5, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], config)
    assert result.trades.quantity[0] == 98.0  # 10,000 / 102 = 98.04
    # The cash not spent stays in the account.
    assert result.equity.iloc[2] == pytest.approx(10_000 - 98 * 102 + 98 * 102.5)
    exact = BacktestConfig(fee_rate=0.0, sizing="fixed_quantity", fixed_quantity=0.3)
    stepped = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], exact)
    assert stepped.trades.quantity[0] == 0.3
    tenths = BacktestConfig(
        fee_rate=0.0, sizing="fixed_quantity", fixed_quantity=0.3, quantity_step=0.1
    )
    # 0.3 / 0.1 is 2.9999999999999996 in floats; the step must not lose a tenth to that.
    stepped = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], tenths)
    assert stepped.trades.quantity[0] == pytest.approx(0.3)


def test_orders_below_the_minimum_notional_or_step_are_skipped_and_counted():
    config = BacktestConfig(
        fee_rate=0.0, sizing="fixed_notional", fixed_notional=500, min_notional=1_000
    )
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 1, 0, 0], config)
    assert len(result.trades) == 0 and result.metrics["orders_skipped"] == 2
    assert result.metrics["final_equity"] == 10_000
    step = BacktestConfig(
        fee_rate=0.0, sizing="fixed_quantity", fixed_quantity=0.4, quantity_step=1
    )
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], step)
    assert len(result.trades) == 0 and result.metrics["orders_skipped"] == 1


def test_closing_a_whole_position_is_never_skipped_for_its_size():
    config = BacktestConfig(
        fee_rate=0.0, sizing="fixed_notional", fixed_notional=2_000, min_notional=1_500
    )
    opens = [100.0, 100.0, 50.0, 50.0]  # the 20 units are worth 1,000 when closed
    result = run_positions(make_candles(opens, opens), [1, 0, 0, 0], config)
    trade = result.trades.iloc[0]
    assert not trade.is_open and trade.exit_price == 50.0


# --- Fractional targets ---------------------------------------------------------------


def test_a_fractional_target_takes_that_share_of_the_full_size():
    half = run_positions(make_candles(OPENS, CLOSES), [0, 0.5, 0, 0, 0, 0], NO_FEES)
    assert half.trades.quantity[0] == pytest.approx(5_000 / 102.0)
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    short = run_positions(make_candles(OPENS, CLOSES), [0, -0.25, 0, 0, 0, 0], config)
    assert short.trades.direction[0] == "short"
    assert short.trades.quantity[0] == pytest.approx(2_500 / 102.0)


def test_a_change_of_target_size_trades_the_difference_at_the_next_open():
    config = BacktestConfig(fee_rate=0.01, timeframe="1d")
    result = run_positions(make_candles(OPENS, CLOSES), [1, 0.5, 0.5, 0, 0, 0], config)
    first = 10_000 / (101 * 1.01)
    cash = 10_000 - first * 101 * 1.01
    # Bar 2's open: equity is marked at 102 and half the full size is kept; the fee is
    # paid on the units sold only.
    equity = cash + first * 102
    second = 0.5 * equity / (102 * 1.01)
    sold = first - second
    cash += sold * 102 * 0.99
    assert result.quantity.iloc[2] == pytest.approx(second)
    cash += second * 104 * 0.99  # the target of 0 on bar 3's close: out at bar 4's open
    assert result.metrics["final_equity"] == pytest.approx(cash)
    # One round trip: bought `first` units at 101, sold them at 102 and 104.
    trade = result.trades.iloc[0]
    assert len(result.trades) == 1 and trade.quantity == pytest.approx(first)
    assert trade.entry_price == pytest.approx(101.0)
    assert trade.exit_price == pytest.approx((sold * 102 + second * 104) / first)
    assert trade.fees == pytest.approx(first * 101 * 0.01 + sold * 102 * 0.01 + second * 1.04)
    assert trade.pnl == pytest.approx(cash - 10_000)


def test_an_unchanged_fractional_target_does_not_trade_again():
    result = run_positions(make_candles(OPENS, CLOSES), [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], NO_FEES)
    assert result.quantity.iloc[1:].nunique() == 1
    assert result.trades.is_open.tolist() == [True]


def test_stop_levels_stay_at_the_opening_fill_when_the_position_is_resized():
    # Opened at 101 (stop 96.96), halved at 102, back to full at 103. Bar 4's low of 98
    # would stop a level set from 103 (98.88); bar 5's low of 96 reaches 96.96.
    lows = [100, 101, 102, 103, 98, 96]
    config = BacktestConfig(fee_rate=0.0, stop_loss_pct=4.0, timeframe="1d")
    candles = make_candles(OPENS, CLOSES, lows=lows)
    result = run_positions(candles, [1, 0.5, 1, 1, 1, 1], config)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "stop" and trade.exit_time == candles.index[5]
    held = result.quantity.iloc[4]
    assert result.equity.iloc[5] == pytest.approx(result.cash.iloc[4] + held * 101 * 0.96)


def test_targets_beyond_one_are_refused():
    from backtests.engine import EngineError

    with pytest.raises(EngineError, match=r"\[-1, 1\]"):
        run_positions(make_candles(OPENS, CLOSES), [0, 2, 0, 0, 0, 0], NO_FEES)


def test_the_account_identity_holds_at_every_bar():
    config = BacktestConfig(fee_rate=0.001, allow_short=True, quantity_step=0.01, timeframe="1d")
    candles = make_candles(OPENS, CLOSES)
    result = run_positions(candles, [1, -0.5, -1, 0.3, 0, 1], config)
    assert np.allclose(result.cash + result.quantity * candles.close, result.equity, rtol=1e-12)
