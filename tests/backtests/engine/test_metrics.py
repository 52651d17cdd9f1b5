"""Every metric on small hand-computed cases, plus the edge cases that break formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from backtests.engine import (
    HEADLINE_METRICS,
    METRIC_DEFINITIONS,
    BacktestConfig,
    InvalidConfigError,
    run_positions,
    run_sweep,
)
from backtests.engine.metrics import _trade_stats
from backtests.engine.simulate import Trades
from tests.backtests.engine.bars import make_candles, random_walk

DAY = 86_400.0
CONFIG = BacktestConfig(fee_rate=0.0, timeframe="1d")


@pytest.fixture(scope="module")
def two_trades():
    """Five daily bars. Long bar 1 -> bar 2 (100 -> 110, closed), long again from bar 4 at
    99, still open at the 94.05 close.

    equity:        10000, 11000, 11000, 11000, 10450
    bar returns r:        0.10,  0,     0,     -0.05
    asset returns m:      0.10, -0.10,  0,     -0.05
    """
    candles = make_candles([100, 100, 110, 99, 99], [100, 110, 99, 99, 94.05])
    return run_positions(candles, [1, 0, 0, 1, 1], CONFIG)


def test_every_defined_metric_is_returned_in_order(two_trades):
    assert list(two_trades.metrics) == list(METRIC_DEFINITIONS)
    assert set(HEADLINE_METRICS) <= set(METRIC_DEFINITIONS)


def test_period_and_exposure(two_trades):
    m = two_trades.metrics
    assert m["start"] == "2024-01-01T00:00:00+00:00"
    assert m["end"] == "2024-01-05T00:00:00+00:00"
    assert m["duration_s"] == 4 * DAY
    assert m["bars"] == 5
    assert m["exposure_pct"] == pytest.approx(40.0)  # long at the closes of bars 1 and 4


def test_equity_and_return_figures(two_trades):
    m = two_trades.metrics
    assert m["final_equity"] == pytest.approx(10_450)
    assert m["peak_equity"] == pytest.approx(11_000)
    assert m["min_equity"] == pytest.approx(10_000)
    assert m["profit"] == pytest.approx(450)
    assert m["commissions"] == 0
    assert m["return_pct"] == pytest.approx(4.5)
    assert m["buy_hold_return_pct"] == pytest.approx(-5.95)
    assert m["annualized_return_pct"] == pytest.approx((1.045 ** (365 / 4) - 1) * 100)
    assert m["cagr_pct"] == pytest.approx((1.045 ** (365 / 4) - 1) * 100)


def test_risk_ratios(two_trades):
    m = two_trades.metrics
    mean_r = 0.05 / 4
    sd = math.sqrt((0.0875**2 + 0.0125**2 + 0.0125**2 + 0.0625**2) / 3)
    assert m["annualized_volatility_pct"] == pytest.approx(sd * math.sqrt(365) * 100)
    assert m["sharpe"] == pytest.approx(mean_r / sd * math.sqrt(365))
    downside = math.sqrt(0.05**2 / 4)
    assert m["sortino"] == pytest.approx(mean_r / downside * math.sqrt(365))
    assert m["calmar"] == pytest.approx(m["cagr_pct"] / 100 / 0.05)
    # cov(r, m) = 0.013125 / 3, var(m) = 0.021875 / 3.
    assert m["beta"] == pytest.approx(0.6)
    assert m["alpha_pct"] == pytest.approx((0.0125 - 0.6 * -0.0125) * 365 * 100)


def test_drawdown_figures(two_trades):
    m = two_trades.metrics
    assert m["max_drawdown_pct"] == pytest.approx(-5.0)
    assert m["avg_drawdown_pct"] == pytest.approx(-5.0)
    # Peak at bar 3's close, never regained: runs to the last bar.
    assert m["max_drawdown_duration_s"] == DAY
    assert m["avg_drawdown_duration_s"] == DAY


def test_trade_statistics_count_closed_trades_only(two_trades):
    m = two_trades.metrics
    assert m["num_trades"] == 1 and m["open_trades"] == 1
    assert m["long_trades"] == 1 and m["short_trades"] == 0
    assert m["win_rate_pct"] == 100.0
    assert m["best_trade_pct"] == pytest.approx(10.0)
    assert m["worst_trade_pct"] == pytest.approx(10.0)
    assert m["avg_trade_pct"] == pytest.approx(10.0)
    assert m["max_trade_duration_s"] == DAY and m["avg_trade_duration_s"] == DAY
    assert m["avg_winner_duration_s"] == DAY and m["avg_loser_duration_s"] is None
    assert m["profit_factor"] is None  # no losing trade: undefined, not infinite
    assert m["expectancy"] == pytest.approx(1_000)
    assert m["expectancy_ratio"] is None
    assert m["sqn"] is None  # needs two trades
    assert m["kelly"] == pytest.approx(1.0)
    assert m["max_consecutive_wins"] == 1 and m["max_consecutive_losses"] == 0


def test_daily_figures(two_trades):
    m = two_trades.metrics
    # Day returns: 0 (vs initial capital), +10%, 0, 0, -5%.
    assert m["best_day_pct"] == pytest.approx(10.0)
    assert m["worst_day_pct"] == pytest.approx(-5.0)
    assert (m["winning_days"], m["drawn_days"], m["losing_days"]) == (1, 3, 1)


def test_daily_figures_group_intraday_bars_by_utc_day():
    # 1-hour bars over two days: one long trade on day one, flat on day two.
    closes = [100.0, 100.0] + [102.0] * 46  # long from bar 1 to bar 4 gains 2% on day one
    opens = [100.0, *closes[:-1]]
    candles = make_candles(opens, closes, freq="1h")
    result = run_positions(candles, [1] * 3 + [0] * 45, BacktestConfig(fee_rate=0, timeframe="1h"))
    m = result.metrics
    assert (m["winning_days"], m["drawn_days"], m["losing_days"]) == (1, 1, 0)
    assert m["best_day_pct"] == pytest.approx(2.0)


def test_losing_streaks_profit_factor_sqn_and_kelly():
    # Three round trips: 100 -> 110, 100 -> 90, 100 -> 95.
    opens = [100, 100, 110, 100, 90, 100, 95, 95]
    candles = make_candles(opens, opens)
    result = run_positions(candles, [1, 0, 1, 0, 1, 0, 0, 0], CONFIG)
    m = result.metrics
    pct = result.trades.pnl_pct.to_numpy()
    assert np.allclose(pct, [10, -10, -5])
    pnl = result.trades.pnl.to_numpy()
    assert m["profit_factor"] == pytest.approx(pnl[0] / -(pnl[1] + pnl[2]))
    assert m["win_rate_pct"] == pytest.approx(100 / 3)
    assert m["max_consecutive_wins"] == 1 and m["max_consecutive_losses"] == 2
    assert m["sqn"] == pytest.approx(math.sqrt(3) * pct.mean() / pct.std(ddof=1))
    ratio = 10 / 7.5  # average win over average loss, in trade %
    assert m["kelly"] == pytest.approx(1 / 3 - (2 / 3) / ratio)
    assert m["expectancy_ratio"] == pytest.approx((1 + ratio) / 3 - 1)
    assert m["expectancy"] == pytest.approx(pnl.mean())


def test_kelly_is_undefined_when_the_winners_returns_round_to_zero():
    # A winning trade (P&L > 0) whose return in % is 0: the win/loss ratio is 0, and the
    # formula would divide by it.
    trades = Trades(
        entry_bar=np.array([0, 2]),
        exit_bar=np.array([1, 3]),
        direction=np.array([1.0, 1.0]),
        entry_price=np.array([100.0, 100.0]),
        exit_price=np.array([100.0, 90.0]),
        quantity=np.array([1.0, 1.0]),
        pnl=np.array([1e-9, -10.0]),
        pnl_pct=np.array([0.0, -10.0]),
        fees=np.zeros(2),
        reason=np.zeros(2, dtype=np.int64),
        is_open=np.array([False, False]),
    )
    stats = _trade_stats(trades, np.arange(4, dtype=np.int64) * 86_400 * 10**9)
    assert stats["kelly"] is None
    assert stats["win_rate_pct"] == 50.0 and stats["expectancy_ratio"] == pytest.approx(-0.5)


def test_all_losing_trades():
    opens = [100, 100, 90, 90, 80, 80]
    result = run_positions(make_candles(opens, opens), [1, 0, 1, 0, 0, 0], CONFIG)
    m = result.metrics
    assert m["num_trades"] == 2 and m["win_rate_pct"] == 0.0
    assert m["profit_factor"] == 0.0
    assert m["kelly"] is None and m["expectancy_ratio"] == -1.0
    assert m["max_consecutive_losses"] == 2 and m["best_trade_pct"] == pytest.approx(-10.0)


def test_no_trades_leaves_trade_metrics_undefined_and_equity_flat():
    candles = random_walk(500, freq="1h")
    m = run_positions(candles, np.zeros(500), BacktestConfig(timeframe="1h")).metrics
    assert m["num_trades"] == 0 and m["open_trades"] == 0
    for key in ("win_rate_pct", "profit_factor", "sqn", "kelly", "expectancy", "best_trade_pct"):
        assert m[key] is None, key
    assert m["return_pct"] == 0 and m["max_drawdown_pct"] == 0
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["annualized_volatility_pct"] == 0 and m["exposure_pct"] == 0
    assert m["beta"] == 0 and m["alpha_pct"] == 0
    assert m["max_consecutive_wins"] == 0 and m["drawn_days"] == m["winning_days"] + 21


def test_a_flat_price_has_no_beta_and_loses_only_fees():
    candles = make_candles([50.0] * 10, [50.0] * 10)
    config = BacktestConfig(fee_rate=0.001, timeframe="1d")
    m = run_positions(candles, [1, 1, 0, 0, 1, 1, 0, 0, 0, 0], config).metrics
    assert m["buy_hold_return_pct"] == 0.0
    assert m["beta"] is None and m["alpha_pct"] is None
    assert m["num_trades"] == 2 and m["win_rate_pct"] == 0.0
    assert m["final_equity"] < 10_000
    assert m["commissions"] == pytest.approx(10_000 - m["final_equity"])


def test_a_single_bar():
    candles = make_candles([100.0], [101.0])
    m = run_positions(candles, [1.0], CONFIG).metrics
    assert m["bars"] == 1 and m["duration_s"] == 0
    assert m["final_equity"] == 10_000 and m["return_pct"] == 0
    assert m["cagr_pct"] is None and m["annualized_return_pct"] is None
    assert m["sharpe"] is None and m["annualized_volatility_pct"] is None
    assert m["max_drawdown_pct"] == 0 and m["num_trades"] == 0
    assert m["drawn_days"] == 1 and m["best_day_pct"] == 0


def test_metrics_are_json_without_nan_or_infinity():
    for seed in range(5):
        candles = random_walk(3_000, seed=seed)
        rng = np.random.default_rng(seed)
        target = np.repeat(rng.choice([-1.0, 0.0, 1.0], 300), 10)
        config = BacktestConfig(allow_short=True, stop_loss_pct=0.5, take_profit_pct=0.5)
        json.dumps(run_positions(candles, target, config).metrics, allow_nan=False)


def test_annualisation_follows_the_timeframe():
    candles = random_walk(2_000, seed=4, freq="1h")
    target = np.ones(2_000)
    hourly = run_positions(candles, target, BacktestConfig(timeframe="1h")).metrics
    daily = random_walk(2_000, seed=4, freq="1D")
    per_day = run_positions(daily, target, BacktestConfig(timeframe="1d")).metrics
    # Same returns bar for bar, annualised with 8,760 and 365 bars a year.
    assert per_day["sharpe"] == pytest.approx(hourly["sharpe"] / math.sqrt(24))


# --- Timeframes and calendars ---------------------------------------------------------


def test_a_timeframe_the_candles_are_not_spaced_at_is_refused():
    # The defect: daily bars under the default "1m" gave a Sharpe of 45.
    daily = random_walk(300, seed=3, freq="1D")
    with pytest.raises(InvalidConfigError, match="1 day apart") as caught:
        run_positions(daily, np.ones(300), BacktestConfig(timeframe="1m"))
    assert list(caught.value.errors) == ["timeframe"]
    with pytest.raises(InvalidConfigError, match="timeframe"):
        run_sweep(daily, "sma_cross", {"fast": [5], "slow": [20]}, BacktestConfig(timeframe="1h"))


def test_without_a_timeframe_it_is_inferred_from_the_candles():
    daily = random_walk(300, seed=3, freq="1D")
    result = run_positions(daily, np.ones(300), BacktestConfig())
    assert result.config.timeframe == "1d"
    stated = run_positions(daily, np.ones(300), BacktestConfig(timeframe="1d"))
    assert result.metrics == stated.metrics
    odd = random_walk(50, seed=3, freq="7min")
    with pytest.raises(InvalidConfigError, match="Cannot infer"):
        run_positions(odd, np.ones(50), BacktestConfig())


def test_weekends_and_missing_bars_do_not_upset_the_timeframe():
    weekdays = random_walk(400, seed=6, freq="B")  # Monday to Friday
    rng = np.random.default_rng(0)
    gappy = weekdays.iloc[np.sort(rng.choice(400, 300, replace=False))]
    result = run_positions(gappy, np.ones(300), BacktestConfig(calendar="exchange"))
    assert result.config.timeframe == "1d"
    # A Thursday, a Friday and a Monday: spaced 1 and 3 days, still daily bars.
    three = weekdays.iloc[3:6]
    assert run_positions(three, np.ones(3), BacktestConfig()).config.timeframe == "1d"


def test_weekly_and_monthly_bars():
    weekly = random_walk(120, seed=2, freq="7D")
    assert run_positions(weekly, np.ones(120), BacktestConfig()).config.timeframe == "1w"
    monthly = random_walk(60, seed=2, freq="MS")  # 28 to 31 days apart
    result = run_positions(monthly, np.ones(60), BacktestConfig(timeframe="1M"))
    again = run_positions(monthly, np.ones(60), BacktestConfig())
    assert again.config.timeframe == "1M" and again.metrics == result.metrics
    r = result.equity.pct_change().to_numpy()[1:]
    assert result.metrics["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(12))
    with pytest.raises(InvalidConfigError, match="timeframe"):
        run_positions(monthly, np.ones(60), BacktestConfig(timeframe="1w"))


def test_an_exchange_calendar_annualises_daily_bars_with_252_sessions():
    weekdays = random_walk(500, seed=9, freq="B")
    target = np.ones(500)
    crypto = run_positions(weekdays, target, BacktestConfig(timeframe="1d")).metrics
    exchange = run_positions(weekdays, target, BacktestConfig(calendar="exchange")).metrics
    # The defect: a 365-day year reads a daily equity Sharpe about 1.2 times too high.
    assert crypto["sharpe"] / exchange["sharpe"] == pytest.approx(math.sqrt(365 / 252))
    assert exchange["annualized_volatility_pct"] == pytest.approx(
        crypto["annualized_volatility_pct"] * math.sqrt(252 / 365)
    )
    custom = BacktestConfig(calendar="exchange", trading_days_per_year=250)
    assert run_positions(weekdays, target, custom).metrics["sharpe"] == pytest.approx(
        exchange["sharpe"] * math.sqrt(250 / 252)
    )


def test_exchange_intraday_bars_per_session_are_inferred_or_configured():
    # Seven hourly bars a weekday (a 14:30-21:00 UTC session), 60 sessions.
    days = pd.bdate_range("2024-01-01", periods=60, tz="UTC")
    index = pd.DatetimeIndex(
        [
            day + pd.Timedelta(hours=14, minutes=30) + pd.Timedelta(hours=h)
            for day in days
            for h in range(7)
        ]
    )
    candles = random_walk(len(index), seed=5, freq="1h").set_axis(index)
    target = np.ones(len(index))
    inferred = run_positions(candles, target, BacktestConfig(calendar="exchange")).metrics
    r = run_positions(candles, target, BacktestConfig(timeframe="1h")).equity.pct_change()
    r = r.to_numpy()[1:]
    assert inferred["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252 * 7))
    configured = BacktestConfig(calendar="exchange", bars_per_day=6.5)
    assert run_positions(candles, target, configured).metrics["sharpe"] == pytest.approx(
        r.mean() / r.std(ddof=1) * math.sqrt(252 * 6.5)
    )


def test_annualised_return_counts_bars_and_cagr_counts_calendar_days():
    # On gapless 24/7 bars the two agree.
    hourly = random_walk(3_000, seed=1, freq="1h")
    m = run_positions(hourly, np.ones(3_000), BacktestConfig()).metrics
    assert m["annualized_return_pct"] == pytest.approx(m["cagr_pct"], rel=1e-9)
    # On weekday bars of an exchange they follow their own year: 252 sessions, 365 days.
    weekdays = random_walk(500, seed=9, freq="B")
    result = run_positions(weekdays, np.ones(500), BacktestConfig(calendar="exchange"))
    growth = result.metrics["final_equity"] / 10_000
    days = (weekdays.index[-1] - weekdays.index[0]).days
    assert result.metrics["annualized_return_pct"] == pytest.approx(
        (growth ** (252 / 499) - 1) * 100
    )
    assert result.metrics["cagr_pct"] == pytest.approx((growth ** (365 / days) - 1) * 100)
