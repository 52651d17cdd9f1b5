"""Production settings pass `check --deploy`, and every page works under the
Content-Security-Policy, which refuses inline scripts and styles in every environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from backtests import services
from tests.backtests.conftest import END, T0, add_candles
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

ROOT = Path(settings.BASE_DIR)
# Shows the login-limit settings read from the environment, then runs Django's deploy checks
# (and those of every installed app) as `manage.py check --deploy --fail-level WARNING` does.
CHECK = """
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
print("limits", settings.AXES_FAILURE_LIMIT, int(settings.AXES_COOLOFF_TIME.total_seconds()))
call_command("check", deploy=True, fail_level="WARNING")
"""


def run_production_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Only what an operator must set; none of the security variables, so the defaults count.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "SESSION_", "CSRF_", "LOGIN_", "DJANGO_", "DATABASE_"))
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        TRADELAB_VAR_DIR=str(tmp_path),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_production_settings_pass_the_deploy_checks_with_no_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_production_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr
    assert "limits 5 900" in result.stdout  # 5 failures, 15 minutes' cool-off by default


def test_hsts_ssl_redirect_and_login_limits_come_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = run_production_check(
        tmp_path,
        SECURE_HSTS_SECONDS="0",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        LOGIN_FAILURE_LIMIT="3",
        LOGIN_COOLOFF_MINUTES="2",
    )
    assert result.returncode != 0  # a warning fails the check at this level
    for warning in ("security.W004", "security.W008", "security.W012"):
        assert warning in result.stderr
    assert "limits 3 120" in result.stdout, result.stderr


# --- Content-Security-Policy --------------------------------------------------------------


class InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' refuses: inline scripts (data blocks
    such as json_script's are not run, so they are allowed), <style> blocks, style=""
    attributes, on*="" event handlers and javascript: links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and "src" not in named:
            self._in_script = named.get("type") not in ("application/json",)
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action") and (value or "").startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"<script>{data.strip()[:80]}")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found


@pytest.fixture
def site(db, client):  # type: ignore[no-untyped-def]
    """A staff researcher with a finished and a running backtest and a finished sweep."""
    from django.test import TestCase

    user = UserFactory(is_staff=True, is_superuser=True)
    instrument = InstrumentFactory(symbol="CSPUSDT")
    add_candles(instrument)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, kind="sma_cross", parameters={"fast": 5, "slow": 20}
    )
    done = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=done.pk, task_id=done.celery_task_id)
    running = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, use_cache=False
    )
    with TestCase.captureOnCommitCallbacks(execute=False):
        sweep = services.sweep_submit(
            user=user, strategy=strategy, start=T0, end=END, grid={"fast": [3, 5], "slow": [20]}
        )
    client.force_login(user)
    return {
        "client": client,
        "done": done,
        "running": running,
        "sweep": sweep,
        "strategy": strategy,
    }


def pages(site) -> list[str]:  # type: ignore[no-untyped-def]
    done, running, sweep = site["done"].pk, site["running"].pk, site["sweep"].pk
    runs = "/admin/backtests/backtestrun"
    return [
        "/lab/",
        f"/lab/runs/{done}/",
        f"/lab/runs/{running}/",
        f"/lab/sweeps/{sweep}/",
        "/admin/",
        f"{runs}/",
        f"{runs}/{done}/change/",
        f"{runs}/{running}/change/",
        f"{runs}/{running}/history/",
        f"{runs}/start/",
        f"/admin/strategies/strategy/{site['strategy'].pk}/change/",
        "/admin/trading/order/add/",
        "/api/docs/",
    ]


def test_every_page_is_served_with_a_policy_that_refuses_inline_code(site) -> None:  # type: ignore[no-untyped-def]
    for url in [*pages(site), "/accounts/login/"]:
        response = site["client"].get(url)
        assert response.status_code == 200, url
        policy = dict(
            part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
        )
        assert policy["default-src"] == "'self'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert "unsafe" not in response["Content-Security-Policy"], url


def test_the_lab_and_admin_pages_hold_no_inline_script_or_style(site) -> None:  # type: ignore[no-untyped-def]
    anonymous_login = site["client"].__class__().get("/accounts/login/")
    found = {"/accounts/login/": inline_code(anonymous_login.content.decode())}
    for url in pages(site):
        found[url] = inline_code(site["client"].get(url).content.decode())
    assert {url: code for url, code in found.items() if code} == {}


def test_styles_and_scripts_moved_out_of_line_are_linked(site) -> None:  # type: ignore[no-untyped-def]
    client, running = site["client"], site["running"].pk
    history = client.get(f"/admin/backtests/backtestrun/{running}/history/").content.decode()
    assert "persistence/audit_history.css" in history and "auditlog-entries" in history
    change = client.get(f"/admin/backtests/backtestrun/{running}/change/").content.decode()
    assert "backtests/admin/run.css" in change and "backtests/admin/run_progress.js" in change
    for name in ("persistence/audit_history.css", "backtests/admin/run.css"):
        assert finders.find(name), name


def test_the_lab_pages_name_what_lab_js_starts(site) -> None:  # type: ignore[no-untyped-def]
    client = site["client"]
    assert '<body data-page="home">' in client.get("/lab/").content.decode()
    run_page = client.get(f"/lab/runs/{site['done'].pk}/").content.decode()
    assert f'<body data-page="run" data-run="{site["done"].pk}">' in run_page
    sweep_page = client.get(f"/lab/sweeps/{site['sweep'].pk}/").content.decode()
    assert '<body data-page="sweep">' in sweep_page
    script = (ROOT / "backtests/static/lab/lab.js").read_text()
    assert "document.body.dataset.page" in script


def test_swagger_ui_is_served_by_the_app_not_a_cdn(site) -> None:  # type: ignore[no-untyped-def]
    client = site["client"]
    page = client.get("/api/docs/").content.decode()
    assert "cdn." not in page and "https://" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    init = client.get("/api/docs/?script=")
    assert init.status_code == 200 and "SwaggerUIBundle" in init.content.decode()
