"""The bulk-ingest room: batches match single fills, are all or nothing, take the COPY path
exactly, and its own tricks (the venue-id probe, the paused collector)."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from persistence.bulk import COPY_THRESHOLD
from persistence.events import ledger_verify
from persistence.models import Event
from tests.trading.conftest import T0, fill, open_position, submit
from trading.ingest import gc_paused, known_venue_trade_ids
from trading.models import Fill, Order, Position, Trade
from trading.selectors import position_replay
from trading.services import (
    FillInput,
    FillRejected,
    FillsInvalid,
    fill_record,
    fills_record,
    position_rebuild,
    position_stream,
)

pytestmark = pytest.mark.django_db
D = Decimal


# --- order_submit -------------------------------------------------------------------------


def test_bulk_fills_match_the_same_fills_one_by_one(user, other_user, instrument):
    def run(owner, bulk: bool) -> tuple:  # type: ignore[type-arg]
        buy = submit(owner, instrument, "buy", "5")
        sell = submit(owner, instrument, "sell", "8")
        inputs = [
            FillInput(buy.pk, f"{owner.pk}-1", D("2"), D("100"), T0, D("0.2")),
            FillInput(buy.pk, f"{owner.pk}-2", D("3"), D("101.5"), T0, D("0.3")),
            FillInput(sell.pk, f"{owner.pk}-3", D("6"), D("103"), T0, D("0.6")),
            FillInput(sell.pk, f"{owner.pk}-4", D("2"), D("99"), T0, D("0.2")),
        ]
        if bulk:
            result = fills_record(owner=owner, fills=inputs)
            assert len(result.recorded) == 4
        else:
            for item in inputs:
                fill_record(
                    order=Order.objects.get(pk=item.order_id),
                    venue_trade_id=item.venue_trade_id,
                    quantity=item.quantity,
                    price=item.price,
                    fee=item.fee,
                    ts=item.ts,
                )
        rows = Position.objects.filter(owner=owner).order_by("id")
        return [(p.quantity, p.avg_entry_price, p.realized_pnl, p.fees_paid) for p in rows]

    assert run(user, bulk=True) == run(other_user, bulk=False)


def test_bulk_reports_duplicates_and_counts_them_once(user, instrument):
    order = submit(user, instrument, "buy", "5")
    fill(order, "1", "100", venue_trade_id="A")
    result = fills_record(
        owner=user,
        fills=[
            FillInput(order.pk, "A", D("1"), D("100"), T0),
            FillInput(order.pk, "B", D("1"), D("100"), T0),
            FillInput(order.pk, "B", D("1"), D("100"), T0),
        ],
    )
    assert result.duplicates == ["A", "B"]
    assert [f.venue_trade_id for f in result.recorded] == ["B"]
    order.refresh_from_db()
    assert order.filled_quantity == D("2")


def test_bulk_is_all_or_nothing(user, instrument):
    order = submit(user, instrument, "buy", "1")
    with pytest.raises(FillRejected) as excinfo:
        fills_record(
            owner=user,
            fills=[
                FillInput(order.pk, "A", D("0.6"), D("100"), T0),
                FillInput(order.pk, "B", D("0.6"), D("100"), T0),
            ],
        )
    assert list(excinfo.value.detail["errors"]) == ["1"]
    assert not Fill.objects.exists()
    assert not Event.objects.filter(type="FillRecorded").exists()


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        # Refused by the checks, though its row alone would store fine.
        ({"quantity": D("2000")}, FillRejected, "exceeds the remaining"),
        # Refused by the checks, and its row would break the table's own check too: the
        # caller hears about the fill, not about the database.
        ({"quantity": D("-1")}, FillsInvalid, "quantity must be positive"),
    ],
)
def test_a_large_batch_with_one_refused_fill_writes_nothing(user, instrument, bad, error, message):
    # On PostgreSQL a batch this size has its rows on their way to the server (by COPY)
    # while it is checked; a refusal must still leave nothing behind and a usable connection.
    order = submit(user, instrument, "buy", "1000")
    items = [
        FillInput(order.pk, f"r-{i}", D("1"), D("100"), T0) for i in range(COPY_THRESHOLD + 10)
    ]
    items[COPY_THRESHOLD] = dataclasses.replace(items[COPY_THRESHOLD], **bad)
    with pytest.raises(error) as excinfo:
        fills_record(owner=user, fills=items)
    refusal = excinfo.value
    errors = refusal.errors if isinstance(refusal, FillsInvalid) else refusal.detail["errors"]
    assert [int(index) for index in errors] == [COPY_THRESHOLD]
    assert message in str(next(iter(errors.values())))
    assert not Fill.objects.exists()
    assert not Event.objects.filter(type="FillRecorded").exists()
    order.refresh_from_db()
    assert order.filled_quantity == 0
    # The connection carries on: the same batch without the bad fill goes in whole.
    del items[COPY_THRESHOLD]
    assert len(fills_record(owner=user, fills=items).recorded) == COPY_THRESHOLD + 9
    assert ledger_verify().ok


def test_bulk_refuses_another_users_order(user, other_user, instrument):
    order = submit(other_user, instrument, "buy", "1")
    with pytest.raises(ValidationError):
        fills_record(owner=user, fills=[FillInput(order.pk, "A", D("1"), D("100"), T0)])


def test_a_large_batch_takes_the_copy_path_and_stays_exact(user, instrument):
    # >= COPY_THRESHOLD rows: on PostgreSQL fills and events are written with COPY.
    buy = submit(user, instrument, "buy", "1000")
    sell = submit(user, instrument, "sell", "1000")
    items = [
        FillInput((buy if i % 3 else sell).pk, f"big-{i}", D("1.5"), D(100 + i % 7), T0, D("0.01"))
        for i in range(300)
    ]
    result = fills_record(owner=user, fills=items)
    assert len(result.recorded) == 300
    assert len({f.pk for f in result.recorded}) == 300
    assert Fill.objects.count() == 300
    assert Event.objects.filter(type="FillRecorded").count() == 300
    fill_ids = [e.data["fill_id"] for e in Event.objects.filter(type="FillRecorded")]
    assert sorted(fill_ids) == sorted(f.pk for f in Fill.objects.all())
    # Each row holds its own fill's values, under the id its event names.
    stored = Fill.objects.order_by("id").values_list(
        "id", "order_id", "venue_trade_id", "quantity", "price", "fee", "ts"
    )
    assert [row[1:] for row in stored] == [
        (f.order_id, f.venue_trade_id, f.quantity, f.price, f.fee, f.ts) for f in items
    ]
    assert [row[0] for row in stored] == [f.pk for f in result.recorded]
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    live = Position.objects.filter(owner=user).order_by("-id").first()
    assert (live.quantity, live.realized_pnl, live.fees_paid) == (
        full.state.quantity,
        full.state.realized_pnl,
        full.state.fees_paid,
    )
    assert ledger_verify().ok


def test_a_batch_of_many_round_trips_writes_every_life_and_trade_exactly(user, instrument):
    # Each buy/sell pair opens and flattens a life: 151 lives, so on PostgreSQL their
    # position and trade rows go in by COPY too (at least COPY_THRESHOLD rows each).
    buy = submit(user, instrument, "buy", "1000")
    sell = submit(user, instrument, "sell", "1000")
    items = [
        FillInput(
            (buy if i % 2 == 0 else sell).pk,
            f"rt-{i}",
            D("0.5"),
            D(100 + (i % 4)),
            T0.replace(minute=i // 60, second=i % 60),
            D("0.02"),
        )
        for i in range(301)
    ]
    fills_record(owner=user, fills=items)
    assert Position.objects.filter(owner=user).count() == 151 >= COPY_THRESHOLD
    assert Trade.objects.filter(owner=user).count() == 151
    closed = Trade.objects.filter(owner=user, status="closed").order_by("entry_time", "id")
    # Buy at 100 or 102, sell at 101 or 103: every round trip makes 0.5 x 1, less 0.04 fees.
    assert {(t.direction, t.pnl, t.fees, t.quantity) for t in closed} == {
        ("long", D("0.5"), D("0.04"), D("0.5"))
    }
    assert all(t.position_id is not None and t.exit_time is not None for t in closed)
    assert len({t.position_id for t in closed}) == 150
    live = open_position(user, instrument)
    assert (live.quantity, live.realized_pnl) == (D("0.5"), D(0))
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    replay, drift = position_rebuild(stream=stream)
    assert drift is None
    assert replay.state.life == 151


def test_venue_trade_ids_with_copy_control_characters_survive_the_bulk_path(user, instrument):
    # COPY's text format gives tab, newline, carriage return and backslash a meaning; the
    # bulk path escapes them. Quotes and non-ASCII go through the JSON of the events too.
    odd = [
        "tab\there",
        "new\nline",
        "cr\rhere",
        "back\\slash",
        'quote"d',
        "caf\u00e9 \u20ac",
        "\\N",
    ]
    buy = submit(user, instrument, "buy", "1000")
    items = [
        FillInput(buy.pk, odd[i] if i < len(odd) else f"plain-{i}", D("1"), D("100"), T0)
        for i in range(250)
    ]
    result = fills_record(owner=user, fills=items)
    assert len(result.recorded) == 250
    stored = set(Fill.objects.values_list("venue_trade_id", flat=True))
    assert set(odd) <= stored
    recorded = set(
        Event.objects.filter(type="FillRecorded").values_list("data__venue_trade_id", flat=True)
    )
    assert set(odd) <= recorded
    assert ledger_verify().ok
    # The same ids again are all duplicates: they were stored exactly as given.
    again = fills_record(owner=user, fills=items[: len(odd)])
    assert (again.recorded, sorted(again.duplicates)) == ([], sorted(odd))


@pytest.mark.postgres_only
@pytest.mark.parametrize("broken", ["owner of another order", "no such order"])
def test_the_database_holds_each_fill_to_its_orders_owner(user, other_user, instrument, broken):
    order = submit(user, instrument, "buy", "1")
    row = Fill(order=order, owner=user, venue_trade_id="x", quantity=D("1"), price=D("1"), ts=T0)
    if broken == "no such order":
        row.order_id = order.pk + 1000
    else:
        row.owner = other_user
    with connection.cursor() as cursor:
        # Django defers its keys to commit, which a test never reaches: check them now.
        cursor.execute("SET CONSTRAINTS fill_order_owner_fk IMMEDIATE")
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save(force_insert=True)


def _plan_nodes(node: dict) -> Iterator[dict]:  # type: ignore[type-arg]
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.postgres_only
def test_known_venue_ids_are_index_probes_however_stale_the_statistics(user, instrument):
    """A bulk ingest grows the fills faster than autovacuum analyses them. Finding the known
    venue ids must not depend on the statistics: with old ones, a plain join hashed every
    fill of the owner to look up one id."""
    order = submit(user, instrument, "buy", "100000")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE trading_fill")  # the statistics of an almost empty table,
        cursor.execute(  # then a bulk load they know nothing of
            "INSERT INTO trading_fill (order_id, owner_id, venue_trade_id, quantity, price, "
            "fee, ts, created_at) SELECT %s, %s, 'bulk-' || g, 1, 1, 0, now(), now() "
            "FROM generate_series(1, 50000) AS g",
            [order.pk, user.pk],
        )
    with CaptureQueriesContext(connection) as queries:
        assert known_venue_trade_ids(user, ["bulk-7", "new-1"]) == {"bulk-7"}
    [sql] = [query["sql"] for query in queries.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        [[plan]] = cursor.fetchone()
    fill_scans = [
        node
        for node in _plan_nodes(plan["Plan"])
        if node.get("Relation Name") == Fill._meta.db_table
    ]
    assert fill_scans
    for node in fill_scans:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), node
        assert "venue_trade_id" in node.get("Index Cond", ""), node


def test_gc_paused_holds_the_collector_off_and_restores_it_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_that_was_off_off():
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
