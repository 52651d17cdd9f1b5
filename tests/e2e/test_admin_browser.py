"""A back-office user in a real browser: log in, edit a strategy, read its audit trail."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from strategies.models import Strategy
from tests.browser import browser_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_demo_user_logs_in_edits_a_strategy_and_sees_the_audit_entry(live_server):
    call_command("seed_demo", bars=200, stdout=StringIO(), stderr=StringIO())
    strategy = Strategy.objects.get(name="BTC RSI reversion")

    with browser_page() as page:
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "demo")
        page.fill("#id_password", "tradelab-demo")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")

        page.goto(f"{live_server.url}/admin/strategies/strategy/")
        assert page.locator("#result_list tbody tr").count() == 6
        page.screenshot(path=str(_artifact("admin-strategies.png")))

        page.goto(f"{live_server.url}/admin/strategies/strategy/{strategy.pk}/change/")
        page.select_option("#id_status", "active")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")

        page.goto(f"{live_server.url}/admin/strategies/strategy/{strategy.pk}/history/")
        body = page.inner_text("body")

    strategy.refresh_from_db()
    assert strategy.status == "active"
    assert "demo" in body
    assert "status" in body.lower()


def _artifact(name: str):  # type: ignore[no-untyped-def]
    from django.conf import settings

    folder = settings.VAR_DIR / "test-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
