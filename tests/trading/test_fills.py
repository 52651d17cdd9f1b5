"""A fill's services: order state, venue-id idempotency, position accounting, events and audit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from persistence.events import ledger_verify
from persistence.models import Event
from tests.factories import StrategyFactory
from tests.trading.conftest import T0, fill, open_position, submit, trade
from trading.models import Fill, Order, Position, PositionHead, Trade
from trading.services import (
    FillRejected,
    fill_record,
    position_stream,
)

pytestmark = pytest.mark.django_db
D = Decimal


# --- order_submit -------------------------------------------------------------------------


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
