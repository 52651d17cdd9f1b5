"""Staff start, re-run and cancel backtests in the admin and see metrics and the chart."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from backtests import services
from backtests.models import BacktestRun, BacktestTrade, Sweep
from marketdata.models import Candle
from strategies.models import Strategy
from tests.backtests.conftest import END, T0
from tests.factories import InstrumentFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/backtests/backtestrun/"
TRADES = "/admin/backtests/backtesttrade/"
SWEEPS = "/admin/backtests/sweep/"


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
    # The chart is drawn by plotly from the curve in a json_script block (CSP: no inline JS).
    assert 'id="run-equity-chart"' in page and 'id="run-equity-data"' in page
    assert "vendor/plotly.min.js" in page and "backtests/admin/run_chart.js" in page
    assert "data-ws=" not in page  # finished: no live progress to follow
    assert f"/api/v1/backtests/{run.pk}/export/?format=xlsx" in page
    assert "Entry price" in page and page.count('<tr class="run-trade">') > 0


def test_a_runs_page_shows_the_metrics_once_in_words_and_the_parameters_in_words(
    staff, user, strategy
) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    assert "sharpe" in run.metrics and "max_drawdown_pct" in run.metrics

    page = staff.get(f"{CHANGELIST}{run.pk}/change/").content.decode()

    assert page.count(">Sharpe ratio<") == 1 and page.count(">Max drawdown %<") == 1
    assert "sharpe" not in page and "max_drawdown_pct" not in page  # no raw keys, no JSON
    assert "fast 5 · slow 20" in page
    assert "{&quot;fast&quot;" not in page and "&#x27;fast&#x27;" not in page


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


def test_a_runs_page_shows_every_setting_that_determined_its_result(staff, finished_run) -> None:
    page = staff.get(f"{CHANGELIST}{finished_run.pk}/change/").content.decode()
    shown_elsewhere = {"id", "parameters", "metrics", "progress", "bars_done", "bars_total"}
    for field in BacktestRun._meta.fields:
        if field.name not in shown_elsewhere:
            assert f'class="form-row field-{field.name}"' in page, field.name
    assert 'class="form-row field-parameters_text"' in page


def test_a_cache_hits_page_summarises_and_links_the_trades_of_the_run_that_computed_them(
    staff, user, strategy
) -> None:
    source = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=source.pk, task_id=source.celery_task_id)
    hit = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    assert hit.cache_hit and hit.shared_from_id == source.pk
    trades = BacktestTrade.objects.filter(run=source)
    assert trades.count() > 10

    page = staff.get(f"{CHANGELIST}{hit.pk}/change/").content.decode()

    assert f"{CHANGELIST}{source.pk}/change/" in page
    assert f"{TRADES}?run__id__exact={source.pk}" in page
    assert f"All {trades.count()} trades" in page
    assert page.count('<tr class="run-trade">') == 10  # the first five and the last five


def test_a_runs_admin_page_cannot_change_what_it_computed(staff, user, strategy) -> None:  # type: ignore[no-untyped-def]
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    url = f"/admin/backtests/backtestrun/{run.pk}/change/"
    page = staff.get(url).content.decode()
    assert 'name="kind"' not in page and 'name="initial_capital"' not in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page  # nothing to save
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


# --- Scale: a run's page and its trade list cost the same whatever the trade count --------


def _add_trades(run: BacktestRun, count: int, *, after: int = 0) -> None:
    """`count` more trades for `run`, one an hour from 2024-03-01 (`after` hours later),
    alternately lost and won."""
    start = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=after)
    BacktestTrade.objects.bulk_create(
        BacktestTrade(
            run=run,
            direction="long" if i % 2 else "short",
            entry_time=start + timedelta(hours=i),
            exit_time=start + timedelta(hours=i, minutes=30),
            entry_price=100.0,
            exit_price=101.0 if i % 2 else 99.0,
            quantity=1.0,
            pnl=1.0 if i % 2 else -2.0,
            pnl_pct=1.0 if i % 2 else -2.0,
            fees=0.1,
            exit_reason="signal",
        )
        for i in range(count)
    )


@pytest.fixture
def finished_run(user, strategy) -> BacktestRun:  # type: ignore[no-untyped-def]
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    return run


def _queries(client, url: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_a_run_with_thousands_of_trades_shows_a_summary_and_links_the_full_list(
    staff, finished_run
) -> None:
    BacktestTrade.objects.filter(run=finished_run).delete()
    _add_trades(finished_run, 2_500)

    page = staff.get(f"{CHANGELIST}{finished_run.pk}/change/").content.decode()

    assert page.count('<tr class="run-trade">') == 10  # not 2,500 rows
    assert "<strong>2500</strong> trades" in page
    assert "1250 winners, 1250 losers" in page
    assert "total PnL -1,250.00" in page  # 1,250 x 1.0 + 1,250 x -2.0
    assert "… 2490 more …" in page
    link = f'href="{TRADES}?run__id__exact={finished_run.pk}"'
    assert link in page and "All 2500 trades" in page
    assert "2024-03-01 00:00" in page  # the first trade, in UTC
    assert f"{datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=2_499):%Y-%m-%d %H:%M}" in page


def test_the_run_pages_queries_do_not_grow_with_its_trades(staff, finished_run) -> None:
    url = f"{CHANGELIST}{finished_run.pk}/change/"
    few, _ = _queries(staff, url)
    _add_trades(finished_run, 2_000)
    many, page = _queries(staff, url)
    assert "All 2" in page and page.count('<tr class="run-trade">') == 10
    assert many == few


def test_the_trade_list_of_a_run_is_paginated_and_its_queries_do_not_grow(
    staff, user, strategy, finished_run
) -> None:
    other = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    _add_trades(other, 150)  # trades of another run stay out of the list
    url = f"{TRADES}?run__id__exact={finished_run.pk}"
    BacktestTrade.objects.filter(run=finished_run).delete()
    _add_trades(finished_run, 5)
    few, _ = _queries(staff, url)  # 5 rows
    _add_trades(finished_run, 2_000, after=5)

    many, page = _queries(staff, url)  # 100 rows: a query per row would show here

    assert many == few
    assert page.count('<td class="field-pnl_text">') == 100  # one page of 100
    assert "2005 backtest trades" in page
    assert f"Backtest #{other.pk} " not in page
    assert str(finished_run) in page  # the run filter names the chosen run
    # Ordered by the (run, entry_time) index: the run's first trade first.
    rows = re.findall(r'<td class="field-entry_time_text">([^<]+)</td>', page)
    assert rows[:2] == ["2024-03-01 00:00", "2024-03-01 01:00"]


def test_the_trade_list_refuses_a_run_id_that_is_not_a_number(staff) -> None:
    response = staff.get(TRADES, {"run__id__exact": "x"})
    assert response.status_code == 302 and "e=1" in response.url


def test_trades_are_results_staff_look_at_but_never_edit(staff, finished_run) -> None:
    trade = BacktestTrade.objects.filter(run=finished_run).first()
    assert trade is not None
    page = staff.get(f"{TRADES}{trade.pk}/change/").content.decode()
    assert 'name="pnl"' not in page and 'name="_save"' not in page
    assert staff.post(f"{TRADES}{trade.pk}/delete/", {"post": "yes"}).status_code == 403
    assert BacktestTrade.objects.filter(pk=trade.pk).exists()


# --- Links to the lab and the sweep list ----------------------------------------------------


def _sweep(owner: User, strategy: Strategy | None, kind: str = "sma_cross") -> Sweep:
    return Sweep.objects.create(
        owner=owner,
        strategy=strategy,
        kind=kind,
        instrument=(strategy.instrument if strategy else InstrumentFactory()),
        timeframe="1h",
        start=T0,
        end=END,
        initial_capital=10_000,
        fee_rate="0.001",
        grid={"fast": [5, 10], "slow": [20]},
    )


def test_run_sweep_and_strategy_pages_link_to_the_same_object_in_the_lab(
    client, user, strategy, finished_run
) -> None:
    sweep = _sweep(user, strategy)
    staff_owner = User.objects.get(pk=user.pk)
    staff_owner.is_staff = staff_owner.is_superuser = True
    staff_owner.save()
    client.force_login(staff_owner)

    pages = {
        reverse("lab-run", args=[finished_run.pk]): f"{CHANGELIST}{finished_run.pk}/change/",
        reverse("lab-sweep", args=[sweep.pk]): f"{SWEEPS}{sweep.pk}/change/",
        reverse("lab-strategy-edit", args=[strategy.pk]): (
            f"/admin/strategies/strategy/{strategy.pk}/change/"
        ),
    }
    for lab_url, admin_url in pages.items():
        page = client.get(admin_url).content.decode()
        assert f'<a href="{lab_url}" class="viewsitelink lab-link">View in the lab</a>' in page
        assert client.get(lab_url).status_code == 200, lab_url


def test_the_strategy_page_links_to_the_lab_only_for_its_owner(staff, strategy) -> None:
    # The lab edits its users' own strategies; anyone else's is a 404 there.
    page = staff.get(f"/admin/strategies/strategy/{strategy.pk}/change/").content.decode()
    assert "View in the lab" not in page
    assert reverse("lab-strategy-edit", args=[strategy.pk]) not in page


def test_the_sweep_list_names_the_strategy_or_else_the_kind(staff, user, strategy) -> None:
    named = _sweep(user, strategy)
    orphan = _sweep(user, None, kind="rsi_reversion")  # its strategy was deleted

    page = staff.get(SWEEPS).content.decode()

    cells = re.findall(r'<td class="field-strategy_name">([^<]*)</td>', page)
    assert sorted(cells) == sorted([strategy.name, "rsi_reversion"])
    assert named.pk != orphan.pk


def test_an_ml_runs_page_shows_its_folds_confusion_matrix_and_importances_without_retraining(
    staff, api_client, user, market
) -> None:
    from backtests.ml import DIAGNOSTICS_ARTIFACT, MODEL_ARTIFACTS
    from persistence.models import Artifact
    from strategies.library.ml.models import MODEL_LABELS
    from tests.backtests.test_ml import SMALL_ML, run_to_completion
    from tests.factories import StrategyFactory

    ml_strategy = StrategyFactory(
        owner=user, instrument=market, kind="ml_predictor", parameters=SMALL_ML
    )
    run = run_to_completion(api_client, ml_strategy)
    assert run["status"] == "succeeded", run
    diagnostics = api_client.get(f"/api/v1/backtests/{run['id']}/ml/").json()
    artifacts = Artifact.objects.count()

    page = staff.get(f"{CHANGELIST}{run['id']}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    section = html[html.index('id="run-ml"') : html.index('id="run-metrics"')]
    assert MODEL_LABELS["xgboost"] in section  # SMALL_ML trains model 2
    # One row per fold, with its window bounds, sizes and out-of-sample scores.
    rows = re.findall(r"<tr><td class=\"number\">(\d+)</td>(.*?)</tr>", section, re.S)
    assert [int(fold) for fold, _ in rows] == [f["fold"] for f in diagnostics["folds"]]
    for (_, cells), fold in zip(rows, diagnostics["folds"], strict=True):
        assert f"{fold['predict_start']}\N{EN DASH}{fold['predict_end'] - 1}" in cells
        assert f"{fold['train_start']}\N{EN DASH}{fold['train_end'] - 1}" in cells
        assert f">{fold['test_bars']}<" in cells and f">{fold['accuracy']:.3f}<" in cells
        assert f">{fold['roc_auc']:.3f}<" in cells
        assert ("reused" if fold["reused"] else "trained") in cells
    (tn, fp), (fn, tp) = diagnostics["confusion"]
    assert re.search(
        rf"Actually down</th><td class=\"number\">{tn}</td><td class=\"number\">{fp}<", section
    )
    assert re.search(
        rf"Actually up</th><td class=\"number\">{fn}</td><td class=\"number\">{tp}<", section
    )
    strongest = max(diagnostics["importances"], key=diagnostics["importances"].get)
    first_feature = re.search(r'id="run-ml-importance".*?<tbody>\s*<tr><th scope="row">([^<]+)<',
                              section, re.S)  # fmt: skip
    assert first_feature is not None and first_feature.group(1) == strongest
    assert f"{diagnostics['permutation_importances'][strongest]:.4f}" in section
    # Read from the stored artifact: nothing retrained, nothing written.
    assert Artifact.objects.count() == artifacts
    assert Artifact.objects.filter(name__in=MODEL_ARTIFACTS.values()).count() == 4
    assert Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).count() == 1


def test_an_ml_runs_page_without_stored_diagnostics_says_so_and_trains_nothing(
    staff, api_client, user, market
) -> None:
    from backtests.ml import DIAGNOSTICS_ARTIFACT, MODEL_ARTIFACTS
    from persistence.models import Artifact
    from tests.backtests.test_ml import SMALL_ML, run_to_completion
    from tests.factories import StrategyFactory

    ml_strategy = StrategyFactory(
        owner=user, instrument=market, kind="ml_predictor", parameters=SMALL_ML
    )
    run = run_to_completion(api_client, ml_strategy)
    Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).delete()
    Artifact.objects.filter(name__in=MODEL_ARTIFACTS.values()).delete()

    page = staff.get(f"{CHANGELIST}{run['id']}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="run-ml-missing"' in html and 'id="run-ml-folds"' not in html
    # Rebuilding would have trained and stored every fold's model again.
    assert not Artifact.objects.filter(name__in=MODEL_ARTIFACTS.values()).exists()
    assert not Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).exists()
