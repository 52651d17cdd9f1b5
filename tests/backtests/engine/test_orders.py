"""Rules 3, 14 and 15 of backtests.engine's docstring (spread, trailing / ATR / time stops,
entry orders), pinned on hand-made candles. Expected prices are worked out from the rules."""

from __future__ import annotations

import numpy as np
import pytest

from backtests.engine import BacktestConfig, InvalidConfigError, run_positions
from tests.backtests.engine.bars import make_candles

OPENS = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
CLOSES = [100.5, 101.5, 102.5, 103.5, 104.5, 105.5]


def config(**fields: object) -> BacktestConfig:
    return BacktestConfig(fee_rate=0.0, timeframe="1d", **fields)  # type: ignore[arg-type]


# --- Rule 14: trailing, ATR and time stops ------------------------------------------------


def test_a_trailing_stop_follows_the_highest_high_since_entry():
    opens = [100, 100, 110, 118, 118]
    closes = [100, 104, 118, 118, 118]
    highs = [100, 105, 120, 119, 119]
    lows = [100, 99, 108, 107, 117]
    candles = make_candles(opens, closes, highs, lows)
    trade = run_positions(candles, [1] * 5, config(trailing_stop_pct=10)).trades.iloc[0]
    # Bar 2's stop is 105 * 0.9 = 94.5 (not hit by 108); bar 3's is 120 * 0.9 = 108.
    assert trade.exit_reason == "trailing_stop"
    assert trade.exit_price == pytest.approx(108.0)
    assert trade.exit_time == candles.index[3]


def test_a_bars_own_high_does_not_move_its_trailing_stop():
    # Bar 2 runs to 130 but also trades at 112: with its own high its stop would be 117.
    opens = [100, 100, 115, 118]
    closes = [100, 115, 116, 116]
    highs = [100, 120, 130, 119]
    lows = [100, 99, 112, 115]
    candles = make_candles(opens, closes, highs, lows)
    trade = run_positions(candles, [1] * 4, config(trailing_stop_pct=10)).trades.iloc[0]
    # Bar 2's stop is 120 * 0.9 = 108; bar 3's is 130 * 0.9 = 117, which 115 reaches.
    assert trade.exit_reason == "trailing_stop"
    assert trade.exit_time == candles.index[3]
    assert trade.exit_price == pytest.approx(117.0)


def test_a_short_trailing_stop_sits_above_the_lowest_low_and_slips():
    opens = [100, 100, 92, 95]
    closes = [100, 92, 95, 96]
    highs = [100, 101, 96, 97]
    lows = [100, 90, 91, 94]
    candles = make_candles(opens, closes, highs, lows)
    cfg = config(trailing_stop_pct=5, allow_short=True, slippage_bps=10)
    trade = run_positions(candles, [-1] * 4, cfg).trades.iloc[0]
    # Entry sells at 100 * 0.999; after bar 1 the low is 90, so bar 2's stop is 94.5.
    assert trade.entry_price == pytest.approx(99.9)
    assert trade.exit_reason == "trailing_stop"
    assert trade.exit_price == pytest.approx(90 * 1.05 * 1.001)
    assert trade.exit_time == candles.index[2]


def test_an_atr_stop_sits_k_wilder_atrs_from_the_entry_fill():
    # True ranges 2, 2, 2, 8, 2: Wilder's ATR(3) is 2 at bar 2, 4 at bar 3, 10/3 at bar 4
    # (a plain 3-bar mean would be 4 at bar 4).
    opens = [100, 100, 100, 100, 100, 100, 100]
    closes = [100, 100, 100, 100, 100, 100, 100]
    highs = [101, 101, 101, 104, 101, 100, 100]
    lows = [99, 99, 99, 96, 99, 100, 94.9]
    candles = make_candles(opens, closes, highs, lows)
    targets = [0, 0, 0, 0, 1, 1, 1]
    cfg = config(atr_stop_multiple=1.5, atr_period=3)
    trade = run_positions(candles, targets, cfg).trades.iloc[0]
    # Signal at bar 4 (ATR 10/3), entry at bar 5's open 100: stop at 100 - 1.5 * 10/3 = 95.
    assert trade.entry_time == candles.index[5]
    assert trade.exit_reason == "atr_stop"
    assert trade.exit_price == pytest.approx(95.0)


