"""Order services: validate, submit (idempotent on the client order id), cancel and reject.

An order's lifecycle is its own event stream (`order_stream`); its fills are events of its
position's stream, recorded by `trading.services.fills`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import User
from marketdata.models import Instrument
from persistence.events import NewEvent, StreamVersionConflict, events_append, latest_events
from strategies.models import Strategy
from trading.models import Order, OrderSource, OrderStatus, OrderType, Side, TimeInForce
from trading.services.ledger import RETRIES, LedgerConflict, on_grid
from trading.streams import (
    ORDER_ACCEPTED,
    ORDER_CANCELLED,
    ORDER_REJECTED,
    ORDER_SUBMITTED,
    event_metadata,
    order_stream,
)

FILLABLE = (OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
CANCELLABLE = FILLABLE
REJECTABLE = (OrderStatus.NEW, OrderStatus.ACCEPTED)


@dataclass(frozen=True)
class OrderSubmitResult:
    order: Order
    created: bool


_REPLAY_FIELDS = (
    "instrument_id",
    "strategy_id",
    "side",
    "order_type",
    "quantity",
    "limit_price",
    "stop_price",
    "time_in_force",
)


def order_validate(
    *,
    owner: User,
    instrument: Instrument,
    side: str,
    quantity: Decimal,
    client_order_id: str,
    order_type: str = OrderType.MARKET,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    time_in_force: str = TimeInForce.GTC,
    strategy: Strategy | None = None,
) -> None:
    """Raise a per-field ValidationError for an order the ledger would refuse."""
    errors: dict[str, str] = {}
    if side not in Side.values:
        errors["side"] = f"must be one of {', '.join(Side.values)}"
    if order_type not in OrderType.values:
        errors["order_type"] = f"must be one of {', '.join(OrderType.values)}"
    if time_in_force not in TimeInForce.values:
        errors["time_in_force"] = f"must be one of {', '.join(TimeInForce.values)}"
    if quantity <= 0:
        errors["quantity"] = "must be positive"
    elif not on_grid(quantity, instrument.quantity_step):
        errors["quantity"] = f"must be a multiple of the quantity step {instrument.quantity_step}"
    for name, price in (("limit_price", limit_price), ("stop_price", stop_price)):
        if price is None:
            continue
        if price <= 0:
            errors[name] = "must be positive"
        elif not on_grid(price, instrument.price_tick):
            errors[name] = f"must be a multiple of the price tick {instrument.price_tick}"
    if order_type == OrderType.LIMIT and limit_price is None:
        errors["limit_price"] = "a limit order needs a limit price"
    if order_type == OrderType.STOP and stop_price is None:
        errors["stop_price"] = "a stop order needs a stop price"
    if order_type == OrderType.MARKET and limit_price is not None:
        errors["limit_price"] = "a market order takes no limit price"
    if not instrument.is_active:
        errors["instrument"] = "instrument is not active"
    if strategy is not None and strategy.owner_id != owner.pk:
        errors["strategy"] = "not one of the owner's strategies"
    if not client_order_id:
        errors["client_order_id"] = "required"
    if errors:
        raise ValidationError(errors)


def order_submit(
    *,
    owner: User,
    instrument: Instrument,
    side: str,
    quantity: Decimal,
    client_order_id: str,
    order_type: str = OrderType.MARKET,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    time_in_force: str = TimeInForce.GTC,
    strategy: Strategy | None = None,
    source: str = OrderSource.API,
    actor: User | None = None,
) -> OrderSubmitResult:
    """Record an order, accepted once it passes validation.

    Idempotent on (owner, client_order_id): a replay with the same payload returns the
    existing order and creates nothing; a replay with a different payload is a conflict.
    """
    order_validate(
        owner=owner,
        instrument=instrument,
        side=side,
        quantity=quantity,
        client_order_id=client_order_id,
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        strategy=strategy,
    )

    order = Order(
        owner=owner,
        strategy=strategy,
        instrument=instrument,
        side=side,
        order_type=order_type,
        quantity=quantity,
        limit_price=limit_price,
        stop_price=stop_price,
        time_in_force=time_in_force,
        client_order_id=client_order_id,
        status=OrderStatus.ACCEPTED,
        source=source,
    )
    for _ in range(RETRIES):
        existing = Order.objects.filter(owner=owner, client_order_id=client_order_id).first()
        if existing is not None:
            return OrderSubmitResult(order=_replayed(existing, order), created=False)
        try:
            return OrderSubmitResult(order=_order_insert(order, actor=actor), created=True)
        except IntegrityError:
            # A concurrent submit with the same client_order_id won; compare with it.
            order.pk = None
            continue
    raise LedgerConflict("could not record the order; retry")


def _replayed(existing: Order, submitted: Order) -> Order:
    differs = [
        name
        for name in _REPLAY_FIELDS
        if getattr(existing, name) != getattr(submitted, name)
        and not (getattr(existing, name) is None and getattr(submitted, name) is None)
    ]
    if differs:
        raise LedgerConflict(
            "client_order_id was already used for a different order",
            order_id=existing.pk,
            fields=differs,
        )
    return existing


@transaction.atomic
def _order_insert(order: Order, *, actor: User | None) -> Order:
    with transaction.atomic():
        order.save(force_insert=True)
    stream = order_stream(order.pk)
    submitted = {
        "order_id": order.pk,
        "owner_id": order.owner_id,
        "client_order_id": order.client_order_id,
        "instrument_id": order.instrument_id,
        "symbol": order.instrument.symbol,
        "strategy_id": order.strategy_id,
        "side": order.side,
        "order_type": order.order_type,
        "quantity": order.quantity,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "time_in_force": order.time_in_force,
        "source": order.source,
    }
    meta = event_metadata(actor, order.source)
    events_append(
        [
            NewEvent(stream, ORDER_SUBMITTED, submitted, expected_version=0, metadata=meta),
            NewEvent(
                stream,
                ORDER_ACCEPTED,
                {"order_id": order.pk, "status": OrderStatus.ACCEPTED},
                expected_version=1,
                metadata=meta,
            ),
        ]
    )
    return order


def order_cancel(*, order: Order, actor: User | None = None, reason: str = "") -> Order:
    """Cancel what is left of an order. Cancelling a finished order is a conflict."""
    return _order_close(
        order=order,
        actor=actor,
        allowed=CANCELLABLE,
        status=OrderStatus.CANCELLED,
        event_type=ORDER_CANCELLED,
        reason=reason,
    )


def order_reject(*, order: Order, actor: User | None = None, reason: str = "") -> Order:
    """Record the venue's rejection of an order that has no fills."""
    return _order_close(
        order=order,
        actor=actor,
        allowed=REJECTABLE,
        status=OrderStatus.REJECTED,
        event_type=ORDER_REJECTED,
        reason=reason,
    )


