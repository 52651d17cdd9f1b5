"""Staff start, re-run and cancel backtests in the admin and see metrics and the chart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.staticfiles import finders

from accounts.models import User
from backtests import services
from backtests.models import BacktestRun, BacktestTrade
from marketdata.models import Candle
from strategies.models import Strategy
from tests.backtests.conftest import END, T0
from tests.factories import UserFactory

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
    assert "data-ws=" not in page  # finished: no live progress to follow
    assert "sharpe" in page and "max_drawdown_pct" in page
    assert f"/api/v1/backtests/{run.pk}/export/?format=xlsx" in page
    assert "entry_price" in page or "Entry price" in page


def test_a_running_runs_page_subscribes_to_live_progress(staff, user, strategy) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    page = staff.get(f"{CHANGELIST}{run.pk}/change/").content.decode()
    # The page names its socket; the script that opens it is a static file (CSP: no inline).
    assert f'data-ws="/ws/backtests/{run.pk}/"' in page
    assert "backtests/admin/run_progress.js" in page
    script = Path(finders.find("backtests/admin/run_progress.js")).read_text()
    assert "new WebSocket" in script and "dataset.ws" in script


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


def test_the_start_form_names_the_problem_in_words_not_a_python_list(staff, strategy) -> None:
    # Not a form field: the service's "timeframe" problem lands above the form, named.
    Strategy.objects.filter(pk=strategy.pk).update(timeframe="7m")
    page = staff.post(
        f"{CHANGELIST}start/",
        {"strategy": strategy.pk, "start": "2024-01-01 00:00", "end": "2024-01-26 00:00"},
    ).content.decode()
    assert "Timeframe: Unknown timeframe" in page
    assert "[&#x27;" not in page and "timeframe: [" not in page
    assert not BacktestRun.objects.exists()


def test_a_failed_rerun_reports_the_field_and_its_message_as_plain_text(
    staff, user, strategy
) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    Candle.objects.all().delete()  # the range can no longer be run

    response = staff.post(
        CHANGELIST, {"action": "rerun_runs", "_selected_action": [run.pk]}, follow=True
    )

    errors = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert len(errors) == 1
    assert errors[0].startswith(f"#{run.pk}: End: No 1h candles of BTCUSDT")
    assert "[" not in errors[0] and "{" not in errors[0]
    assert BacktestRun.objects.count() == 1


def test_the_run_list_keeps_few_columns_so_status_return_and_sharpe_fit(
    staff, user, strategy
) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)

    page = staff.get(CHANGELIST).content.decode()

    columns = re.findall(r'<th scope="col" class="[^"]*\bcolumn-(\w+)', page)
    assert columns == [
        "id",
        "strategy",
        "instrument",
        "timeframe",
        "status",
        "return_pct",
        "sharpe",
        "created_at",
        "auditlog_link",
    ]
    # Two decimals, not a float's seventeen digits.
    assert re.search(r'<td class="field-sharpe">-?[\d,]+\.\d\d</td>', page)
    assert re.search(r'<td class="field-return_pct">-?[\d,]+\.\d\d</td>', page)


# --- Permissions: a custom view or action asks for the permission it needs ---------------


def staff_with(*perms: str) -> User:
    """A staff user (not a superuser) holding exactly these "app_label.codename" permissions."""
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


VIEW_ONLY = ("backtests.view_backtestrun", "strategies.view_strategy")


def _offered_actions(client, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is offered at all
    return [] if form is None else [value for value, _ in form.fields["action"].choices if value]


def test_view_only_staff_cannot_open_or_post_the_start_form(client, strategy) -> None:  # type: ignore[no-untyped-def]
    client.force_login(staff_with(*VIEW_ONLY))
    assert client.get(f"{CHANGELIST}start/", {"strategy": strategy.pk}).status_code == 403
    assert client.get(f"{CHANGELIST}add/", follow=True).status_code == 403
    response = client.post(
        f"{CHANGELIST}start/",
        {"strategy": strategy.pk, "start": "2024-01-01 00:00", "end": "2024-01-26 00:00"},
    )
    assert response.status_code == 403
    assert not BacktestRun.objects.exists()


def test_staff_allowed_to_add_runs_start_one_on_another_users_strategy(client, strategy) -> None:  # type: ignore[no-untyped-def]
    starter = staff_with(*VIEW_ONLY, "backtests.add_backtestrun")
    assert strategy.owner != starter
    client.force_login(starter)
    response = client.post(
        f"{CHANGELIST}start/",
        {"strategy": strategy.pk, "start": "2024-01-01 00:00", "end": "2024-01-26 00:00"},
    )
    run = BacktestRun.objects.get()
    assert response.status_code == 302 and response.url == f"{CHANGELIST}{run.pk}/change/"
    assert run.owner == starter and run.strategy == strategy


def test_view_only_staff_are_not_offered_and_cannot_run_rerun_or_cancel(
    client, user, strategy
) -> None:  # type: ignore[no-untyped-def]
    queued = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    client.force_login(staff_with(*VIEW_ONLY))
    offered = _offered_actions(client, CHANGELIST)
    assert "rerun_runs" not in offered and "cancel_runs" not in offered

    client.post(CHANGELIST, {"action": "cancel_runs", "_selected_action": [queued.pk]})
    client.post(CHANGELIST, {"action": "rerun_runs", "_selected_action": [queued.pk]})
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert BacktestRun.objects.count() == 1


def test_rerun_needs_the_add_permission_and_cancel_the_change_permission(
    client, user, strategy
) -> None:  # type: ignore[no-untyped-def]
    finished = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=finished.pk, task_id=finished.celery_task_id)
    client.force_login(staff_with(*VIEW_ONLY, "backtests.add_backtestrun"))
    assert _offered_actions(client, CHANGELIST) == ["rerun_runs"]
    client.post(CHANGELIST, {"action": "rerun_runs", "_selected_action": [finished.pk]})
    rerun = BacktestRun.objects.exclude(pk=finished.pk).get()
    assert rerun.status == "queued"
    client.post(CHANGELIST, {"action": "cancel_runs", "_selected_action": [rerun.pk]})
    rerun.refresh_from_db()
    assert rerun.status == "queued"  # adding runs is not permission to cancel them

    client.force_login(staff_with(*VIEW_ONLY, "backtests.change_backtestrun"))
    assert _offered_actions(client, CHANGELIST) == ["cancel_runs"]
    client.post(CHANGELIST, {"action": "cancel_runs", "_selected_action": [rerun.pk]})
    rerun.refresh_from_db()
    assert rerun.status == "cancelled"


def test_the_start_backtest_action_on_strategies_needs_the_permission_to_add_runs(
    client, strategy
) -> None:  # type: ignore[no-untyped-def]
    strategies_url = "/admin/strategies/strategy/"
    post = {"action": "start_backtest", "_selected_action": [strategy.pk]}
    client.force_login(staff_with(*VIEW_ONLY))
    assert "start_backtest" not in _offered_actions(client, strategies_url)
    response = client.post(strategies_url, post)
    assert f"{CHANGELIST}start/" not in response.get("Location", "")

    client.force_login(staff_with(*VIEW_ONLY, "backtests.add_backtestrun"))
    assert "start_backtest" in _offered_actions(client, strategies_url)
    response = client.post(strategies_url, post)
    assert response.url == f"{CHANGELIST}start/?strategy={strategy.pk}"
