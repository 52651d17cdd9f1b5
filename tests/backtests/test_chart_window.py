"""The chart-window API: a finished run's candles merged to fit, its trades, indicators and
curves, for any window from the whole range down to single bars."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtests import services
from backtests.models import BacktestRun, BacktestTrade
from marketdata import selectors as market_selectors
from marketdata.selectors import candle_frame
from strategies.library import indicators as ind
from tests.backtests.conftest import BARS, END, T0
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def chart_url(run: BacktestRun) -> str:
    return f"/api/v1/backtests/{run.pk}/chart/"


def finished(user, strategy, **overrides: Any) -> BacktestRun:  # type: ignore[no-untyped-def]
    run = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, overrides=overrides, enqueue=False
    )
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


@pytest.fixture
def run(user, strategy) -> BacktestRun:  # type: ignore[no-untyped-def]
    # Long and short: always in the market after the first cross, so a trade is still open
    # on the last bar.
    return finished(user, strategy, allow_short=True)


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_whole_run_is_merged_into_exact_buckets(api_client, run, market) -> None:
    response = api_client.get(chart_url(run), {"max_bars": 100})
    assert response.status_code == 200, response.json()
    chart = response.json()
    assert chart["timeframe"] == "1h" and chart["bars"] == BARS
    k = chart["bucket_bars"]
    assert k == 6 and len(chart["candles"]["ts"]) == 100
    bars = candle_frame(instrument_id=market.pk, timeframe="1h")
    groups = bars.groupby(np.arange(len(bars)) // k)
    expected = groups.agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    for field in ("open", "high", "low", "close"):
        assert chart["candles"][field] == expected[field].tolist(), field
    assert chart["candles"]["ts"] == [_iso(ts) for ts in bars.index[::k]]


def test_an_uneven_last_bucket_keeps_its_own_bars(api_client, run, market) -> None:
    chart = api_client.get(chart_url(run), {"max_bars": 7}).json()
    k = chart["bucket_bars"]
    assert k == -(-BARS // 7) and len(chart["candles"]["ts"]) == -(-BARS // k)
    bars = candle_frame(instrument_id=market.pk, timeframe="1h")
    tail = bars.iloc[(BARS // k) * k :]
    assert chart["candles"]["high"][-1] == tail["high"].max()
    assert chart["candles"]["close"][-1] == bars["close"].iloc[-1]


def test_a_narrow_window_is_single_bars_both_ends_included(api_client, run, market) -> None:
    start, end = T0 + timedelta(hours=300), T0 + timedelta(hours=309)
    chart = api_client.get(
        chart_url(run), {"start": start.isoformat(), "end": end.isoformat()}
    ).json()
    assert chart["bucket_bars"] == 1 and chart["bars"] == 10
    bars = candle_frame(instrument_id=market.pk, timeframe="1h", start=start)[:10]
    assert chart["candles"]["ts"] == [_iso(ts) for ts in bars.index]
    assert chart["candles"]["low"] == bars["low"].tolist()


def test_the_window_is_clipped_to_the_run(api_client, run) -> None:
    before = (T0 - timedelta(days=30)).isoformat()
    chart = api_client.get(chart_url(run), {"start": before, "max_bars": 5000}).json()
    assert chart["bars"] == BARS and chart["bucket_bars"] == 1
    assert chart["start"] == T0.isoformat().replace("+00:00", "Z")
    outside = api_client.get(chart_url(run), {"start": "2030-01-01T00:00:00Z"})
    assert outside.status_code == 200 and outside.json()["bars"] == 0


def test_every_trade_of_the_run_is_returned_the_last_one_on_the_last_bar(api_client, run) -> None:
    chart = api_client.get(chart_url(run)).json()
    stored = BacktestTrade.objects.filter(run=run).order_by("entry_time", "id")
    assert stored.count() > 5
    assert [t["id"] for t in chart["trades"]] == [t.pk for t in stored]
    assert chart["trades_truncated"] is False
    last = chart["trades"][-1]
    assert last["is_open"] is True and last["exit_time"] == chart["candles"]["ts"][-1]


def test_a_window_returns_the_trades_entering_or_leaving_it(api_client, run) -> None:
    start, end = T0 + timedelta(hours=200), T0 + timedelta(hours=260)
    chart = api_client.get(
        chart_url(run), {"start": start.isoformat(), "end": end.isoformat()}
    ).json()
    inside = [
        t.pk
        for t in BacktestTrade.objects.filter(run=run).order_by("entry_time", "id")
        if start <= t.entry_time <= end or (t.exit_time and start <= t.exit_time <= end)
    ]
    assert inside and [t["id"] for t in chart["trades"]] == inside
    trade = chart["trades"][0]
    assert {"entry_price", "exit_price", "pnl", "pnl_pct", "direction", "exit_reason"} <= set(trade)


def test_too_many_trades_are_cut_and_said_so(api_client, run, monkeypatch) -> None:
    from backtests import chart_window

    monkeypatch.setattr(chart_window, "MAX_TRADES", 3)
    chart = api_client.get(chart_url(run)).json()
    assert len(chart["trades"]) == 3 and chart["trades_truncated"] is True


def test_overlays_are_the_strategys_lines_one_value_per_candle(api_client, run, market) -> None:
    bars = candle_frame(instrument_id=market.pk, timeframe="1h")
    slow = ind.sma(bars["close"], 20)
    whole = api_client.get(chart_url(run), {"max_bars": 50}).json()
    names = [line["name"] for line in whole["overlays"]]
    assert names == ["SMA 5", "SMA 20"]
    for line in whole["overlays"]:
        assert len(line["values"]) == len(whole["candles"]["ts"]) and line["axis"] == "price"
    k = whole["bucket_bars"]
    last_of_each = slow[np.minimum(np.arange(0, BARS, k) + k, BARS) - 1]
    assert whole["overlays"][1]["values"][0] is None  # still warming up: null, not NaN
    np.testing.assert_allclose(np.array(whole["overlays"][1]["values"], dtype=float), last_of_each)

    # A narrow window far from the start still shows the run's values, warm-up included.
    start = T0 + timedelta(hours=400)
    narrow = api_client.get(
        chart_url(run),
        {"start": start.isoformat(), "end": (start + timedelta(hours=5)).isoformat()},
    ).json()
    assert narrow["bucket_bars"] == 1
    np.testing.assert_allclose(narrow["overlays"][1]["values"], slow[400:406])


def test_an_oscillator_is_marked_for_its_own_axis(api_client, user, market) -> None:
    rsi = StrategyFactory(
        owner=user, instrument=market, kind="rsi_reversion", parameters={"window": 14}
    )
    chart = api_client.get(chart_url(finished(user, rsi)), {"max_bars": 80}).json()
    axes = {line["name"]: line["axis"] for line in chart["overlays"]}
    assert axes == {
        "RSI 14": "oscillator",
        "oversold 30": "oscillator",
        "overbought 70": "oscillator",
    }
    rsi_values = chart["overlays"][0]["values"]
    assert len(rsi_values) == len(chart["candles"]["ts"])
    assert all(v is None or 0 <= v <= 100 for v in rsi_values) and rsi_values[0] is None


def test_the_curves_cover_the_window_with_buy_and_hold(api_client, run, market) -> None:
    bars = candle_frame(instrument_id=market.pk, timeframe="1h")
    chart = api_client.get(chart_url(run), {"max_bars": 50}).json()
    curves = chart["curves"]
    assert 2 <= len(curves["ts"]) <= 50
    assert curves["ts"][0] == _iso(bars.index[0]) and curves["ts"][-1] == _iso(bars.index[-1])
    assert curves["equity"][0] == pytest.approx(float(run.initial_capital))
    assert all(v <= 0 for v in curves["drawdown_pct"])
    hold = float(run.initial_capital) * bars["close"].iloc[-1] / bars["close"].iloc[0]
    assert curves["buy_hold"][-1] == pytest.approx(hold)

    start = T0 + timedelta(hours=100)
    part = api_client.get(chart_url(run), {"start": start.isoformat()}).json()["curves"]
    assert part["ts"][0] == _iso(pd.Timestamp(start))
    assert part["buy_hold"][0] == pytest.approx(
        float(run.initial_capital) * bars["close"].iloc[100] / bars["close"].iloc[0]
    )


def test_the_cached_parquet_copy_gives_the_same_window_as_the_database(
    api_client, run, monkeypatch
) -> None:
    params = {"start": (T0 + timedelta(hours=50)).isoformat(), "max_bars": 40}
    from_db = api_client.get(chart_url(run), params).json()
    reads: list[int] = []
    original = market_selectors._cached_range_slice

    def counted(*args: Any) -> Any:
        frame = original(*args)
        reads.append(0 if frame is None else len(frame))
        return frame

    monkeypatch.setattr(market_selectors, "WINDOW_PARQUET_MIN_BARS", 0)
    monkeypatch.setattr(market_selectors, "_cached_range_slice", counted)
    from_cache = api_client.get(chart_url(run), params).json()
    assert reads and reads[0] > 0  # the run left its candles in the cache; they were read
    assert from_cache == from_db


def test_another_users_run_is_a_404(api_client, other_user, market) -> None:
    theirs = finished(other_user, StrategyFactory(owner=other_user, instrument=market))
    response = api_client.get(chart_url(theirs))
    assert response.status_code == 404


def test_staff_may_chart_any_run(staff_client, run) -> None:
    assert staff_client.get(chart_url(run)).status_code == 200


def test_a_run_not_finished_is_a_409(api_client, user, strategy) -> None:
    queued = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, enqueue=False
    )
    response = api_client.get(chart_url(queued))
    assert response.status_code == 409
    assert "queued" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-13-01T00:00:00Z"}, "end"),
        ({"max_bars": "0"}, "max_bars"),
        ({"max_bars": "many"}, "max_bars"),
        ({"start": "2024-01-10T00:00:00Z", "end": "2024-01-10T00:00:00Z"}, "end"),
        ({"start": "2024-01-10T00:00:00Z", "end": "2024-01-02T00:00:00Z"}, "end"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(api_client, run, params, field) -> None:
    response = api_client.get(chart_url(run), params)
    assert response.status_code == 400
    assert field in response.json()


def test_max_bars_above_the_cap_is_cut_to_it(api_client, run) -> None:
    chart = api_client.get(chart_url(run), {"max_bars": 10**9}).json()
    assert chart["bucket_bars"] == 1 and len(chart["candles"]["ts"]) == BARS
