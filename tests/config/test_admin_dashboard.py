"""The back-office index: a dashboard of open positions, realised PnL, jobs in progress, the
latest fills and the result cache, each block for staff who may view its table; and the
internal tables in a section of their own, for superusers only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from backtests.models import BacktestRun, RunStatus, Sweep
from marketdata.models import Candle, Instrument
from persistence.models import CachedResult
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory
from trading.models import Order
from trading.services import fill_record, order_submit

pytestmark = pytest.mark.django_db

INDEX = "/admin/"
# "Now" for these tests: the 15th, so the month has days before today.
NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
_ids = count(1)


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def _trade(owner: User, instrument: Instrument, side: str, quantity: str, price: str, fee: str,
           ts: datetime) -> Order:  # fmt: skip
    """A market order, filled completely at one price through the ledger's services."""
    order = order_submit(
        owner=owner,
        instrument=instrument,
        side=side,
        quantity=Decimal(quantity),
        client_order_id=f"dash-{next(_ids)}",
    ).order
    fill_record(
        order=order,
        venue_trade_id=f"v-{next(_ids)}",
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(fee),
        ts=ts,
    )
    return order


@pytest.fixture
def btc(db) -> Instrument:  # type: ignore[no-untyped-def]
    return InstrumentFactory(
        symbol="BTCUSDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
    )


