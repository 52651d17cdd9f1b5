"""Staff start, re-run and cancel backtests in the admin and see metrics and the chart."""

from __future__ import annotations

import pytest

from backtests import services
from backtests.models import BacktestRun, BacktestTrade
from tests.backtests.conftest import END, T0

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/backtests/backtestrun/"


@pytest.fixture
def staff(client, staff_user):  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    return client


def test_staff_start_a_backtest_from_the_start_form(staff, strategy) -> None:
    assert staff.get(f"{CHANGELIST}add/").url == f"{CHANGELIST}start/"
    page = staff.get(f"{CHANGELIST}start/", {"strategy": strategy.pk})
    assert page.status_code == 200
    response = staff.post(
        f"{CHANGELIST}start/",
        {"strategy": strategy.pk, "start": "2024-01-01 00:00", "end": "2024-01-26 00:00"},
    )
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response.url == f"{CHANGELIST}{run.pk}/change/"
    assert run.status == "queued"


def test_the_strategy_list_has_a_start_backtest_action(staff, strategy) -> None:
    response = staff.post(
        "/admin/strategies/strategy/",
        {"action": "start_backtest", "_selected_action": [strategy.pk]},
    )
    assert response.status_code == 302
    assert response.url == f"{CHANGELIST}start/?strategy={strategy.pk}"


def test_a_finished_runs_page_shows_metrics_chart_and_trades(staff, user, strategy) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    page = staff.get(f"{CHANGELIST}{run.pk}/change/").content.decode()
    assert '<svg class="equity-chart"' in page
    assert "sharpe" in page and "max_drawdown_pct" in page
    assert f"/api/v1/backtests/{run.pk}/export/?format=xlsx" in page
    assert "entry_price" in page or "Entry price" in page


def test_a_running_runs_page_subscribes_to_live_progress(staff, user, strategy) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    page = staff.get(f"{CHANGELIST}{run.pk}/change/").content.decode()
    assert f"/ws/backtests/{run.pk}/" in page and "new WebSocket" in page


def test_cancel_and_rerun_actions_go_through_the_services(staff, user, strategy) -> None:
    queued = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    staff.post(CHANGELIST, {"action": "cancel_runs", "_selected_action": [queued.pk]})
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    staff.post(CHANGELIST, {"action": "rerun_runs", "_selected_action": [queued.pk]})
    rerun = BacktestRun.objects.exclude(pk=queued.pk).get()
    assert rerun.status == "queued" and rerun.params_hash == queued.params_hash


def test_a_cache_hits_page_lists_the_trades_of_the_run_that_computed_them(
    staff, user, strategy
) -> None:
    source = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=source.pk, task_id=source.celery_task_id)
    hit = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    assert hit.cache_hit and hit.shared_from_id == source.pk
    page = staff.get(f"{CHANGELIST}{hit.pk}/change/").content.decode()
    assert 'id="shared-trades"' in page
    assert f"{CHANGELIST}{source.pk}/change/" in page
    trades = BacktestTrade.objects.filter(run=source)
    assert trades.count() > 1
    assert page.count('<tr class="shared-trade">') == trades.count()


def test_a_runs_admin_page_cannot_change_what_it_computed(staff, user, strategy) -> None:  # type: ignore[no-untyped-def]
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    url = f"/admin/backtests/backtestrun/{run.pk}/change/"
    page = staff.get(url).content.decode()
    assert 'name="kind"' not in page and 'name="initial_capital"' not in page
    staff.post(url, {"kind": "buy_and_hold", "initial_capital": "1"})
    run.refresh_from_db()
    assert run.kind == "sma_cross" and run.initial_capital != 1
