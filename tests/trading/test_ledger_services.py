"""Order and fill services: validation, idempotency, order state and position accounting."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from persistence.bulk import COPY_THRESHOLD
from persistence.events import ledger_verify
from persistence.models import Event, Snapshot
from tests.factories import StrategyFactory
from tests.trading.conftest import T0, fill, submit, trade
from trading.models import Fill, Order, Position, PositionHead, Trade
from trading.services import (
    FillInput,
    FillRejected,
    FillsInvalid,
    LedgerConflict,
    _known_venue_trade_ids,
    fill_record,
    fills_record,
    order_cancel,
    order_submit,
    position_rebuild,
    position_replay,
    position_stream,
)

pytestmark = pytest.mark.django_db
D = Decimal


def open_position(owner, instrument) -> Position:  # type: ignore[no-untyped-def]
    return Position.objects.get(owner=owner, instrument=instrument, status="open")


# --- order_submit -------------------------------------------------------------------------


def test_submit_records_an_accepted_order_and_its_events(user, instrument):
    order = submit(user, instrument, "buy", "1.5", order_type="limit", limit_price=D("100.25"))
    assert order.status == Order.Status.ACCEPTED
    types = list(Event.objects.filter(stream=f"order-{order.pk}").values_list("type", "version"))
    assert types == [("OrderSubmitted", 1), ("OrderAccepted", 2)]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"quantity": D("0.0015")}, "quantity"),
        ({"quantity": D("0")}, "quantity"),
        ({"order_type": "limit"}, "limit_price"),
        ({"order_type": "limit", "limit_price": D("100.001")}, "limit_price"),
        ({"limit_price": D("100")}, "limit_price"),
        ({"order_type": "stop"}, "stop_price"),
        ({"side": "hold"}, "side"),
    ],
)
def test_submit_rejects_off_grid_or_incomplete_orders(user, instrument, kwargs, field):
    payload = {"side": "buy", "quantity": D("1"), **kwargs}
    with pytest.raises(ValidationError) as excinfo:
        order_submit(owner=user, instrument=instrument, client_order_id="x", **payload)
    assert field in excinfo.value.message_dict
    assert not Order.objects.exists()
    assert not Event.objects.exists()


def test_replayed_client_order_id_returns_the_same_order(user, instrument):
    first = order_submit(
        owner=user, instrument=instrument, side="buy", quantity=D("1"), client_order_id="abc"
    )
    again = order_submit(
        owner=user, instrument=instrument, side="buy", quantity=D("1.000"), client_order_id="abc"
    )
    assert first.created and not again.created
    assert again.order.pk == first.order.pk
    assert Order.objects.count() == 1
    assert Event.objects.count() == 2


def test_replay_with_a_different_payload_is_a_conflict(user, instrument):
    submit(user, instrument, "buy", "1", client_order_id="abc")
    with pytest.raises(LedgerConflict):
        submit(user, instrument, "sell", "1", client_order_id="abc")
    assert Order.objects.count() == 1


def test_client_order_ids_are_per_user(user, other_user, instrument):
    a = submit(user, instrument, "buy", "1", client_order_id="same")
    b = submit(other_user, instrument, "buy", "1", client_order_id="same")
    assert a.pk != b.pk


def test_strategy_of_another_user_is_refused(user, other_user, instrument):
    strategy = StrategyFactory(owner=other_user, instrument=instrument)
    with pytest.raises(ValidationError):
        submit(user, instrument, "buy", "1", strategy=strategy)


# --- order_cancel -------------------------------------------------------------------------


def test_cancel_keeps_fills_and_appends_an_event(user, instrument):
    order = submit(user, instrument, "buy", "2")
    fill(order, "0.5", "100")
    cancelled = order_cancel(order=order)
    assert cancelled.status == Order.Status.CANCELLED
    assert cancelled.filled_quantity == D("0.5")
    last = Event.objects.filter(stream=f"order-{order.pk}").last()
    assert last is not None and last.type == "OrderCancelled"
    assert Decimal(last.data["remaining_quantity"]) == D("1.5")


def test_cancelling_a_filled_order_is_a_conflict_naming_the_status(user, instrument):
    order = trade(user, instrument, "buy", "1", "100")
    with pytest.raises(LedgerConflict) as excinfo:
        order_cancel(order=order)
    assert excinfo.value.detail["status"] == "filled"


def test_a_cancelled_order_takes_no_fills(user, instrument):
    order = submit(user, instrument, "buy", "1")
    order_cancel(order=order)
    with pytest.raises(FillRejected):
        fill(order, "1", "100")
    assert not Fill.objects.exists()


# --- fill_record --------------------------------------------------------------------------


def test_partial_fills_update_filled_quantity_average_and_status(user, instrument):
    order = submit(user, instrument, "buy", "3")
    fill(order, "1", "100")
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_FILLED
    fill(order, "2", "101")
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert order.filled_quantity == D("3")
    # (100 + 202) / 3, rounded to tick / 10^6.
    assert order.avg_fill_price == D("100.66666667")


def test_a_fill_beyond_the_remaining_quantity_is_rejected(user, instrument):
    order = submit(user, instrument, "buy", "1")
    fill(order, "0.6", "100")
    with pytest.raises(FillRejected):
        fill(order, "0.5", "100")
    order.refresh_from_db()
    assert order.filled_quantity == D("0.6")
    assert Fill.objects.count() == 1


def test_off_grid_fill_is_invalid(user, instrument):
    order = submit(user, instrument, "buy", "1")
    with pytest.raises(ValidationError):
        fill(order, "0.0005", "100")
    with pytest.raises(ValidationError):
        fill(order, "0.5", "100.005")
    assert not Fill.objects.exists()


def test_duplicate_venue_trade_id_is_counted_once(user, instrument):
    order = submit(user, instrument, "buy", "2")
    first, created = fill_record(
        order=order, venue_trade_id="T1", quantity=D("1"), price=D("100"), ts=T0
    )
    again, created_again = fill_record(
        order=order, venue_trade_id="T1", quantity=D("1"), price=D("100"), ts=T0
    )
    assert created and not created_again
    assert again.pk == first.pk
    order.refresh_from_db()
    assert order.filled_quantity == D("1")
    assert open_position(user, instrument).quantity == D("1")


def test_round_trip_realizes_exact_pnl_and_closes_the_trade(user, instrument):
    trade(user, instrument, "buy", "1", "100", fee="0.1")
    trade(user, instrument, "buy", "2", "101", fee="0.2")
    position = open_position(user, instrument)
    assert position.quantity == D("3")
    assert position.avg_entry_price == D("100.66666667")
    trade(user, instrument, "sell", "1", "102", fee="0.1")
    trade(user, instrument, "sell", "2", "103", fee="0.2")
    position.refresh_from_db()
    assert position.status == "closed" and position.quantity == 0
    # Proceeds 308 minus cost 302, exactly, whatever the partial rounding on the way.
    assert position.realized_pnl == D("6")
    assert position.fees_paid == D("0.6")
    [round_trip] = Trade.objects.filter(owner=user)
    assert round_trip.status == "closed"
    assert round_trip.direction == "long"
    assert round_trip.quantity == D("3")
    assert round_trip.entry_price == D("100.66666667")
    assert round_trip.exit_price == D("102.66666667")
    assert round_trip.pnl == D("6")
    assert round_trip.fees == D("0.6")
    assert round_trip.exit_reason == "signal"
    assert round_trip.position_id == position.pk


def test_short_position_profits_when_price_falls(user, instrument):
    trade(user, instrument, "sell", "2", "100")
    trade(user, instrument, "buy", "2", "90")
    position = Position.objects.get(owner=user)
    assert position.realized_pnl == D("20")
    assert Trade.objects.get(owner=user).direction == "short"


def test_fill_crossing_zero_closes_one_position_and_opens_the_opposite(user, instrument):
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "sell", "3", "110", fee="0.3")
    closed, opened = Position.objects.filter(owner=user).order_by("id")
    assert closed.status == "closed" and closed.closed_at is not None
    assert closed.realized_pnl == D("10")
    assert closed.fees_paid == D("0.1")
    assert opened.status == "open"
    assert opened.quantity == D("-2")
    assert opened.avg_entry_price == D("110")
    assert opened.fees_paid == D("0.2")
    first, second = Trade.objects.filter(owner=user).order_by("id")
    assert (first.status, first.exit_reason) == ("closed", "reversal")
    assert (second.status, second.direction, second.quantity) == ("open", "short", D("2"))


def test_strategies_keep_separate_positions(user, instrument):
    strategy = StrategyFactory(owner=user, instrument=instrument)
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "buy", "2", "100", strategy=strategy)
    quantities = dict(Position.objects.filter(owner=user).values_list("strategy_id", "quantity"))
    assert quantities == {None: D("1"), strategy.pk: D("2")}


def test_a_fill_appends_one_event_recording_the_fill_and_its_order(user, instrument):
    order = trade(user, instrument, "buy", "1", "100.50")
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    [recorded] = Event.objects.filter(stream=stream)
    assert recorded.type == "FillRecorded"
    assert recorded.data["order_id"] == order.pk
    assert (recorded.data["quantity"], recorded.data["price"]) == ("1", "100.50")
    # The position's state lives in the stream's head, at the event's version.
    head = PositionHead.objects.get(stream=stream)
    assert head.version == recorded.version
    assert Decimal(head.state["quantity"]) == 1
    assert Decimal(recorded.data["order"]["filled_notional"]) == Decimal("100.50")
    assert recorded.data["order"]["status"] == "filled"
    # The order's own stream holds its lifecycle only: the fill is not recorded twice.
    assert list(
        Event.objects.filter(stream=f"order-{order.pk}").values_list("type", flat=True)
    ) == ["OrderSubmitted", "OrderAccepted"]
    order.refresh_from_db()
    assert (order.filled_notional, order.avg_fill_price) == (Decimal("100.50"), Decimal("100.50"))
    assert ledger_verify().ok


@pytest.mark.parametrize("damage", ["deleted", "stale"])
def test_a_head_not_at_the_stream_version_is_ignored_and_the_stream_replayed(
    user, instrument, damage
):
    trade(user, instrument, "buy", "2", "100")
    trade(user, instrument, "buy", "1", "130")
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    heads = PositionHead.objects.filter(stream=stream)
    if damage == "deleted":
        heads.delete()
    else:
        # As if written after the first fill only, with a state that was never true.
        heads.update(version=1, state={"life": 1, "quantity": "99", "cost_basis": "1"})
    trade(user, instrument, "sell", "1", "150")
    position = Position.objects.get(owner=user)
    # Average entry 110 over 3; selling 1 at 150 realizes exactly 40.
    assert (position.quantity, position.avg_entry_price, position.realized_pnl) == (
        D("2"),
        D("110"),
        D("40"),
    )
    replay = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    head = PositionHead.objects.get(stream=stream)
    assert head.version == replay.version == 3
    assert head.state == replay.state.to_json()


# --- bulk ---------------------------------------------------------------------------------


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


# --- snapshots and replays ----------------------------------------------------------------


def test_snapshot_every_n_events_and_replays_agree(user, instrument, settings):
    settings.LEDGER_SNAPSHOT_EVERY = 3
    order = submit(user, instrument, "buy", "10")
    for i in range(7):
        fill(order, "1", str(100 + i))
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    assert list(Snapshot.objects.filter(stream=stream).values_list("version", flat=True)) == [
        6,
        3,
    ]
    from_snapshot = position_replay(stream=stream, instrument=instrument)
    full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    assert (from_snapshot.from_snapshot, from_snapshot.events_applied) == (6, 1)
    assert full.events_applied == 7
    assert from_snapshot.state == full.state
    live = open_position(user, instrument)
    assert (live.quantity, live.avg_entry_price) == (
        full.state.quantity,
        full.state.avg_entry_price,
    )


def test_a_batch_with_many_snapshots_stores_each_one_anchored(user, instrument, settings):
    # Enough snapshots in one batch that on PostgreSQL they go in by COPY as well.
    settings.LEDGER_SNAPSHOT_EVERY = 2
    buy = submit(user, instrument, "buy", "1000")
    items = [FillInput(buy.pk, f"s-{i}", D("0.25"), D(100 + i % 5), T0) for i in range(120)]
    fills_record(owner=user, fills=items)
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    assert Snapshot.objects.filter(stream=stream).count() == 60 >= COPY_THRESHOLD
    report = ledger_verify()
    assert report.ok and report.snapshots == 60
    newest = Snapshot.objects.filter(stream=stream).order_by("-version").first()
    assert newest.state["event_hash"] == Event.objects.get(stream=stream, version=120).hash
    from_snapshot = position_replay(stream=stream, instrument=instrument)
    full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    assert from_snapshot.from_snapshot == 120
    assert from_snapshot.state == full.state


def test_replays_as_of_a_time_pick_the_snapshot_and_events_recorded_by_then(
    user, instrument, settings
):
    # Fills recorded at known times, a snapshot every two events: an as-of replay takes
    # the newest snapshot and the events recorded at or before the time, to the
    # microsecond, and agrees with a full replay to the same time.
    settings.LEDGER_SNAPSHOT_EVERY = 2
    buy = submit(user, instrument, "buy", "20")
    recorded = [T0 + timedelta(minutes=n, microseconds=n * 7) for n in range(1, 6)]
    for n, at in enumerate(recorded, 1):
        with patch("django.utils.timezone.now", return_value=at):
            fills_record(owner=user, fills=[FillInput(buy.pk, f"t-{n}", D(n), D(100 + n), T0)])
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    tiny = timedelta(microseconds=1)
    for as_of, fills, snapshot in [
        (recorded[0] - tiny, 0, 0),
        (recorded[0], 1, 0),
        (recorded[2], 3, 2),
        (recorded[3] - tiny, 3, 2),
        (recorded[3], 4, 4),
        (recorded[4], 5, 4),
    ]:
        # The same instant in another zone selects the same history.
        for when in (as_of, as_of.astimezone(ZoneInfo("Asia/Tokyo"))):
            replay = position_replay(stream=stream, instrument=instrument, as_of=when)
            full = position_replay(
                stream=stream, instrument=instrument, as_of=when, use_snapshot=False
            )
            assert (replay.version, replay.from_snapshot) == (fills, snapshot), when
            assert replay.state == full.state
            assert replay.state.quantity == sum(D(n) for n in range(1, fills + 1))


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
        assert _known_venue_trade_ids(user, ["bulk-7", "new-1"]) == {"bulk-7"}
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


def test_a_single_fill_is_audited_as_the_rows_changed(user, instrument):
    """Each row a fill updates gets one UPDATE entry whose changes are exactly the row's
    change in the database, and the fill one CREATE entry."""
    from auditlog.diff import model_instance_diff
    from auditlog.models import LogEntry

    order = submit(user, instrument, "buy", "3")
    fill(order, "1", "100", "0.1")
    position = Position.objects.get(owner=user)
    trade_row = Trade.objects.get(owner=user)
    before = [Order.objects.get(pk=order.pk), position, trade_row]
    last = LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    recorded = fill(order, "2", "103.5", "0.2")
    after = [type(row).objects.get(pk=row.pk) for row in before]
    entries = LogEntry.objects.filter(pk__gt=last)
    assert sorted((e.content_type.model, e.object_pk, e.action) for e in entries) == sorted(
        [
            ("fill", str(recorded.pk), LogEntry.Action.CREATE),
            *((type(row)._meta.model_name, str(row.pk), LogEntry.Action.UPDATE) for row in before),
        ]
    )

    def same(old: str | None, new: str | None) -> bool:
        try:
            return D(old) == D(new)  # type: ignore[arg-type]
        except (ArithmeticError, TypeError, ValueError):
            return old == new

    for old, new in zip(before, after, strict=True):
        [entry] = entries.filter(action=LogEntry.Action.UPDATE, object_pk=str(old.pk)).filter(
            content_type__model=type(old)._meta.model_name
        )
        expected = model_instance_diff(old, new)
        expected.pop("updated_at", None)
        changes = entry.changes_dict
        assert set(changes) == set(expected), type(old)
        for name, (was, now) in expected.items():
            assert same(changes[name][0], was) and same(changes[name][1], now), (name, changes)
        assert entry.object_repr == str(new)