@pytest.fixture
def ledger(btc) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Closed trades last month, earlier this month and today; two positions left open."""
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    eth = InstrumentFactory(
        symbol="ETHUSDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
    )
    # Last month: +50, outside this month.
    _trade(alice, btc, "buy", "1", "100", "0", datetime(2024, 2, 28, 9, tzinfo=UTC))
    _trade(alice, btc, "sell", "1", "150", "0", datetime(2024, 2, 28, 10, tzinfo=UTC))
    # March 3rd: 2 x (90 - 100) = -20, fees 1 + 1: net -22.
    _trade(alice, btc, "buy", "2", "100", "1", datetime(2024, 3, 3, 9, tzinfo=UTC))
    _trade(alice, btc, "sell", "2", "90", "1", datetime(2024, 3, 3, 10, tzinfo=UTC))
    # Today: 1 x (230 - 200) = 30, fees 0.5 + 0.5: net 29.
    _trade(alice, btc, "buy", "1", "200", "0.5", datetime(2024, 3, 15, 9, tzinfo=UTC))
    _trade(alice, btc, "sell", "1", "230", "0.5", datetime(2024, 3, 15, 10, tzinfo=UTC))
    # Left open: alice long 0.5 BTC at 300, bob short 1 ETH at 50 (no candles: no mark).
    _trade(alice, btc, "buy", "0.5", "300", "0", datetime(2024, 3, 15, 11, tzinfo=UTC))
    last = _trade(bob, eth, "sell", "1", "50", "0.25", datetime(2024, 3, 15, 11, 30, tzinfo=UTC))
    # BTC's finest stored timeframe (1m) marks it: 0.5 x (320 - 300) = 10.
    for timeframe, close in (("1h", 310.0), ("1m", 320.0)):
        Candle.objects.create(
            instrument=btc,
            timeframe=timeframe,
            ts=datetime(2024, 3, 15, 11, tzinfo=UTC),
            open=close,
            high=close,
            low=close,
            close=close,
            volume=1.0,
        )
    return {"alice": alice, "bob": bob, "last_order": last}


@pytest.fixture
def jobs(btc) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    owner = UserFactory()
    strategy = StrategyFactory(owner=owner, instrument=btc, name="BTC trend")
    common = {
        "owner": owner,
        "strategy": strategy,
        "kind": "sma_cross",
        "instrument": btc,
        "timeframe": "1h",
        "start": datetime(2024, 1, 1, tzinfo=UTC),
        "end": datetime(2024, 2, 1, tzinfo=UTC),
        "initial_capital": 10_000,
        "fee_rate": "0.001",
    }
    running = BacktestRun.objects.create(**common, params_hash="a", status=RunStatus.RUNNING)
    queued = BacktestRun.objects.create(**common, params_hash="b", status=RunStatus.QUEUED)
    done = BacktestRun.objects.create(**common, params_hash="c", status=RunStatus.SUCCEEDED)
    answered = BacktestRun.objects.create(
        **common, params_hash="c", status=RunStatus.SUCCEEDED, cache_hit=True
    )
    sweep = Sweep.objects.create(**common, status=RunStatus.RUNNING, grid={"fast": [5, 10]})
    # Two stored results, hit 3 and 1 times: 4 hits in 4 + 2 lookups.
    for params_hash, hits in (("c", 3), ("d", 1)):
        CachedResult.objects.create(
            kind="backtest", params_hash=params_hash, format="json", blob=b"{}", hit_count=hits
        )
    return {
        "running": running,
        "queued": queued,
        "done": done,
        "answered": answered,
        "sweep": sweep,
    }


def _staff(*perms: str) -> User:
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def _block(page: str, block_id: str) -> str:
    match = re.search(rf'<section [^>]*id="{block_id}">(.*?)</section>', page, re.S)
    assert match, f"no {block_id} block"
    return match.group(1)


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_dashboard_shows_realised_pnl_today_and_this_month_from_the_trades(
    client, staff_user, ledger
) -> None:
    client.force_login(staff_user)
    page = client.get(INDEX).content.decode()
    pnl = _block(page, "dashboard-pnl")

    assert re.search(r'id="pnl-today" class="gain">29</dd>', pnl)  # net of fees, exact
    assert re.search(r'id="pnl-month" class="gain">7</dd>', pnl)  # 29 - 22; February's +50 out
    assert "1 trade</dd>" in pnl and "2 trades</dd>" in pnl
    assert "since 2024-03-01" in pnl
    # The chart's data: one bar per day of the month so far, exact decimal strings.
    data = re.search(r'<script id="pnl-chart-data" type="application/json">(.*?)</script>', page)
    assert data is not None
    days = re.findall(r'"(2024-03-\d\d)"', data.group(1))
    assert days == [f"2024-03-{d:02d}" for d in range(1, 16)]
    values = re.search(r'"net_pnl": \[(.*?)\]', data.group(1))
    assert values is not None
    amounts = [Decimal(v.strip('" ')) for v in values.group(1).split(",")]
    assert amounts[2] == Decimal(-22) and amounts[14] == Decimal(29)
    assert sum(amounts) == Decimal(7)
    # plotly and the page's own script, as files (CSP: no inline script).
    assert "vendor/plotly.min.js" in page and "backtests/admin/dashboard.js" in page


def test_the_dashboard_lists_open_positions_with_their_unrealised_pnl(
    client, staff_user, ledger
) -> None:
    client.force_login(staff_user)
    positions = _block(client.get(INDEX).content.decode(), "dashboard-positions")

    rows = [
        _text(row) for row in re.findall(r'<tr class="open-position">(.*?)</tr>', positions, re.S)
    ]
    assert rows == [
        "BTCUSDT long 0.5 300 320 10 alice",
        "ETHUSDT short -1 50 — — bob",
    ]
    assert "Open positions (2)" in positions


def test_the_dashboard_lists_the_latest_fills_newest_first(client, staff_user, ledger) -> None:
    client.force_login(staff_user)
    fills = _block(client.get(INDEX).content.decode(), "dashboard-fills")

    rows = [_text(row) for row in re.findall(r'<tr class="recent-fill">(.*?)</tr>', fills, re.S)]
    assert len(rows) == 8
    assert rows[0] == "2024-03-15 11:30 ETHUSDT sell 1 50 0.25 bob"
    assert rows[-1] == "2024-02-28 09:00 BTCUSDT buy 1 100 0 alice"


def test_the_dashboard_lists_running_and_queued_jobs_and_the_cache_hit_rate(
    client, staff_user, jobs
) -> None:
    client.force_login(staff_user)
    page = client.get(INDEX).content.decode()
    block = _block(page, "dashboard-jobs")

    assert "Backtests: 1 running, 1 queued" in block
    assert "Sweeps: 1 running, 0 queued" in block
    for run in (jobs["running"], jobs["queued"]):
        assert reverse("admin:backtests_backtestrun_change", args=[run.pk]) in block
        assert reverse("lab-run", args=[run.pk]) in block
    for run in (jobs["done"], jobs["answered"]):
        assert reverse("admin:backtests_backtestrun_change", args=[run.pk]) not in block
    assert reverse("admin:backtests_sweep_change", args=[jobs["sweep"].pk]) in block
    assert "BTC trend" in block
    # Running first, then the queue.
    assert block.index(f"Backtest #{jobs['running'].pk}<") < block.index(
        f"Backtest #{jobs['queued'].pk}<"
    )

    cache = _block(page, "dashboard-cache")
    assert 'id="cache-hit-rate">66.7%<' in cache  # 4 hits / (4 hits + 2 stored)
    assert 'id="cache-runs-rate">25.0%<' in cache  # 1 of 4 runs answered from the cache
    assert "1 of 4" in cache


def test_staff_without_trading_permissions_see_no_trading_blocks(client, ledger, jobs) -> None:
    client.force_login(_staff("backtests.view_backtestrun", "backtests.view_sweep"))
    page = client.get(INDEX).content.decode()

    for block in ("dashboard-pnl", "dashboard-positions", "dashboard-fills"):
        assert f'id="{block}"' not in page, block
    assert "alice" not in page and "ETHUSDT" not in page and "vendor/plotly.min.js" not in page
    assert 'id="dashboard-jobs"' in page and 'id="dashboard-cache"' in page


def test_each_trading_block_needs_the_view_permission_of_its_table(client, ledger) -> None:
    client.force_login(_staff("trading.view_fill"))
    page = client.get(INDEX).content.decode()
    assert 'id="dashboard-fills"' in page
    for block in ("dashboard-pnl", "dashboard-positions", "dashboard-jobs", "dashboard-cache"):
        assert f'id="{block}"' not in page, block

    client.force_login(_staff("trading.view_trade", "trading.view_position"))
    page = client.get(INDEX).content.decode()
    assert 'id="dashboard-pnl"' in page and 'id="dashboard-positions"' in page
    assert 'id="dashboard-fills"' not in page


def test_staff_without_any_permission_get_no_dashboard(client) -> None:
    client.force_login(_staff())
    page = client.get(INDEX).content.decode()
    assert 'id="dashboard-blocks"' not in page


def test_the_dashboards_queries_do_not_grow_with_the_ledger(
    client, staff_user, btc, ledger, jobs
) -> None:
    client.force_login(staff_user)
    with CaptureQueriesContext(connection) as before:
        client.get(INDEX)
    alice = ledger["alice"]
    for day in range(1, 13):  # a dozen more closed trades and fills, and an open position
        ts = datetime(2024, 3, day, 9, tzinfo=UTC)
        _trade(alice, btc, "buy", "1", "100", "0", ts)
        _trade(alice, btc, "sell", "1", "101", "0", ts + timedelta(minutes=5))
    _trade(UserFactory(), btc, "buy", "1", "100", "0", NOW)
    with CaptureQueriesContext(connection) as after:
        client.get(INDEX)
    assert len(after) == len(before)


# --- The internal tables: a section of their own, for superusers only -----------------------

INTERNAL_TABLES = [
    "persistence.ParamSet",
    "persistence.CachedResult",
    "persistence.Artifact",
    "persistence.Snapshot",
    "persistence.Checkpoint",
    "trading.PositionHead",
    "trading.TradeRollup",
    "trading.TradeStreakRollup",
]
DOMAIN_TABLES = ["trading.Order", "trading.Fill", "backtests.BacktestRun", "persistence.Event"]


def _changelist(label: str) -> str:
    model = apps.get_model(label)
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _sections(html: str) -> list[tuple[str, str]]:
    """(section name, its html) of each app section of an app list, in order."""
    parts = re.split(r'<div class="app-(\w+) module', html)
    return list(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("url", [INDEX, "/admin/trading/order/"], ids=["index", "sidebar"])
def test_superusers_find_the_internal_tables_in_their_own_section_after_the_domain_apps(
    client, staff_user, url
) -> None:
    client.force_login(staff_user)
    page = client.get(url).content.decode()

    sections = _sections(page)
    names = [name for name, _ in sections]
    assert names[-1] == "internals", names
    internals = sections[-1][1]
    assert "Internals (derived and bookkeeping tables)" in internals
    for label in INTERNAL_TABLES:
        assert f'href="{_changelist(label)}"' in internals, label
        for name, html in sections[:-1]:
            assert f'href="{_changelist(label)}"' not in html, (label, name)
    for label in DOMAIN_TABLES:
        assert f'href="{_changelist(label)}"' not in internals, label
        assert f'href="{_changelist(label)}"' in page, label


def test_an_apps_own_page_still_lists_all_of_its_tables(client, staff_user) -> None:
    client.force_login(staff_user)
    page = client.get("/admin/persistence/").content.decode()
    for label in ("persistence.Event", "persistence.CachedResult", "persistence.ParamSet"):
        assert f'href="{_changelist(label)}"' in page, label


def test_staff_who_are_not_superusers_get_no_internals_section(client) -> None:
    staff = UserFactory(is_staff=True, is_superuser=False)
    staff.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(staff)

    for url in (INDEX, "/admin/trading/order/"):
        page = client.get(url).content.decode()
        assert "app-internals" not in page and "Internals (" not in page
        for label in INTERNAL_TABLES:
            assert f'href="{_changelist(label)}"' not in page, label
        assert f'href="{_changelist("trading.Order")}"' in page


def test_admin_pages_link_the_project_favicon_and_keep_the_site_header(client, staff_user) -> None:
    icon = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
    assert icon in client.get("/admin/login/").content.decode()
    client.force_login(staff_user)
    for url in (INDEX, "/admin/trading/order/", "/admin/backtests/backtestrun/start/"):
        assert icon in client.get(url).content.decode(), url
    page = client.get(INDEX).content.decode()
    assert "Tradelab back-office" in page and "<title>Back-office | Tradelab</title>" in page
