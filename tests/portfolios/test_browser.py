"""A portfolio run's page in a real browser: both charts are drawn, and nothing on the page
breaks the Content-Security-Policy."""

from __future__ import annotations

import pytest

from tests.browser import browser_page
from tests.factories import UserFactory
from tests.portfolios.conftest import SYMBOLS, execute, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]


def test_the_run_page_draws_equity_drawdown_and_contributions(live_server, basket) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(username="portfolio-viewer")
    run = execute(submit(user))
    assert run.status == "succeeded", run.error
    with browser_page() as page:
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.add_init_script(
            """document.addEventListener('securitypolicyviolation', e => console.error(
                 'Content Security Policy violation: ' + e.violatedDirective))"""
        )
        page.goto(f"{live_server.url}/lab/portfolios/{run.pk}/")  # the login page first
        page.fill("#id_username", user.username)
        page.fill("#id_password", "pass-word-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/lab/portfolios/{run.pk}/")
        page.wait_for_function(
            "() => (document.getElementById('chart-contribution').data || []).length === 1"
        )
        equity = page.evaluate("() => document.getElementById('chart-equity').data.length")
        bars = page.evaluate("() => document.getElementById('chart-contribution').data[0].x")
    assert equity == 2
    assert bars == list(SYMBOLS)
    assert not [line for line in console if "error" in line.lower()], console
