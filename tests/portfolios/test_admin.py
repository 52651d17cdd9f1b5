"""The portfolio admin: the list with its filters and search, a run's read-only page with
metrics, the per-instrument table and a link to its trades, and the trades list."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.portfolios.conftest import SYMBOLS, execute, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(staff_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(staff_user)
    return client


def test_staff_see_runs_their_metrics_instruments_and_trades(admin_browser, user, basket) -> None:
    run = execute(submit(user, name="findable"))
    listing = admin_browser.get(
        "/admin/portfolios/portfoliorun/",
        {"status__exact": "succeeded", "allocation__exact": "equal", "q": "findable"},
    )
    assert listing.status_code == 200 and f">{run.pk}<" in listing.content.decode()
    page = admin_browser.get(f"/admin/portfolios/portfoliorun/{run.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="portfolio-instruments"' in html and 'class="portfolio-metrics"' in html
    for symbol in SYMBOLS:
        assert symbol in html
    assert f"run__id__exact={run.pk}" in html
    assert f"/lab/portfolios/{run.pk}/" in html
    other = execute(submit(user, name="another", parameters={"fast": 4, "slow": 15}))
    trades = admin_browser.get("/admin/portfolios/portfoliotrade/", {"run__id__exact": run.pk})
    assert trades.status_code == 200
    # The run's trades, and only them (the sidebar names every symbol whatever the list).
    count = run.trades.count()
    assert count > 0 and other.trades.count() > 0
    assert f"{count} portfolio trade" in trades.content.decode()
    assert trades.context["cl"].result_count == count


def test_a_queued_runs_page_loads_and_nothing_can_be_added(admin_browser, user, basket) -> None:
    run = submit(user)
    assert admin_browser.get(f"/admin/portfolios/portfoliorun/{run.pk}/change/").status_code == 200
    assert admin_browser.get("/admin/portfolios/portfoliorun/add/").status_code == 403


def test_the_trades_filters_offer_the_runs_instruments_and_never_every_run(
    admin_browser, user, basket
) -> None:
    run = execute(submit(user))
    other = execute(submit(user, name="another", parameters={"fast": 4, "slow": 15}))
    first = basket[0]
    page = admin_browser.get(
        "/admin/portfolios/portfoliotrade/",
        {"run__id__exact": run.pk, "instrument__id__exact": first.pk},
    )
    assert page.status_code == 200
    changelist = page.context["cl"]
    assert changelist.result_count == run.trades.filter(instrument=first).count() > 0
    choices = {
        spec.title: [choice["display"] for choice in spec.choices(changelist)]
        for spec in changelist.filter_specs
    }
    assert choices["instrument"][1:] == sorted(SYMBOLS)  # after "All"
    # The run filter names the chosen run alone, not every run in the table.
    assert choices["run"][1:] == [str(run)] and str(other) not in choices["run"]
    wrong = admin_browser.get("/admin/portfolios/portfoliotrade/", {"instrument__id__exact": "x"})
    assert wrong.status_code == 302 and "e=1" in wrong.url