def test_no_atr_stop_is_set_before_the_atr_exists():
    candles = make_candles([100] * 4, [100] * 4, [101] * 4, [99, 99, 50, 50])
    result = run_positions(candles, [1] * 4, config(atr_stop_multiple=1.0, atr_period=3))
    assert result.trades.exit_reason.tolist() == ["end"]


def test_the_nearest_of_several_stops_wins_and_names_the_exit():
    lows = [100, 101, 95, 103, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    cfg = config(stop_loss_pct=5, trailing_stop_pct=3)
    trade = run_positions(candles, [1] * 6, cfg).trades.iloc[0]
    # Entry 101; bar 2's trailing stop is max(101, 101.5) * 0.97 = 98.455, above 95.95.
    assert trade.exit_reason == "trailing_stop"
    assert trade.exit_price == pytest.approx(101.5 * 0.97)


def test_a_time_stop_closes_at_the_open_n_bars_after_entry():
    cfg = config(time_stop_bars=2, slippage_bps=10)
    result = run_positions(make_candles(OPENS, CLOSES), [1] * 6, cfg)
    trade = result.trades.iloc[0]
    # Entered at bar 1's open, held bars 1 and 2, closed at bar 3's open.
    assert trade.exit_reason == "time_stop"
    assert trade.exit_price == pytest.approx(103.0 * 0.999)
    # And flat until the target changes.
    assert result.position.tolist() == [0, 1, 1, 0, 0, 0]


def test_with_fills_at_closes_a_time_stop_closes_at_the_close_n_bars_after_entry():
    cfg = config(time_stop_bars=2, entry_order="close")
    trade = run_positions(make_candles(OPENS, CLOSES), [1] * 6, cfg).trades.iloc[0]
    assert trade.entry_price == 100.5
    assert trade.exit_reason == "time_stop" and trade.exit_price == 102.5


def test_a_signal_exit_on_the_time_stops_open_wins_but_a_resize_is_dropped():
    cfg = config(time_stop_bars=2)
    flat = run_positions(make_candles(OPENS, CLOSES), [1, 1, 0, 0, 0, 0], cfg).trades
    assert flat.exit_reason.tolist() == ["signal"]
    assert flat.exit_price[0] == pytest.approx(103.0)
    resized = run_positions(make_candles(OPENS, CLOSES), [1, 1, 0.5, 0.5, 0.5, 0.5], cfg)
    assert resized.trades.exit_reason.tolist() == ["time_stop"]
    assert resized.position.tolist() == [0, 1, 1, 0, 0, 0]


# --- Rule 15: entry orders -----------------------------------------------------------------


def test_close_entries_fill_at_the_signal_bars_own_close():
    candles = make_candles(OPENS, CLOSES)
    result = run_positions(candles, [0, 1, 1, 0, 0, 0], config(entry_order="close"))
    trade = result.trades.iloc[0]
    assert trade.entry_time == candles.index[1] and trade.entry_price == 101.5
    assert trade.exit_time == candles.index[3] and trade.exit_price == 103.5
    assert result.position.tolist() == [0, 1, 1, 0, 0, 0]
    assert result.equity.iloc[2] == pytest.approx(10_000 / 101.5 * 102.5)


def test_close_entries_check_stops_from_the_next_bar_and_can_fill_on_bar_zero():
    lows = [90, 101, 102, 103, 104, 105]  # bar 0's low is below any stop, but comes first
    candles = make_candles(OPENS, CLOSES, lows=lows)
    trade = run_positions(candles, [1] * 6, config(entry_order="close", stop_loss_pct=5))
    assert trade.trades.entry_time[0] == candles.index[0]
    assert trade.trades.entry_price[0] == 100.5
    assert trade.trades.exit_reason.tolist() == ["end"]


def test_a_buy_limit_fills_at_the_limit_when_the_low_reaches_it():
    lows = [100, 101, 99.0, 103, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    cfg = config(entry_order="limit", entry_offset_pct=2, entry_valid_bars=2, slippage_bps=50)
    trade = run_positions(candles, [0, 1, 1, 1, 1, 1], cfg).trades.iloc[0]
    # Signal bar 1 closes at 101.5: the limit rests at 99.47; bar 2 reaches it; no slippage.
    assert trade.entry_time == candles.index[2]
    assert trade.entry_price == pytest.approx(101.5 * 0.98)


def test_a_bar_opening_below_a_buy_limit_fills_at_its_open():
    opens = [100, 101, 95, 96]
    candles = make_candles(opens, [100.5, 101.5, 96, 97])
    cfg = config(entry_order="limit", entry_offset_pct=2)
    trade = run_positions(candles, [0, 1, 1, 1], cfg).trades.iloc[0]
    assert trade.entry_price == 95.0


def test_an_unfilled_limit_is_cancelled_after_entry_valid_bars():
    lows = [100, 101, 102, 99, 104, 105]  # only bar 3 reaches 101.5 * 0.98 = 99.47
    candles = make_candles(OPENS, CLOSES, lows=lows)
    once = config(entry_order="limit", entry_offset_pct=2, entry_valid_bars=1)
    assert run_positions(candles, [0, 1, 1, 1, 1, 1], once).trades.empty
    twice = config(entry_order="limit", entry_offset_pct=2, entry_valid_bars=2)
    trades = run_positions(candles, [0, 1, 1, 1, 1, 1], twice).trades
    assert trades.entry_time.tolist() == [candles.index[3]]


def test_a_change_of_target_cancels_a_resting_entry():
    lows = [100, 101, 102, 99, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    cfg = config(entry_order="limit", entry_offset_pct=2, entry_valid_bars=4)
    # The target goes flat at bar 2's close, before bar 3 reaches the limit.
    assert run_positions(candles, [0, 1, 0, 0, 0, 0], cfg).trades.empty


def test_a_short_sell_limit_rests_above_the_close():
    highs = [100.5, 101.5, 104.0, 103.5, 104.5, 105.5]
    candles = make_candles(OPENS, CLOSES, highs=highs)
    cfg = config(entry_order="limit", entry_offset_pct=2, allow_short=True)
    trade = run_positions(candles, [0, -1, -1, -1, -1, -1], cfg).trades.iloc[0]
    assert trade.direction == "short"
    assert trade.entry_price == pytest.approx(101.5 * 1.02)


def test_a_buy_stop_fills_at_the_stop_or_a_gapped_open_and_slips():
    highs = [100.5, 101.5, 104.0, 103.5, 104.5, 105.5]
    candles = make_candles(OPENS, CLOSES, highs=highs)
    cfg = config(entry_order="stop", entry_offset_pct=2, slippage_bps=10, spread_bps=20)
    trade = run_positions(candles, [0, 1, 1, 1, 1, 1], cfg).trades.iloc[0]
    # 101.5 * 1.02 = 103.53, reached by bar 2's high; slippage plus half the spread: 0.2%.
    assert trade.entry_price == pytest.approx(101.5 * 1.02 * 1.002)
    gap = make_candles([100, 101, 106, 107], [100.5, 101.5, 106.5, 107.5])
    trade = run_positions(gap, [0, 1, 1, 1], cfg).trades.iloc[0]
    assert trade.entry_price == pytest.approx(106 * 1.002)


def test_exits_of_a_limit_entry_are_market_orders_at_the_next_open():
    lows = [100, 101, 99.0, 103, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    cfg = config(entry_order="limit", entry_offset_pct=2)
    trade = run_positions(candles, [0, 1, 1, 0, 0, 0], cfg).trades.iloc[0]
    assert trade.exit_reason == "signal" and trade.exit_price == 104.0


def test_within_a_limit_fill_bar_stops_count_but_the_take_profit_waits():
    # Bar 2 fills the limit at 99.47 within its range, and trades from 95 to 110.
    highs = [100.5, 101.5, 110.0, 103.5, 104.5, 105.5]
    lows = [100, 101, 95.0, 103, 104, 105]
    candles = make_candles(OPENS, CLOSES, highs, lows)
    stopped = config(entry_order="limit", entry_offset_pct=2, stop_loss_pct=3)
    trade = run_positions(candles, [0, 1, 1, 1, 1, 1], stopped).trades.iloc[0]
    assert trade.exit_reason == "stop" and trade.exit_time == candles.index[2]
    assert trade.exit_price == pytest.approx(101.5 * 0.98 * 0.97)
    target = config(entry_order="limit", entry_offset_pct=2, take_profit_pct=3)
    trade = run_positions(candles, [0, 1, 1, 1, 1, 1], target).trades.iloc[0]
    # 99.47 * 1.03 = 102.45: reached on bar 2's high but taken only at bar 3's open, 103.
    assert trade.exit_reason == "target" and trade.exit_time == candles.index[3]
    assert trade.exit_price == 103.0


# --- Rule 3: spread ------------------------------------------------------------------------


@pytest.mark.parametrize("min_notional", [0.0, 1e-300])  # the vectorised and order paths
def test_market_fills_pay_half_the_spread_on_top_of_slippage(min_notional):
    cfg = config(slippage_bps=10, spread_bps=20, min_notional=min_notional)
    trade = run_positions(make_candles(OPENS, CLOSES), [1, 0, 0, 0, 0, 0], cfg).trades
    assert trade.entry_price[0] == pytest.approx(101.0 * 1.002)
    assert trade.exit_price[0] == pytest.approx(102.0 * 0.998)


def test_stops_pay_the_spread_and_take_profits_do_not():
    lows = [100, 101, 96, 103, 104, 105]
    candles = make_candles(OPENS, CLOSES, lows=lows)
    stop = config(spread_bps=20, stop_loss_pct=4)
    trade = run_positions(candles, [1] * 6, stop).trades.iloc[0]
    assert trade.exit_price == pytest.approx(101.0 * 1.001 * 0.96 * 0.999)
    highs = [100.5, 101.5, 105.0, 103.5, 104.5, 105.5]
    target = config(spread_bps=20, take_profit_pct=2)
    trade = run_positions(make_candles(OPENS, CLOSES, highs=highs), [1] * 6, target).trades
    assert trade.exit_price[0] == pytest.approx(101.0 * 1.001 * 1.02)


# --- Rules 5 and 8: leverage and maintenance margin ---------------------------------------


def test_size_fraction_up_to_max_leverage_borrows_cash():
    cfg = config(max_leverage=2, size_fraction=2)
    result = run_positions(make_candles(OPENS, CLOSES), [1, 1, 1, 1, 1, 1], cfg)
    units = 20_000 / 101.0
    assert result.trades.quantity[0] == pytest.approx(units)
    assert result.cash.iloc[1] == pytest.approx(-10_000)
    assert result.equity.iloc[2] == pytest.approx(-10_000 + units * 102.5)


def test_a_fixed_size_is_cut_to_max_leverage_times_equity():
    cfg = config(sizing="fixed_quantity", fixed_quantity=1_000, max_leverage=3)
    result = run_positions(make_candles(OPENS, CLOSES), [0, 1, 0, 0, 0, 0], cfg)
    assert result.trades.quantity[0] == pytest.approx(30_000 / 102.0)


@pytest.mark.parametrize("side", [1, -1])
def test_a_leveraged_entry_whose_own_costs_exceed_the_equity_is_cut_to_what_it_can_pay(side):
    # 20 of equity at 3x may hold 60 of notional and fee, but a fixed fee of 25 alone is
    # more than the account has: before, it entered and stood at -5 at the first close.
    flat = make_candles([100.0] * 4, [100.0] * 4)
    broke = config(
        initial_capital=20.0,
        sizing="fixed_quantity",
        fixed_quantity=10,
        max_leverage=3,
        fixed_fee=25.0,
        allow_short=True,
    )
    result = run_positions(flat, [side] * 4, broke)
    assert result.trades.empty and result.metrics["orders_skipped"] == 1
    assert (result.equity == 20.0).all()
    # With a fee it can pay, the spread and slippage it gives away against the close at
    # which it is marked count too: the entry is cut so that the mark stays at zero.
    costly = config(
        initial_capital=20.0,
        sizing="fixed_quantity",
        fixed_quantity=10,
        max_leverage=10,
        fixed_fee=5.0,
        slippage_bps=2_000.0,
        allow_short=True,
    )
    result = run_positions(flat, [side] * 4, costly)
    # 5 + q * 100 * 0.2 <= 20 (the leverage cap, (200 - 5) / 120 or / 80, is larger).
    assert result.trades.quantity.iloc[0] == pytest.approx(15 / 20)
    assert result.equity.min() == pytest.approx(0.0, abs=1e-9)


LEVERED_OPENS = [100, 101, 80, 60, 60, 70]
LEVERED_CLOSES = [100, 81, 61, 60, 70, 71]
LEVERED_LOWS = [100, 80, 60, 50, 60, 70]


def test_a_leveraged_long_is_liquidated_where_its_equity_is_gone():
    candles = make_candles(LEVERED_OPENS, LEVERED_CLOSES, lows=LEVERED_LOWS)
    cfg = config(max_leverage=2, size_fraction=2)
    result = run_positions(candles, [1, 1, 1, 0, 1, 1], cfg)
    # 20,000 / 101 units on 10,000 borrowed: cash + units * p = 0 at p = 50.5 (bar 3).
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_time == candles.index[3]
    assert trade.exit_price == pytest.approx(50.5)
    assert result.equity.iloc[3:].tolist() == [0.0, 0.0, 0.0]
    assert len(result.trades) == 1  # ruin: the later target of 1 opens nothing


def test_a_maintenance_margin_liquidates_earlier_and_leaves_that_margin():
    candles = make_candles(LEVERED_OPENS, LEVERED_CLOSES, lows=LEVERED_LOWS)
    cfg = config(max_leverage=2, size_fraction=2, maintenance_margin_pct=10)
    result = run_positions(candles, [1, 1, 1, 0, 1, 1], cfg)
    units = 20_000 / 101.0
    # cash + units * p = 0.1 * units * p at p = 10,000 / (0.9 * units) = 56.11 (bar 3).
    level = 10_000 / (0.9 * units)
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_time == candles.index[3]
    assert trade.exit_price == pytest.approx(level)
    assert result.equity.iloc[3] == pytest.approx(0.1 * units * level)
    # Not ruined: the next change of target opens again, at bar 5's open.
    assert result.trades.entry_time.tolist() == [candles.index[1], candles.index[5]]


def test_a_short_pays_borrow_on_its_notional_at_every_close_it_is_held():
    flat = make_candles([100] * 5, [100] * 5)
    # 365% a year on the 24/7 calendar's 365 daily bars: 1% of the notional a bar.
    cfg = config(allow_short=True, borrow_rate_pct=365)
    result = run_positions(flat, [-1, -1, -1, 0, 0], cfg)
    # Short 100 units from bar 1's open to bar 4's open: charged at closes 1, 2 and 3.
    assert result.equity.tolist() == pytest.approx([10_000, 9_900, 9_800, 9_700, 9_700])
    assert result.trades.pnl[0] == pytest.approx(-300)


def test_a_leveraged_long_pays_borrow_on_the_cash_it_borrowed_compounding():
    flat = make_candles([100] * 4, [100] * 4)
    cfg = config(max_leverage=2, size_fraction=2, borrow_rate_pct=365)
    result = run_positions(flat, [1] * 4, cfg)
    # 10,000 borrowed, 1% a bar on what is owed: 10,100 after bar 1, 10,201 after bar 2.
    assert result.cash.tolist() == pytest.approx([10_000, -10_100, -10_201, -10_303.01])
    unlevered = run_positions(flat, [1] * 4, config(borrow_rate_pct=365))
    assert unlevered.equity.tolist() == [10_000.0] * 4


def test_a_borrow_charge_that_pushes_a_close_beyond_the_liquidation_level_liquidates_there():
    opens, closes = [100, 100, 150, 190], [100, 150, 195, 190]
    candles = make_candles(opens, closes)
    k = 1000 / 100 / 365  # 1000% a year, per daily bar
    cfg = config(allow_short=True, borrow_rate_pct=1000)
    result = run_positions(candles, [-1] * 4, cfg)
    # Short 100 units for 10,000 cash: 20,000 in cash. After close 1's charge the level is
    # (20,000 - k * 100 * 150) / 100 = 195.89, above bar 2's high of 195; close 2's charge
    # moves it to 190.55, below that close: liquidated at the close, the account wiped out.
    cash_after_2 = 20_000 - k * 100 * 150 - k * 100 * 195
    assert cash_after_2 / 100 < 195 < (20_000 - k * 100 * 150) / 100
    trade = result.trades.iloc[0]
    assert trade.exit_reason == "liquidation" and trade.exit_time == candles.index[2]
    assert trade.exit_price == 195.0
    assert result.equity.iloc[2:].tolist() == [0.0, 0.0]


# --- Validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"spread_bps": -1.0}, "spread_bps"),
        ({"trailing_stop_pct": 0.0}, "trailing_stop_pct"),
        ({"trailing_stop_pct": 100.0}, "trailing_stop_pct"),
        ({"atr_stop_multiple": -1.0}, "atr_stop_multiple"),
        ({"atr_stop_multiple": 2.0, "atr_period": 0}, "atr_period"),
        ({"time_stop_bars": 0}, "time_stop_bars"),
        ({"time_stop_bars": 2.5}, "time_stop_bars"),
        ({"entry_order": "twap"}, "entry_order"),
        ({"entry_order": "limit"}, "entry_offset_pct"),
        ({"entry_offset_pct": 1.0}, "entry_offset_pct"),
        ({"entry_order": "stop", "entry_offset_pct": -1.0}, "entry_offset_pct"),
        (
            {"entry_order": "limit", "entry_offset_pct": 1.0, "entry_valid_bars": 0},
            "entry_valid_bars",
        ),
        ({"entry_valid_bars": 3}, "entry_valid_bars"),
        ({"max_leverage": 0.5}, "max_leverage"),
        ({"size_fraction": 2.0}, "size_fraction"),
        ({"max_leverage": 2.0, "size_fraction": 2.5}, "size_fraction"),
        ({"maintenance_margin_pct": -1.0}, "maintenance_margin_pct"),
        ({"maintenance_margin_pct": 100.0}, "maintenance_margin_pct"),
        ({"borrow_rate_pct": -1.0}, "borrow_rate_pct"),
    ],
)
def test_bad_order_and_exit_fields_are_refused_by_name(fields, field):
    with pytest.raises(InvalidConfigError) as raised:
        BacktestConfig(**fields).validate()
    assert field in raised.value.errors


def test_the_new_fields_default_to_todays_behaviour():
    candles = make_candles(OPENS, CLOSES)
    targets = np.array([0, 1, 1, 0, -1, 0])
    plain = run_positions(candles, targets, BacktestConfig(timeframe="1d", allow_short=True))
    spelled = BacktestConfig(
        timeframe="1d", allow_short=True, entry_order="market", spread_bps=0.0, atr_period=14
    )
    again = run_positions(candles, targets, spelled)
    assert plain.equity.tolist() == again.equity.tolist()
