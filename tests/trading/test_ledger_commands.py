"""verify_ledger, rebuild_positions, import_fills, the admin's ledger pages and the demo ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from persistence.models import Event
from tests.trading.conftest import fill, submit, trade
from trading.demo import seed_demo_ledger
from trading.models import Fill, Order, Position, PositionHead

pytestmark = pytest.mark.django_db
D = Decimal


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def tamper(sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # An attacker with superuser rights: the append-only trigger is switched off.
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")


def test_verify_ledger_reports_success_with_a_summary(user, instrument):
    trade(user, instrument, "buy", "1", "100")
    out, err = run("verify_ledger")
    assert "ledger OK: 3 events in 2 streams" in out
    assert "verify" in err  # the progress bar


def test_verify_ledger_fails_and_names_an_altered_event(user, instrument):
    trade(user, instrument, "buy", "1", "100")
    event = Event.objects.get(type="FillRecorded")
    data = {**event.data, "price": "1"}
    tamper("UPDATE persistence_event SET data = %s WHERE seq = %s", [json.dumps(data), event.seq])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_ledger", stdout=StringIO(), stderr=err)
    assert f"TAMPERED seq {event.seq}: hash does not match" in err.getvalue()


def test_verify_ledger_fails_and_names_the_gap_of_a_deleted_event(user, instrument):
    order = submit(user, instrument, "buy", "2")
    fill(order, "1", "100")
    fill(order, "1", "100")
    events = list(Event.objects.order_by("seq"))
    # Submitted, accepted, then one FillRecorded per fill: delete the first fill's.
    assert [e.type for e in events[2:]] == ["FillRecorded", "FillRecorded"]
    victim = events[2]
    tamper("DELETE FROM persistence_event WHERE seq = %s", [victim.seq])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_ledger", stdout=StringIO(), stderr=err)
    assert f"TAMPERED seq {events[3].seq}: prev_hash does not match the hash of seq " in (
        err.getvalue()
    )
    assert f"seq {events[1].seq}" in err.getvalue()
    assert "version 2 where 1 was expected" in err.getvalue()


def test_rebuild_positions_equals_the_live_rows_and_repairs_drift(user, instrument, settings):
    settings.LEDGER_SNAPSHOT_EVERY = 2
    order = submit(user, instrument, "buy", "5")
    for price in ("100", "101", "102"):
        fill(order, "1", price)
    out, _ = run("rebuild_positions")
    assert "1 positions rebuilt; all equal the live rows" in out
    Position.objects.update(realized_pnl=D("999"))
    # A head that drifted too: at the stream's version, so the next fill would trust it.
    PositionHead.objects.update(state={"life": 1, "quantity": "7", "cost_basis": "700"})
    with pytest.raises(CommandError):
        run("rebuild_positions")
    out, err = run("rebuild_positions", "--apply")
    assert "realized_pnl: row 999" in err
    assert "head.quantity: row 7 != ledger 3" in err
    assert Position.objects.get().realized_pnl == 0
    assert PositionHead.objects.get().state["quantity"] == "3"
    out, _ = run("rebuild_positions")
    assert "all equal the live rows" in out


def test_rebuild_positions_names_a_head_that_drifted_alone(user, instrument):
    trade(user, instrument, "buy", "2", "100")
    PositionHead.objects.update(state={**PositionHead.objects.get().state, "cost_basis": "1"})
    with pytest.raises(CommandError):
        run("rebuild_positions")
    out, err = run("rebuild_positions", "--apply")
    assert "head.cost_basis: row 1 != ledger 200" in err
    out, _ = run("rebuild_positions")
    assert "all equal the live rows" in out


def test_rebuild_positions_as_of_a_past_time(user, instrument):
    trade(user, instrument, "buy", "1", "100")
    out, _ = run("rebuild_positions", "--as-of", "2000-01-01")
    assert "quantity 0" in out
    out, _ = run("rebuild_positions", "--as-of", "2100-01-01T00:00:00Z")
    assert "quantity 1" in out


def test_import_fills_from_csv(user, instrument, tmp_path):
    order = submit(user, instrument, "buy", "3", client_order_id="bot-7")
    path = tmp_path / "fills.csv"
    path.write_text(
        "client_order_id,venue_trade_id,quantity,price,fee,ts\n"
        "bot-7,X1,1,100,0.1,2024-01-01T00:00:00Z\n"
        "bot-7,X2,1,101,0.1,2024-01-01T00:01:00Z\n"
        "bot-7,X1,1,100,0.1,2024-01-01T00:00:00Z\n"
    )
    out, _ = run("import_fills", str(path), "--user", user.username, "--batch-size", "2")
    assert "2 fills recorded, 1 duplicates skipped" in out
    order.refresh_from_db()
    assert order.filled_quantity == D("2")


def _fills_csv(path, rows):  # type: ignore[no-untyped-def]
    lines = ["client_order_id,venue_trade_id,quantity,price,fee,ts"]
    lines += [
        f"bot-7,X{n},{quantity},{price},0,2024-01-01T00:{n % 60:02d}:00Z"
        for n, (quantity, price) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("bad_row", "complaint"),
    [
        (("1", "100.001"), "price must be a multiple of the price tick"),  # malformed
        (("5", "100"), "exceeds the remaining"),  # refused by the order's state
    ],
)
def test_import_fills_with_a_bad_row_late_in_the_file_writes_nothing_and_names_the_line(
    user, instrument, tmp_path, bad_row, complaint
):
    order = submit(user, instrument, "buy", "10", client_order_id="bot-7")
    events_before = Event.objects.count()
    rows = [("1", "100")] * 7 + [bad_row]
    path = _fills_csv(tmp_path / "fills.csv", rows)
    with pytest.raises(CommandError) as excinfo:
        run("import_fills", path, "--user", user.username, "--batch-size", "2")
    # Header is line 1, so the eighth fill is CSV line 9, in the fourth batch.
    assert "CSV line 9" in str(excinfo.value)
    assert complaint in str(excinfo.value)
    assert not Fill.objects.exists()
    assert Event.objects.count() == events_before
    assert not Position.objects.exists()
    order.refresh_from_db()
    assert order.filled_quantity == 0


def test_import_fills_names_a_row_that_does_not_parse_and_writes_nothing(
    user, instrument, tmp_path
):
    submit(user, instrument, "buy", "10", client_order_id="bot-7")
    path = _fills_csv(tmp_path / "fills.csv", [("1", "100"), ("1", "100"), ("x", "100")])
    with pytest.raises(CommandError, match="CSV line 4"):
        run("import_fills", path, "--user", user.username, "--batch-size", "1")
    assert not Fill.objects.exists()


# --- Admin ----------------------------------------------------------------------------------


@pytest.fixture
def admin_client(staff_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(staff_user)
    return client


def test_admin_fill_correction_goes_through_the_service(admin_client, user, instrument):
    order = submit(user, instrument, "buy", "2")
    response = admin_client.post(
        "/admin/trading/fill/add/",
        {
            "order": order.pk,
            "venue_trade_id": "manual-1",
            "quantity": "1",
            "price": "100",
            "fee": "0",
            "ts_0": "2024-01-01",
            "ts_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    order.refresh_from_db()
    assert order.filled_quantity == D("1")
    assert Event.objects.filter(type="FillRecorded").count() == 1
    fill_row = Fill.objects.get()
    assert LogEntry.objects.get_for_object(fill_row).exists()


def test_admin_refuses_an_overfill_in_the_form(admin_client, user, instrument):
    order = submit(user, instrument, "buy", "1")
    response = admin_client.post(
        "/admin/trading/fill/add/",
        {
            "order": order.pk,
            "venue_trade_id": "manual-1",
            "quantity": "5",
            "price": "100",
            "fee": "0",
            "ts_0": "2024-01-01",
            "ts_1": "00:00:00",
        },
    )
    assert response.status_code == 200
    assert b"exceeds" in response.content
    assert not Fill.objects.exists()


def test_admin_cancel_action_appends_an_event(admin_client, user, instrument):
    order = submit(user, instrument, "buy", "1")
    filled = trade(user, instrument, "buy", "1", "100")
    response = admin_client.post(
        "/admin/trading/order/",
        {"action": "cancel_orders", "_selected_action": [order.pk, filled.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert Order.objects.get(pk=order.pk).status == "cancelled"
    assert Order.objects.get(pk=filled.pk).status == "filled"
    assert Event.objects.filter(type="OrderCancelled").count() == 1


def test_admin_ledger_pages_show_computed_pnl_and_allow_no_edits(admin_client, user, instrument):
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "sell", "1", "110", fee="1")
    position = Position.objects.get()
    page = admin_client.get("/admin/trading/position/")
    assert b"Net PnL" in page.content
    assert admin_client.get(f"/admin/trading/position/{position.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/trading/position/add/").status_code == 403
    assert admin_client.get("/admin/trading/trade/").status_code == 200
    assert admin_client.get("/admin/persistence/event/add/").status_code == 403


# --- Demo -----------------------------------------------------------------------------------


def test_demo_ledger_goes_through_the_services(user, instrument):
    seed_demo_ledger(user=user, instruments=[instrument])
    assert Position.objects.filter(owner=user).exists()
    assert Event.objects.filter(type="FillRecorded").exists()
    out, _ = run("verify_ledger")
    assert "ledger OK" in out
    out, _ = run("rebuild_positions")
    assert "all equal the live rows" in out
