"""The lab's portfolio pages through real HTTP requests: the list and its form, a run's page
with its chart data, and 404s for other users' runs."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from portfolios import selectors
from portfolios.models import PortfolioRun
from tests.backtests.conftest import END, T0
from tests.portfolios.conftest import SYMBOLS, execute, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def page_data(html: str) -> dict:  # type: ignore[type-arg]
    start = html.index('<script id="portfolio-data" type="application/json">')
    text = html[start:].split(">", 1)[1].split("</script>", 1)[0]
    return json.loads(text)  # type: ignore[no-any-return]


def test_the_list_shows_the_owners_runs_and_the_form(browser, user, other_user, basket) -> None:
    mine = submit(user, name="mine")
    theirs = submit(other_user, name="theirs")
    html = browser.get("/lab/portfolios/").content.decode()
    assert f'data-portfolio="{mine.pk}"' in html
    assert f'data-portfolio="{theirs.pk}"' not in html
    assert 'id="portfolio-form"' in html and 'name="instruments"' in html
    assert 'href="/lab/portfolios/"' in html  # the navigation links here


def test_the_form_starts_a_run_and_redirects_to_its_page(browser, user, basket) -> None:
    response = browser.post(
        "/lab/portfolios/",
        {
            "name": "from the form",
            "kind": "sma_cross",
            "parameters": '{"fast": 5, "slow": 20}',
            "instruments": list(SYMBOLS),
            "timeframe": "1h",
            "start": T0.strftime("%Y-%m-%dT%H:%M"),
            "end": END.strftime("%Y-%m-%dT%H:%M"),
            "initial_capital": "10000",
            "fee_rate": "0.001",
            "slippage_bps": "0",
            "allocation": "fixed",
            "weights": '{"AAAUSDT": 0.3, "CCCUSDT": 0.3}',
            "rebalance": "1d",
        },
    )
    run = PortfolioRun.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/lab/portfolios/{run.pk}/"
    assert run.weights == {"AAAUSDT": 0.3, "CCCUSDT": 0.3} and run.rebalance == "1d"


def test_the_forms_bad_input_is_shown_by_the_field_and_creates_nothing(browser, basket) -> None:
    response = browser.post(
        "/lab/portfolios/",
        {
            "kind": "sma_cross",
            "parameters": '{"fast": 5, "slow": 20}',
            "instruments": list(SYMBOLS),
            "timeframe": "1h",
            "start": T0.strftime("%Y-%m-%dT%H:%M"),
            "end": END.strftime("%Y-%m-%dT%H:%M"),
            "initial_capital": "10000",
            "fee_rate": "0.001",
            "slippage_bps": "0",
            "allocation": "equal",
            "weights": '{"AAAUSDT": 0.3}',
            "rebalance": "change",
        },
    )
    assert response.status_code == 200
    assert 'data-field="weights"' in response.content.decode()
    assert not PortfolioRun.objects.exists()


def test_a_runs_page_has_its_charts_data_and_tables(browser, user, basket) -> None:
    run = execute(submit(user))
    response = browser.get(f"/lab/portfolios/{run.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    data = page_data(html)
    curve = selectors.equity_frame(run)
    assert len(data["equity"]["ts"]) == len(curve)
    assert data["equity"]["equity"][-1] == curve["equity"].iloc[-1]
    assert data["contribution"]["instruments"] == list(SYMBOLS)
    expected = [row["contribution"] for row in run.metrics["per_instrument"]]
    assert data["contribution"]["values"] == expected
    assert "lab/portfolio_page.js" in html and "vendor/plotly.min.js" in html
    for symbol in SYMBOLS:
        assert f'data-instrument="{symbol}"' in html
    trade = selectors.portfolio_trades(run=run).first()
    assert trade is not None and trade.instrument.symbol in html


def test_the_trades_table_filters_by_instrument(browser, user, basket) -> None:
    run = execute(submit(user))
    html = browser.get(f"/lab/portfolios/{run.pk}/", {"instrument": SYMBOLS[0]}).content.decode()
    table = html.split('id="trades"', 1)[1].split("</table>", 1)[0]
    assert SYMBOLS[0] in table and SYMBOLS[1] not in table


def test_another_users_run_page_is_a_404(other_user, user, basket) -> None:
    run = submit(user)
    client = Client()
    client.force_login(other_user)
    assert client.get(f"/lab/portfolios/{run.pk}/").status_code == 404


def test_the_pages_need_a_login(basket, user) -> None:
    run = submit(user)
    for url in ("/lab/portfolios/", f"/lab/portfolios/{run.pk}/"):
        response = Client().get(url)
        assert response.status_code == 302 and "login" in response["Location"]
