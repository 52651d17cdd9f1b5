"""The back-office at scale in a real browser: the page of a run with 10,000 trades, its
paginated trade list, and the index's dashboard with its chart, under the strict CSP.

Content only: how fast these pages are is measured by bench/ux.py.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from backtests import services
from backtests.models import BacktestTrade
from tests.backtests.conftest import END, T0, add_candles
from tests.browser import browser_page
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory
from trading.services import fill_record, order_submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PASSWORD = "admin-scale-password-1"  # a throwaway user in a test database
TRADES = 10_000
_ids = count(1)


def _superuser() -> Any:
    user = UserFactory(username="boss", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def _log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def _artifact(name: str) -> Path:
    from django.conf import settings

    folder = settings.VAR_DIR / "test-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(folder / name)


def _watch_console(page: Any) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return problems


def test_a_run_with_ten_thousand_trades_opens_with_its_summary_chart_and_trade_list(
    live_server,
) -> None:  # type: ignore[no-untyped-def]
    user = _superuser()
    instrument = InstrumentFactory(symbol="BTCUSDT")
    add_candles(instrument)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, kind="sma_cross", parameters={"fast": 5, "slow": 20}
    )
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    BacktestTrade.objects.filter(run=run).delete()
    BacktestTrade.objects.bulk_create(
        (
            BacktestTrade(
                run=run,
                direction="long",
                entry_time=T0 + timedelta(minutes=i),
                exit_time=T0 + timedelta(minutes=i, seconds=30),
                entry_price=100.0,
                exit_price=101.0,
                quantity=1.0,
                pnl=1.0,
                pnl_pct=1.0,
                fees=0.0,
                exit_reason="signal",
            )
            for i in range(TRADES)
        ),
        batch_size=2_000,
    )

    with browser_page() as page:
        problems = _watch_console(page)
        _log_in(page, live_server.url)
        page.goto(f"{live_server.url}/admin/backtests/backtestrun/{run.pk}/change/")
        page.wait_for_selector("#run-equity-chart .main-svg")  # plotly drew the chart

        assert page.locator("tr.run-trade").count() == 10  # the first and last five only
        summary = page.inner_text(".run-trades-summary")
        assert "10000 trades" in summary and "10000 winners, 0 losers" in summary
        assert page.locator("#run-metrics th", has_text="Sharpe ratio").count() == 1
        assert page.locator("a.lab-link").get_attribute("href") == f"/lab/runs/{run.pk}/"
        # Equity and drawdown share the time axis: one x axis, two y axes.
        axes = page.evaluate(
            "() => { const l = document.getElementById('run-equity-chart').layout;"
            " return [!!l.xaxis2, !!l.yaxis2]; }"
        )
        assert axes == [False, True]
        chart, box = page.evaluate(
            "() => [document.querySelector('#run-equity-chart .main-svg'),"
            " document.getElementById('run-equity')].map(n => n.getBoundingClientRect().width)"
        )
        assert 0 < chart <= box  # the chart fits its box, the page does not scroll sideways
        page.screenshot(path=str(_artifact("admin-run-10000-trades.png")), full_page=True)

        page.click("a.run-trades-all")
        page.wait_for_selector("#result_list")
        assert f"run__id__exact={run.pk}" in page.url
        assert page.locator("#result_list tbody tr").count() == 100
        assert "10000 backtest trades" in page.inner_text(".paginator")

    assert problems == []


def test_the_dashboard_draws_this_months_pnl_without_breaking_the_content_policy(
    live_server,
) -> None:  # type: ignore[no-untyped-def]
    _superuser()
    trader = UserFactory(username="trader")
    btc = InstrumentFactory(
        symbol="BTCUSDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
    )
    now = timezone.now()
    for side, price, ts in (("buy", "100", now - timedelta(minutes=2)), ("sell", "110", now)):
        order = order_submit(
            owner=trader,
            instrument=btc,
            side=side,
            quantity=Decimal(1),
            client_order_id=f"e2e-{next(_ids)}",
        ).order
        fill_record(
            order=order,
            venue_trade_id=f"e2e-v-{next(_ids)}",
            quantity=Decimal(1),
            price=Decimal(price),
            ts=ts,
        )

    with browser_page() as page:
        problems = _watch_console(page)
        _log_in(page, live_server.url)
        page.goto(f"{live_server.url}/admin/")
        page.wait_for_selector("#pnl-chart .main-svg")
        bars = page.evaluate("() => document.getElementById('pnl-chart').data[0].y")
        days = page.evaluate("() => document.getElementById('pnl-chart').data[0].x")

        assert len(bars) == len(days) == now.day  # one bar per day of the month so far
        assert sum(bars) == 10
        assert "10" in page.inner_text("#pnl-month")
        assert page.locator("tr.recent-fill").count() == 2
        assert page.locator(".app-internals").count() == 1
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert icon == "/static/favicon.svg"
        page.screenshot(path=str(_artifact("admin-dashboard.png")), full_page=True)

    # A refused inline script or style shows up as a console error ("Refused to ...").
    assert problems == []
