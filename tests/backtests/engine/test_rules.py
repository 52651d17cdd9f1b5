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


def test_a_wiped_out_account_opens_no_further_trades():
    config = BacktestConfig(fee_rate=0.0, allow_short=True, timeframe="1d")
    opens = [100, 100, 300, 300, 300, 300]
    result = run_positions(make_candles(opens, opens), [-1, 0, 0, -1, 0, 0], config)
    assert len(result.trades) == 1
    assert result.metrics["final_equity"] == pytest.approx(-10_000.0)


def test_progress_is_reported_at_least_every_two_percent():
    from tests.backtests.engine.bars import random_walk

    candles = random_walk(10_000)
    calls: list[tuple[int, int]] = []
    run_positions(candles, np.ones(10_000), NO_FEES, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert calls[0] == (0, 10_000) and calls[-1] == (10_000, 10_000)
    assert all(t == 10_000 for _, t in calls)
    assert max(np.diff(done)) <= 200
    assert done == sorted(done)
