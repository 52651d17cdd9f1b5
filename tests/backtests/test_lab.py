"""The lab's strategy pages and its sweep form, through real HTTP requests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backtests.models import BacktestRun, Sweep
from strategies.models import Strategy
from tests.backtests.conftest import END, T0
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def _run(strategy: Strategy, **fields: Any) -> BacktestRun:
    values: dict[str, Any] = {
        "owner": strategy.owner,
        "strategy": strategy,
        "kind": strategy.kind,
        "parameters": strategy.parameters,
        "instrument": strategy.instrument,
        "timeframe": strategy.timeframe,
        "start": T0,
        "end": T0 + timedelta(days=1),
        "initial_capital": Decimal("10000"),
        "fee_rate": Decimal("0.001"),
        "status": "succeeded",
    }
    values.update(fields)
    return BacktestRun.objects.create(**values)


def _strategy_post(strategy_or_instrument_id: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "new trend",
        "description": "",
        "kind": "sma_cross",
        "parameters_for": "sma_cross",
        "instrument": strategy_or_instrument_id,
        "timeframe": "1h",
        "initial_capital": "10000",
        "fee_rate": "0.001",
        "slippage_bps": "0",
        "status": "draft",
        "param_fast": "8",
        "param_slow": "40",
    }
    data.update(changes)
    return data


# --- The strategy list --------------------------------------------------------------------


def test_the_list_shows_only_the_users_own_strategies(client, user, other_user, strategy):
    StrategyFactory(owner=other_user, name="someone else's")
    client.force_login(user)
    page = client.get(reverse("lab-strategies")).content.decode()
    assert strategy.name in page
    assert "someone else&#x27;s" not in page and "someone else's" not in page


def test_the_list_shows_the_last_runs_headline_and_links_to_it(client, user, strategy):
    older = _run(strategy, metrics={"return_pct": 1.11, "sharpe": 0.22})
    newer = _run(strategy, metrics={"return_pct": 12.345, "sharpe": 1.987})
    BacktestRun.objects.filter(pk=older.pk).update(created_at=newer.created_at - timedelta(hours=1))
    client.force_login(user)
    page = client.get(reverse("lab-strategies")).content.decode()
    assert reverse("lab-run", args=[newer.pk]) in page
    assert "12.35" in page and "1.99" in page
    assert "1.11" not in page


def test_the_list_reads_in_a_fixed_number_of_queries(client, user, market):
    for i in range(6):
        _run(StrategyFactory(owner=user, instrument=market, name=f"s{i}"), metrics={"sharpe": i})
    client.force_login(user)
    client.get(reverse("lab-strategies"))  # warm the session and content types
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("lab-strategies"))
    for i in range(6, 12):
        _run(StrategyFactory(owner=user, instrument=market, name=f"s{i}"), metrics={"sharpe": i})
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("lab-strategies"))
    assert response.content.decode().count('data-strategy="') == 12
    assert len(many) == len(few)


def test_archived_strategies_are_hidden_until_asked_for(client, user, strategy):
    archived = StrategyFactory(owner=user, name="old idea", status="archived")
    client.force_login(user)
    hidden = client.get(reverse("lab-strategies")).content.decode()
    shown = client.get(reverse("lab-strategies") + "?archived=1").content.decode()
    assert "old idea" not in hidden and strategy.name in hidden
    assert "old idea" in shown and reverse("lab-strategy-restore", args=[archived.pk]) in shown


def test_a_row_links_to_the_backtest_form_with_the_strategy_preselected(client, user, strategy):
    client.force_login(user)
    page = client.get(reverse("lab-strategies")).content.decode()
    assert f'href="/lab/?strategy={strategy.pk}"' in page
    assert 'href="/lab/strategies/"' in client.get(reverse("lab-home")).content.decode()  # nav


# --- Create, edit, clone, archive, restore ------------------------------------------------


def test_the_new_strategy_form_shows_the_kinds_description_and_parameter_help(client, user):
    client.force_login(user)
    page = client.get(reverse("lab-strategy-new") + "?kind=bollinger_reversion").content.decode()
    assert "Buy when the close is below the lower band" in page
    assert 'name="param_num_std"' in page and "Band width in std devs." in page
    assert 'min="0.1"' in page and 'max="10"' in page and 'step="0.1"' in page
    assert 'name="param_fast"' not in page


def test_creating_a_strategy_through_the_lab(client, user, market):
    client.force_login(user)
    response = client.post(reverse("lab-strategy-new"), _strategy_post(market.pk))
    assert response.status_code == 302, response.content.decode()[:3000]
    created = Strategy.objects.get(name="new trend")
    assert created.owner == user and created.parameters == {"fast": 8, "slow": 40}


def test_a_cross_field_error_is_shown_on_its_field_and_nothing_is_saved(client, user, market):
    client.force_login(user)
    response = client.post(
        reverse("lab-strategy-new"), _strategy_post(market.pk, param_fast="60", param_slow="50")
    )
    assert response.status_code == 200
    assert 'data-field="param_fast">Must be less than slow (50).' in response.content.decode()
    assert not Strategy.objects.filter(name="new trend").exists()


def test_a_duplicate_name_is_an_error_on_the_name(client, user, strategy, market):
    client.force_login(user)
    response = client.post(
        reverse("lab-strategy-new"), _strategy_post(market.pk, name=strategy.name)
    )
    assert response.status_code == 200
    assert 'data-field="name"' in response.content.decode()


def test_editing_a_strategy_through_the_lab(client, user, strategy):
    client.force_login(user)
    url = reverse("lab-strategy-edit", args=[strategy.pk])
    assert 'value="5"' in client.get(url).content.decode()  # the saved fast
    response = client.post(
        url, _strategy_post(strategy.instrument_id, name="renamed", param_fast="6", status="active")
    )
    assert response.status_code == 302
    strategy.refresh_from_db()
    assert (strategy.name, strategy.status) == ("renamed", "active")
    assert strategy.parameters == {"fast": 6, "slow": 40}


def test_cloning_saves_a_copy_under_a_new_name(client, user, strategy):
    client.force_login(user)
    url = reverse("lab-strategy-clone", args=[strategy.pk])
    assert f"{strategy.name} (copy)" in client.get(url).content.decode()
    response = client.post(url, {"name": "the copy"})
    clone = Strategy.objects.get(name="the copy")
    assert response.status_code == 302 and response["Location"].endswith(f"/{clone.pk}/edit/")
    assert clone.owner == user and clone.parameters == strategy.parameters
    assert clone.kind == strategy.kind and clone.pk != strategy.pk


def test_cloning_onto_a_taken_name_is_an_error(client, user, strategy):
    client.force_login(user)
    response = client.post(
        reverse("lab-strategy-clone", args=[strategy.pk]), {"name": strategy.name}
    )
    assert response.status_code == 200
    assert Strategy.objects.filter(owner=user).count() == 1


def test_archive_and_restore_through_the_lab(client, user, strategy):
    client.force_login(user)
    client.post(reverse("lab-strategy-archive", args=[strategy.pk]))
    strategy.refresh_from_db()
    assert strategy.status == "archived"
    response = client.post(reverse("lab-strategy-restore", args=[strategy.pk]), {"archived": "1"})
    assert response["Location"].endswith("?archived=1")
    strategy.refresh_from_db()
    assert strategy.status == "draft"


def test_archiving_needs_a_post(client, user, strategy):
    client.force_login(user)
    assert client.get(reverse("lab-strategy-archive", args=[strategy.pk])).status_code == 405
    strategy.refresh_from_db()
    assert strategy.status == "draft"


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("lab-strategy-edit", "get"),
        ("lab-strategy-edit", "post"),
        ("lab-strategy-clone", "post"),
        ("lab-strategy-archive", "post"),
        ("lab-strategy-restore", "post"),
    ],
)
def test_another_users_strategy_is_a_404(client, other_user, strategy, name, method):
    client.force_login(other_user)
    response = getattr(client, method)(reverse(name, args=[strategy.pk]), {"name": "mine now"})
    assert response.status_code == 404
    strategy.refresh_from_db()
    assert strategy.status == "draft" and strategy.name != "mine now"
    assert not Strategy.objects.filter(name="mine now").exists()


def test_the_pages_need_a_login(client, strategy):
    response = client.get(reverse("lab-strategies"))
    assert response.status_code == 302 and "/login" in response["Location"]


# --- The sweep form -------------------------------------------------------------------------


def _sweep_post(strategy: Strategy, **changes: str) -> dict[str, str]:
    data = {
        "strategy": str(strategy.pk),
        "range-fast_from": "5",
        "range-fast_to": "15",
        "range-fast_step": "5",
        "range-slow_from": "30",
        "range-slow_to": "60",
        "range-slow_step": "30",
        "start": "2024-01-01T00:00",
        "end": END.strftime("%Y-%m-%dT%H:%M"),
        "rank_metric": "sharpe",
        "samples": "",
    }
    data.update(changes)
    return data


def test_the_sweep_form_has_range_rows_and_a_live_count(client, user, strategy):
    client.force_login(user)
    page = client.get(reverse("lab-sweep-new") + f"?strategy={strategy.pk}").content.decode()
    assert 'tr data-range="fast"' in page and 'tr data-range="slow"' in page
    assert 'name="range-fast_step"' in page and 'data-range-part="step"' in page
    assert '<output id="sw-count"' in page and "lab/sweep_form.js" in page
    assert "Fast SMA window, in bars." in page


def test_the_home_page_sweep_card_leads_to_the_range_form(client, user, strategy):
    client.force_login(user)
    page = client.get(reverse("lab-home")).content.decode()
    assert 'action="/lab/sweeps/new/"' in page and f'<option value="{strategy.pk}">' in page
    assert 'id="sw-grid"' not in page  # no raw JSON any more


def test_a_sweep_is_submitted_with_the_grid_built_from_the_ranges(client, user, strategy):
    client.force_login(user)
    response = client.post(reverse("lab-sweep-new"), _sweep_post(strategy))
    assert response.status_code == 302, response.content.decode()[:3000]
    sweep = Sweep.objects.get()
    assert response["Location"] == reverse("lab-sweep", args=[sweep.pk])
    assert sweep.grid == {"fast": [5, 10, 15], "slow": [30, 60]}
    assert sweep.combinations_total == 6 and sweep.owner == user


def test_a_range_outside_the_bounds_is_a_field_error(client, user, strategy):
    client.force_login(user)
    response = client.post(
        reverse("lab-sweep-new"), _sweep_post(strategy, **{"range-slow_to": "9000"})
    )
    assert response.status_code == 200
    assert 'data-field="range-slow_to">Ensure this value is less than or equal to 5000.' in (
        response.content.decode()
    )
    assert not Sweep.objects.exists()


def test_a_step_of_zero_is_a_field_error(client, user, strategy):
    client.force_login(user)
    response = client.post(
        reverse("lab-sweep-new"), _sweep_post(strategy, **{"range-fast_step": "0"})
    )
    assert 'data-field="range-fast_step">Step must be greater than 0.' in response.content.decode()
    assert not Sweep.objects.exists()


def test_an_empty_grid_is_a_clear_error(client, user, strategy):
    client.force_login(user)
    blank = {f"range-{p}_{part}": "" for p in ("fast", "slow") for part in ("from", "to", "step")}
    response = client.post(reverse("lab-sweep-new"), _sweep_post(strategy, **blank))
    page = response.content.decode()
    assert "The grid is empty: give at least one parameter a range." in page
    assert "JSON" not in page
    assert not Sweep.objects.exists()


def test_a_sweep_of_another_users_strategy_is_a_404(client, other_user, strategy):
    StrategyFactory(owner=other_user, instrument=strategy.instrument)
    client.force_login(other_user)
    response = client.post(reverse("lab-sweep-new"), _sweep_post(strategy))
    assert response.status_code == 404
    assert not Sweep.objects.exists()


# --- The run page ---------------------------------------------------------------------------


def _finished_run(user, strategy):  # type: ignore[no-untyped-def]
    from backtests import services

    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END, enqueue=False)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    return run


def test_the_run_page_reads_in_words_and_loads_its_chart_from_the_api(client, user, strategy):
    run = _finished_run(user, strategy)
    client.force_login(user)
    page = client.get(reverse("lab-run", args=[run.pk])).content.decode()
    assert "fast 5 · slow 20" in page and "{&#x27;fast&#x27;" not in page
    assert "Sharpe ratio" in page and "Max drawdown %" in page and ">sharpe<" not in page
    assert "capital 10,000.00" in page
    # The chart and the trades come window by window and page by page, not inside the page.
    assert f'data-url="/api/v1/backtests/{run.pk}/chart/"' in page
    assert f'data-url="/api/v1/backtests/{run.pk}/trades/"' in page
    assert 'id="chart-data"' not in page and "data-bucket-bars" in page
    assert f'data-count="{run.trades.count()}"' in page
    assert "vendor/plotly.min.js" in page and "lab/run_page.js" in page
    assert "Open in the back-office" not in page


def test_staff_see_a_link_to_the_runs_admin_page(client, staff_user, user, strategy):
    run = _finished_run(user, strategy)
    client.force_login(staff_user)
    page = client.get(reverse("lab-run", args=[run.pk])).content.decode()
    admin = reverse("admin:backtests_backtestrun_change", args=[run.pk])
    assert f'href="{admin}"' in page and "Open in the back-office" in page


def test_a_running_run_shows_progress_and_cancel_but_no_chart(client, user, strategy):
    run = _run(strategy, status="running", progress=12.5)
    client.force_login(user)
    page = client.get(reverse("lab-run", args=[run.pk])).content.decode()
    assert f'data-ws="/ws/backtests/{run.pk}/"' in page and 'id="cancel"' in page
    assert 'id="run-chart"' not in page and "vendor/plotly.min.js" not in page