def _order_close(
    *,
    order: Order,
    actor: User | None,
    allowed: Sequence[str],
    status: str,
    event_type: str,
    reason: str,
) -> Order:
    for _ in range(RETRIES):
        try:
            return _order_close_atomic(
                order_id=order.pk,
                actor=actor,
                allowed=allowed,
                status=status,
                event_type=event_type,
                reason=reason,
            )
        except StreamVersionConflict:
            continue
    raise LedgerConflict("the order changed while it was being updated; retry")


@transaction.atomic
def _order_close_atomic(
    *,
    order_id: int,
    actor: User | None,
    allowed: Sequence[str],
    status: str,
    event_type: str,
    reason: str,
) -> Order:
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.status not in allowed:
        raise LedgerConflict(
            f"an order that is {order.status} cannot become {status}",
            status=order.status,
            order_id=order.pk,
        )
    stream = order_stream(order.pk)
    version = latest_events([stream])[stream].version
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    events_append(
        [
            NewEvent(
                stream,
                event_type,
                {
                    "order_id": order.pk,
                    "status": status,
                    "remaining_quantity": order.remaining_quantity,
                    "reason": reason,
                },
                expected_version=version,
                metadata=event_metadata(actor, "api" if actor is None else "user"),
            )
        ]
    )
    return order
