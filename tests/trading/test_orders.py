"""Order services: validation, idempotency of client order ids, cancel and its events."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from persistence.models import Event
from tests.factories import StrategyFactory
from tests.trading.conftest import fill, submit, trade
from trading.models import Fill, Order
from trading.services import (
    FillRejected,
    LedgerConflict,
    order_cancel,
    order_submit,
)

pytestmark = pytest.mark.django_db
D = Decimal


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
