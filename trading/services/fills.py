"""Writes to the trading ledger: orders and fills, and the positions and trades they project.

Every service is one transaction that appends to the event log and updates the projections
(order, position, trade rows) together. Locks are always taken in the same order, so
concurrent writers queue instead of deadlocking: order rows (by id), then position streams
(by name), then the event chain.

The event log is the truth. A position's next state is computed from its stream's head
(`PositionHead`, written with the events and checked against the stream's version) or,
when the head is not at that version, from a replay of the stream; never from the position
row. A projection that drifted is corrected by the next fill, and `rebuild_positions` shows
and repairs drift.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Model
from django.utils import timezone

from accounts.models import User
from persistence.audit import audited_update
from persistence.bulk import (
    COPY_THRESHOLD,
    bulk_update_rows,
    copy_text,
    copy_text_into,
    gc_paused,
    insert_models,
    reserve_ids,
)
from persistence.events import (
    NewEvent,
    StreamVersionConflict,
    events_append,
    events_ingest,
    latest_events,
    lock_streams,
    snapshots_store,
    stream_tail,
    stream_versions,
)
from persistence.models import Event, Snapshot
from strategies.models import Strategy
from trading.accounting import (
    PRECISION,
    PositionState,
    Scales,
    apply_fill,
    average_price,
    exact_context,
    utc_isoformat,
)
from trading.models import (
    ExitReason,
    Fill,
    Instrument,
    Order,
    OrderSource,
    OrderStatus,
    OrderType,
    Position,
    PositionHead,
    Side,
    TimeInForce,
    Trade,
)
from trading.rollups import trades_closed_record

RETRIES = 3

ORDER_SUBMITTED = "OrderSubmitted"
ORDER_ACCEPTED = "OrderAccepted"
ORDER_REJECTED = "OrderRejected"
ORDER_CANCELLED = "OrderCancelled"
FILL_RECORDED = "FillRecorded"

FILLABLE = (OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
CANCELLABLE = FILLABLE
REJECTABLE = (OrderStatus.NEW, OrderStatus.ACCEPTED)


class LedgerConflict(Exception):
    """The request is valid but clashes with the ledger's current state (HTTP 409)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def order_stream(order_id: int) -> str:
    return f"order-{order_id}"


def position_stream(*, owner_id: int, strategy_id: int | None, symbol: str) -> str:
    return f"position-{owner_id}-{strategy_id or 'manual'}-{symbol}"


def instrument_scales(instrument: Instrument) -> Scales:
    return Scales.for_instrument(
        price_tick=instrument.price_tick, quantity_step=instrument.quantity_step
    )


def _on_grid(value: Decimal, step: Decimal) -> bool:
    with exact_context():
        return value % step == 0


def _metadata(actor: User | None, source: str) -> dict[str, Any]:
    return {"actor_id": actor.pk if actor is not None else None, "source": source}


# --- Orders -------------------------------------------------------------------------------


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
    elif not _on_grid(quantity, instrument.quantity_step):
        errors["quantity"] = f"must be a multiple of the quantity step {instrument.quantity_step}"
    for name, price in (("limit_price", limit_price), ("stop_price", stop_price)):
        if price is None:
            continue
        if price <= 0:
            errors[name] = "must be positive"
        elif not _on_grid(price, instrument.price_tick):
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
    meta = _metadata(actor, order.source)
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
                metadata=_metadata(actor, "api" if actor is None else "user"),
            )
        ]
    )
    return order


# --- Fills --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillInput:
    order_id: int
    venue_trade_id: str
    quantity: Decimal
    price: Decimal
    ts: datetime
    fee: Decimal = Decimal(0)


class RecordedFill(NamedTuple):
    pk: int
    order_id: int
    venue_trade_id: str


@dataclass
class FillsResult:
    recorded: list[RecordedFill] = field(default_factory=list)
    # Venue trade ids that were already in the ledger (or twice in the batch): not counted.
    duplicates: list[str] = field(default_factory=list)


class FillRejected(LedgerConflict):
    """A fill that the order's state does not allow (over-fill, finished order)."""


class FillsInvalid(ValidationError):
    """Malformed fills in a bulk request; `errors` maps each bad fill's index to its problem."""

    def __init__(self, errors: dict[int, str]) -> None:
        super().__init__({"fills": [f"fill {i}: {problem}" for i, problem in errors.items()]})
        self.errors = errors


def fill_record(
    *,
    order: Order,
    venue_trade_id: str,
    quantity: Decimal,
    price: Decimal,
    ts: datetime,
    fee: Decimal = Decimal(0),
    actor: User | None = None,
    source: str = "api",
) -> tuple[Fill, bool]:
    """Record one fill; returns (fill, created). A known venue trade id returns the old fill."""
    result = fills_record(
        owner=order.owner,
        fills=[
            FillInput(
                order_id=order.pk,
                venue_trade_id=venue_trade_id,
                quantity=quantity,
                price=price,
                ts=ts,
                fee=fee,
            )
        ],
        actor=actor,
        source=source,
        audit=True,
    )
    created = bool(result.recorded)
    return Fill.objects.get(owner_id=order.owner_id, venue_trade_id=venue_trade_id), created


def fills_record(
    *,
    owner: User,
    fills: Sequence[FillInput],
    actor: User | None = None,
    source: str = "bulk",
    audit: bool = False,
) -> FillsResult:
    """Record fills of the owner's orders in one transaction, all or nothing.

    Duplicated venue trade ids are skipped and reported. A fill the order cannot take
    raises `FillRejected` (naming the fill's index) and nothing is written. `audit=False`
    writes projections with bulk statements, which auditlog does not see: the events are
    the record of machine-speed ingest.
    """
    for _ in range(RETRIES):
        try:
            with gc_paused():
                return _fills_record_atomic(
                    owner=owner, fills=fills, actor=actor, source=source, audit=audit
                )
        except (StreamVersionConflict, _DuplicateRace):
            # Someone else wrote first: everything was rolled back; read afresh and redo.
            continue
    raise LedgerConflict("the ledger changed while the fills were being recorded; retry")


class _DuplicateRace(Exception):
    pass


class _FillText(NamedTuple):
    """A fill's values as its event and its COPY row write them: made once per fill."""

    quantity: str
    price: str
    fee: str
    ts: str  # UTC

    @classmethod
    def of(cls, fill: FillInput) -> _FillText:
        return cls(str(fill.quantity), str(fill.price), str(fill.fee), utc_isoformat(fill.ts))


@dataclass
class _OrderBook:
    order: Order
    instrument: Instrument
    filled_notional: Decimal
    # Plain strings, not the choices enums: each goes into the event of every fill.
    side: str
    exit_hint: str
    changed: bool = False

    @classmethod
    def of(cls, order: Order) -> _OrderBook:
        return cls(
            order=order,
            instrument=order.instrument,
            filled_notional=order.filled_notional,
            side=str(order.side),
            exit_hint=str(_exit_reason_hint(order)),
        )


@dataclass
class _PositionBook:
    stream: str
    version: int
    state: PositionState
    owner_id: int
    strategy_id: int | None
    instrument: Instrument
    scales: Scales
    # The rows and trades of lives that exist already (at most the open one), by life.
    rows: dict[int, Position] = field(default_factory=dict)
    trades: dict[int, Trade] = field(default_factory=dict)
    # The newest state of every life this batch touched, by life: projected once, at the end.
    touched: dict[int, PositionState] = field(default_factory=dict)
    # Snapshots due in this batch: (index of the event in the batch, version, state JSON).
    due: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)


@transaction.atomic
def _fills_record_atomic(
    *,
    owner: User,
    fills: Sequence[FillInput],
    actor: User | None,
    source: str,
    audit: bool,
) -> FillsResult:
    result = FillsResult()
    order_ids = sorted({f.order_id for f in fills})
    orders = {
        o.pk: o
        for o in Order.objects.select_for_update(of=("self",))
        .select_related("instrument")
        .filter(owner=owner, pk__in=order_ids)
        .order_by("pk")
    }
    missing = [i for i, f in enumerate(fills) if f.order_id not in orders]
    if missing:
        if len(fills) == 1:
            raise ValidationError({"order": "no such order for this owner"})
        raise FillsInvalid(dict.fromkeys(missing, "no such order for this owner"))

    known = _known_venue_trade_ids(owner, [f.venue_trade_id for f in fills])
    fresh: list[tuple[int, FillInput]] = []
    for index, fill in enumerate(fills):
        if fill.venue_trade_id in known:
            result.duplicates.append(fill.venue_trade_id)
            continue
        known.add(fill.venue_trade_id)
        fresh.append((index, fill))
    if not fresh:
        return result

    streams = {
        o.pk: position_stream(
            owner_id=owner.pk, strategy_id=o.strategy_id, symbol=o.instrument.symbol
        )
        for o in orders.values()
    }
    lock_streams(streams.values())
    order_books = {pk: _OrderBook.of(o) for pk, o in orders.items()}
    positions = _position_books(owner=owner, orders=orders, streams=streams)
    # The rows as locked, before this batch changes them: what their audit entries diff with.
    locked = _locked_rows(orders, positions) if audit else {}

    now = timezone.now()
    owner_id, stamp = owner.pk, now.isoformat()
    texts = [_FillText.of(fill) for _, fill in fresh]
    # Large batches on PostgreSQL COPY their fills (ids taken first) before checking them
    # and before any event: the server stores the rows while the batch is checked. A fill
    # the checks refuse raises, and takes the whole transaction, rows and all, with it.
    by_copy = not audit and len(fresh) >= COPY_THRESHOLD and connection.vendor == "postgresql"
    if by_copy:
        fill_ids = reserve_ids(Fill, len(fresh))
        rows = "".join(
            f"{fill_id}\t{f.order_id}\t{owner_id}\t{copy_text(f.venue_trade_id)}\t"
            f"{t.quantity}\t{t.price}\t{t.fee}\t{t.ts}\t{stamp}\n"
            for fill_id, (_, f), t in zip(fill_ids, fresh, texts, strict=True)
        )
        with _fills_copying(rows):
            accepted = _fills_checked(fills, fresh, order_books)
    else:
        accepted = _fills_checked(fills, fresh, order_books)
        fill_ids = _fills_save(owner, [fill for fill, _ in accepted], audit=audit)

    meta = _metadata(actor, source)
    every = settings.LEDGER_SNAPSHOT_EVERY

    def fill_events() -> Iterator[NewEvent]:
        # Consumed while COPY streams the events: each fill is applied to its position
        # as the server stores the events before it.
        for index, (fill_id, (fill, order_after), text) in enumerate(
            zip(fill_ids, accepted, texts, strict=True)
        ):
            book = positions[streams[fill.order_id]]
            event = _position_apply(
                book,
                order=order_books[fill.order_id],
                order_after=order_after,
                fill=fill,
                fill_id=fill_id,
                text=text,
                metadata=meta,
            )
            if every > 0 and book.version % every == 0:
                book.due.append((index, book.version, book.state.to_json()))
            yield event

    with localcontext(prec=PRECISION):
        hashes = events_ingest(fill_events(), streams=positions.keys(), created_at=now)
    projections = _projections(order_books, positions)
    _write_projections(projections, audit=audit, locked=locked)
    trades_closed_record(
        trade
        for book in positions.values()
        for trade in book.trades.values()
        if trade.status == Trade.Status.CLOSED
    )
    _heads_write(positions.values(), now)
    _snapshot_due(positions.values(), hashes, now)
    result.recorded = [
        RecordedFill(pk=pk, order_id=fill.order_id, venue_trade_id=fill.venue_trade_id)
        for pk, (fill, _) in zip(fill_ids, accepted, strict=True)
    ]
    return result


def _fills_checked(
    fills: Sequence[FillInput],
    fresh: list[tuple[int, FillInput]],
    order_books: dict[int, _OrderBook],
) -> list[tuple[FillInput, dict[str, str]]]:
    """Check each fresh fill against its order and add it to the order; return each with
    its order's state after it. Raises, naming every fill's index, if any is refused."""
    conflicts: dict[str, str] = {}
    invalid: dict[str, str] = {}
    accepted: list[tuple[FillInput, dict[str, str]]] = []
    with localcontext(prec=PRECISION):
        for index, fill in fresh:
            book = order_books[fill.order_id]
            conflict, problem = _fill_error(book.order, book.instrument, fill)
            if conflict or problem:
                (conflicts if conflict else invalid)[str(index)] = conflict or problem
                continue
            accepted.append((fill, _order_apply(book, fill)))
    if invalid:
        if len(fills) == 1:
            raise ValidationError({"fill": next(iter(invalid.values()))})
        raise FillsInvalid({int(i): problem for i, problem in invalid.items()})
    if conflicts:
        single = len(fills) == 1
        raise FillRejected(
            next(iter(conflicts.values())) if single else "fills rejected",
            errors=conflicts,
            **({"status": order_books[fills[0].order_id].order.status} if single else {}),
        )
    return accepted


def _known_venue_trade_ids(owner: User, venue_trade_ids: list[str]) -> set[str]:
    """Those of these venue trade ids the owner's fills have already."""
    if connection.vendor != "postgresql":
        known = Fill.objects.filter(owner=owner, venue_trade_id__in=venue_trade_ids)
        return set(known.values_list("venue_trade_id", flat=True))
    # One JSON parameter instead of an IN list of thousands of placeholders, or an array
    # parameter, which the driver would quote element by element in Python.
    with connection.cursor() as cursor:
        # Each id is one probe of the (owner, venue id) index, whatever the table's size and
        # statistics. A plain join let the planner, with statistics older than a bulk
        # ingest, hash every fill of the owner to look up one id (48 ms at 100,000 fills);
        # LIMIT 1 keeps the lateral subquery from being flattened into such a join.
        cursor.execute(
            "SELECT f.venue_trade_id FROM jsonb_array_elements_text(%s::jsonb) AS v(id) "
            "CROSS JOIN LATERAL (SELECT venue_trade_id FROM trading_fill "
            "WHERE owner_id = %s AND venue_trade_id = v.id LIMIT 1) AS f",
            [orjson.dumps(venue_trade_ids).decode(), owner.pk],
        )
        return {row[0] for row in cursor.fetchall()}


def fill_validate(
    *, order: Order, quantity: Decimal, price: Decimal, ts: datetime, fee: Decimal = Decimal(0)
) -> None:
    """Raise what `fill_record` would for this fill (forms use it before saving)."""
    probe = FillInput(
        order_id=order.pk, venue_trade_id="", quantity=quantity, price=price, ts=ts, fee=fee
    )
    with localcontext(prec=PRECISION):  # as the batch path runs it
        conflict, problem = _fill_error(order, order.instrument, probe)
    if problem or conflict:
        raise ValidationError(problem or conflict)


def _fills_save(owner: User, fills: list[FillInput], *, audit: bool) -> list[int]:
    """Insert the fills as rows (audited one by one, or in bulk); return their ids in order."""
    rows = [
        Fill(
            order_id=f.order_id,
            owner=owner,
            venue_trade_id=f.venue_trade_id,
            quantity=f.quantity,
            price=f.price,
            fee=f.fee,
            ts=f.ts,
        )
        for f in fills
    ]
    try:
        # No savepoint: the error propagates, and the caller's transaction rolls back whole.
        if audit:
            for row in rows:
                row.save(force_insert=True)
        else:
            Fill.objects.bulk_create(rows, batch_size=2000)
    except IntegrityError as exc:
        # A concurrent request recorded one of these venue trade ids for another order.
        raise _DuplicateRace from exc
    return [row.pk for row in rows]


FILL_COLUMNS = [
    "id",
    "order",
    "owner",
    "venue_trade_id",
    "quantity",
    "price",
    "fee",
    "ts",
    "created_at",
]


@contextmanager
def _fills_copying(rows: str) -> Iterator[None]:
    """Send fill rows (COPY text lines of FILL_COLUMNS, with ids from `reserve_ids`) by COPY;
    the block runs while the server stores them, and leaving it waits until they are stored.
    An exception in the block abandons the COPY and propagates."""
    try:
        with copy_text_into(Fill, FILL_COLUMNS) as write:
            write(rows)
            yield
    except IntegrityError as exc:
        # A concurrent request recorded one of these venue trade ids for another order.
        raise _DuplicateRace from exc


def _fill_error(order: Order, instrument: Instrument, fill: FillInput) -> tuple[str, str]:
    """(conflict, invalid): what the order's state forbids, and what is malformed."""
    if fill.quantity <= 0:
        return "", "quantity must be positive"
    if not _on_grid(fill.quantity, instrument.quantity_step):
        return "", f"quantity must be a multiple of the quantity step {instrument.quantity_step}"
    if fill.price <= 0:
        return "", "price must be positive"
    if not _on_grid(fill.price, instrument.price_tick):
        return "", f"price must be a multiple of the price tick {instrument.price_tick}"
    if fill.fee < 0:
        return "", "fee must not be negative"
    if fill.ts.tzinfo is None:
        return "", "ts must carry a timezone"
    if order.status not in FILLABLE:
        return f"order {order.pk} is {order.status} and takes no more fills", ""
    if fill.quantity > order.remaining_quantity:
        return (
            f"quantity {fill.quantity} exceeds the remaining {order.remaining_quantity} "
            f"of order {order.pk}",
            "",
        )
    return "", ""


def _order_apply(book: _OrderBook, fill: FillInput) -> dict[str, str]:
    """Add the fill to its order; return the order's state after it, for the fill's event.

    The average fill price is worked out once per order, when the projection is written.
    """
    order = book.order
    order.filled_quantity += fill.quantity
    book.filled_notional += fill.quantity * fill.price
    order.status = (
        OrderStatus.FILLED
        if order.filled_quantity == order.quantity
        else OrderStatus.PARTIALLY_FILLED
    )
    book.changed = True
    return {
        "filled_quantity": str(order.filled_quantity),
        "filled_notional": str(book.filled_notional),
        "status": str(order.status),
    }


def _position_books(
    *, owner: User, orders: dict[int, Order], streams: dict[int, str]
) -> dict[str, _PositionBook]:
    versions = stream_versions(streams.values())
    heads = {head.stream: head for head in PositionHead.objects.filter(stream__in=list(versions))}
    books: dict[str, _PositionBook] = {}
    for pk, order in orders.items():
        stream = streams[pk]
        if stream in books:
            continue
        version, head = versions[stream], heads.get(stream)
        if version == 0:
            state = PositionState()
        elif head is not None and head.version == version:
            state = PositionState.from_json(head.state)
        else:
            replay = position_replay(stream=stream, instrument=order.instrument)
            if replay.version != version:  # the stream moved while it was read
                raise StreamVersionConflict(stream, replay.version, version)
            state = replay.state
        books[stream] = _PositionBook(
            stream=stream,
            version=version,
            state=state,
            owner_id=owner.pk,
            strategy_id=order.strategy_id,
            instrument=order.instrument,
            scales=instrument_scales(order.instrument),
        )
    open_rows = Position.objects.select_for_update(of=("self",)).filter(
        owner=owner,
        status=Position.Status.OPEN,
        instrument_id__in={b.instrument.pk for b in books.values()},
    )
    by_key = {(b.strategy_id, b.instrument.pk): b for b in books.values()}
    for row in open_rows:
        book = by_key.get((row.strategy_id, row.instrument_id))
        if book is None:
            continue
        if not book.state.is_open:
            raise LedgerConflict(
                f"position {row.pk} is open but its stream {book.stream} says otherwise; "
                "run rebuild_positions",
                position_id=row.pk,
            )
        book.rows[book.state.life] = row
    lives = {row.pk: (book, life) for book in books.values() for life, row in book.rows.items()}
    open_trades = Trade.objects.select_for_update(of=("self",)).filter(
        position_id__in=list(lives), status=Trade.Status.OPEN
    )
    for trade in open_trades:
        assert trade.position_id is not None
        book, life = lives[trade.position_id]
        book.trades[life] = trade
    for book in books.values():
        life = book.state.life
        if book.state.is_open and (life not in book.rows or life not in book.trades):
            raise LedgerConflict(
                f"stream {book.stream} has an open position with no row or trade; "
                "run rebuild_positions"
            )
    return books


def _exit_reason_hint(order: Order) -> str:
    if order.order_type == OrderType.STOP:
        return ExitReason.STOP
    if order.source == OrderSource.MANUAL:
        return ExitReason.MANUAL
    return ExitReason.SIGNAL


def _position_apply(
    book: _PositionBook,
    *,
    order: _OrderBook,
    order_after: dict[str, str],
    fill: FillInput,
    fill_id: int,
    text: _FillText,
    metadata: dict[str, Any],
) -> NewEvent:
    """Apply one fill to its position; return its `FillRecorded` event, JSON-safe already.

    The one event of a fill lives in the position's stream and records the fill itself,
    the PnL it realized and its order's state after it. The position's state after it is
    not repeated in every event: any replay recomputes it from the fills, and the stream's
    head and snapshots keep it.
    """
    exit_hint, side = order.exit_hint, order.side
    applied = apply_fill(
        book.state,
        side=side,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        ts=fill.ts,
        scales=book.scales,
        exit_reason=exit_hint,
    )
    closed, current = applied.closed, applied.current
    if closed is not None:
        book.touched[closed.life] = closed
    book.touched[current.life] = current
    book.state = current
    expected = book.version
    book.version += 1
    data = {
        "fill_id": fill_id,
        "order_id": fill.order_id,
        "venue_trade_id": fill.venue_trade_id,
        "owner_id": book.owner_id,
        "strategy_id": book.strategy_id,
        "instrument_id": book.instrument.id,
        "side": side,
        "quantity": text.quantity,
        "price": text.price,
        "fee": text.fee,
        "ts": text.ts,
        "exit_reason": exit_hint,
        "realized_pnl": str(applied.realized_pnl),
        "order": order_after,
    }
    return NewEvent(
        book.stream,
        FILL_RECORDED,
        data,
        expected_version=expected,
        metadata=metadata,
        json_ready=True,
    )


def _project(row: Position, trade: Trade, state: PositionState, scales: Scales) -> None:
    row.quantity = state.quantity
    row.avg_entry_price = state.avg_entry_price
    row.realized_pnl = state.realized_pnl
    row.fees_paid = state.fees_paid
    row.closed_at = state.closed_at
    row.status = state.status
    trade.direction = state.direction
    trade.quantity = abs(state.entry_quantity)
    trade.entry_price = state.entry_price(scales)
    trade.exit_price = state.exit_price(scales)
    trade.exit_time = state.closed_at
    trade.pnl = state.realized_pnl
    trade.pnl_pct = state.pnl_pct()
    trade.fees = state.fees_paid
    trade.exit_reason = state.exit_reason if not state.is_open else ""
    trade.status = state.status


POSITION_FIELDS = ["quantity", "avg_entry_price", "realized_pnl", "fees_paid", "closed_at"]
TRADE_FIELDS = [
    "direction",
    "quantity",
    "entry_price",
    "exit_price",
    "exit_time",
    "pnl",
    "pnl_pct",
    "fees",
    "exit_reason",
    "status",
]
ORDER_FIELDS = ["filled_quantity", "filled_notional", "avg_fill_price", "status"]


@dataclass
class _Projections:
    """The rows a batch changes, worked out in memory before any is written."""

    orders: list[Order]
    updated: list[tuple[Position, Trade]]
    # New lives, closed ones first: the row left open goes in after any row it replaces.
    created: list[tuple[Position, Trade]]


def _projections(
    order_books: dict[int, _OrderBook], positions: dict[str, _PositionBook]
) -> _Projections:
    """Project the batch onto the orders, positions and trades it changed, each row once.

    Pure Python, apart from the writing, which `_write_projections` does.
    """
    orders = []
    for book in order_books.values():
        if book.changed:
            order = book.order
            order.filled_notional = book.filled_notional
            order.avg_fill_price = average_price(
                notional=book.filled_notional,
                quantity=order.filled_quantity,
                scales=instrument_scales(order.instrument),
            )
            orders.append(order)
    updated: list[tuple[Position, Trade]] = []
    created: list[tuple[Position, Trade]] = []
    for pbook in positions.values():
        for life, state in sorted(pbook.touched.items()):
            if life in pbook.rows:
                row, trade = pbook.rows[life], pbook.trades[life]
                updated.append((row, trade))
            else:
                assert state.opened_at is not None
                row = Position(
                    owner_id=pbook.owner_id,
                    strategy_id=pbook.strategy_id,
                    instrument=pbook.instrument,
                    opened_at=state.opened_at,
                )
                trade = Trade(
                    owner_id=pbook.owner_id,
                    strategy_id=pbook.strategy_id,
                    instrument=pbook.instrument,
                    entry_time=state.opened_at,
                )
                pbook.rows[life], pbook.trades[life] = row, trade
                created.append((row, trade))
            _project(row, trade, state, pbook.scales)
    created.sort(key=lambda pair: pair[0].status != Position.Status.CLOSED)
    return _Projections(orders=orders, updated=updated, created=created)


def _locked_rows(orders: dict[int, Order], positions: dict[str, _PositionBook]) -> dict[int, Model]:
    """Copies of the rows a batch may update, as locked and read, by the id() of each row."""
    rows: list[Model] = [*orders.values()]
    for book in positions.values():
        rows += [*book.rows.values(), *book.trades.values()]
    return {id(row): copy.copy(row) for row in rows}


def _write_projections(projections: _Projections, *, audit: bool, locked: dict[int, Model]) -> None:
    """Write the rows `_projections` worked out: audited one by one, or in bulk.

    Lives are written in order, so the life a fill closed is closed before the next one
    opens: one open row per position at a time. An audited update diffs with the row in
    `locked` (from `_locked_rows`), not with a fresh read of it.
    """
    orders, updated, created = projections.orders, projections.updated, projections.created
    if audit:
        for order in orders:
            audited_update(order, old=locked[id(order)], fields=[*ORDER_FIELDS, "updated_at"])
        for row, trade in updated:
            audited_update(
                row, old=locked[id(row)], fields=[*POSITION_FIELDS, "status", "updated_at"]
            )
            audited_update(trade, old=locked[id(trade)], fields=[*TRADE_FIELDS, "updated_at"])
        for row, trade in created:
            row.save(force_insert=True)
            trade.position = row
            trade.save(force_insert=True)
        return
    now = timezone.now()
    for obj in (*orders, *(part for pair in updated for part in pair)):
        obj.updated_at = now  # what save() would do for auto_now
    bulk_update_rows(orders, [*ORDER_FIELDS, "updated_at"])
    bulk_update_rows([row for row, _ in updated], [*POSITION_FIELDS, "status", "updated_at"])
    bulk_update_rows([trade for _, trade in updated], [*TRADE_FIELDS, "updated_at"])
    if created:
        insert_models([row for row, _ in created])
        for row, trade in created:
            trade.position = row
        insert_models([trade for _, trade in created])


def _heads_write(books: Iterable[_PositionBook], now: datetime) -> None:
    """Store each stream's state after the batch: where its next fill starts from."""
    _heads_store(
        PositionHead(stream=b.stream, version=b.version, state=b.state.to_json(), updated_at=now)
        for b in books
        if b.touched
    )


def _heads_store(heads: Iterable[PositionHead]) -> None:
    PositionHead.objects.bulk_create(
        list(heads),
        update_conflicts=True,
        unique_fields=["stream"],
        update_fields=["version", "state", "updated_at"],
    )


def _snapshot_due(books: Iterable[_PositionBook], hashes: Sequence[str], now: datetime) -> None:
    snapshots_store(
        [
            Snapshot(
                stream=book.stream,
                version=version,
                state={
                    "position": state,
                    "event_hash": hashes[index],
                    "owner_id": book.owner_id,
                    "strategy_id": book.strategy_id,
                    "instrument_id": book.instrument.pk,
                },
                created_at=now,
            )
            for book in books
            for index, version, state in book.due
        ]
    )


# --- Replays ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    stream: str
    state: PositionState
    version: int
    from_snapshot: int  # the snapshot's version, 0 for a replay from the first event
    events_applied: int


def position_replay(
    *,
    stream: str,
    instrument: Instrument,
    as_of: datetime | None = None,
    use_snapshot: bool = True,
) -> Replay:
    """A position stream's current life, recomputed from its fills.

    From the newest snapshot taken at or before `as_of` plus the events after it, or from
    the first event when `use_snapshot` is off. The recorded states inside the events are
    not read: the replay recomputes every fill.
    """
    tail = stream_tail(stream, as_of=as_of, use_snapshot=use_snapshot)
    snapshot = tail.snapshot_state
    state = PositionState.from_json(snapshot["position"]) if snapshot else PositionState()
    start = tail.snapshot_version
    scales = instrument_scales(instrument)
    version, applied = start, 0
    with localcontext(prec=PRECISION):  # once, rather than once per fill in apply_fill
        for version, data in tail.events:  # noqa: B007 - the last version is the replay's
            state = apply_fill(
                state,
                side=data["side"],
                quantity=Decimal(data["quantity"]),
                price=Decimal(data["price"]),
                fee=Decimal(data["fee"]),
                ts=_parse_ts(data["ts"]),
                scales=scales,
                exit_reason=data["exit_reason"],
            ).current
            applied += 1
    return Replay(
        stream=stream,
        state=state,
        version=version,
        from_snapshot=start,
        events_applied=applied,
    )


def _parse_ts(raw: str) -> datetime:
    return datetime.fromisoformat(raw)


def position_as_of(
    *, owner: User, strategy: Strategy | None, instrument: Instrument, ts: datetime
) -> PositionState:
    """Time travel: the position as the ledger knew it at `ts` (by when events were recorded)."""
    stream = position_stream(
        owner_id=owner.pk,
        strategy_id=strategy.pk if strategy else None,
        symbol=instrument.symbol,
    )
    return position_replay(stream=stream, instrument=instrument, as_of=ts).state


@dataclass(frozen=True)
class PositionDrift:
    stream: str
    position_id: int | None
    fields: dict[str, tuple[Any, Any]]  # name -> (row value, replayed value)


def position_row_for(
    *, owner_id: int, strategy_id: int | None, instrument_id: int
) -> Position | None:
    """The row of a stream's newest life: the open one, else the last one closed."""
    rows = Position.objects.filter(owner_id=owner_id, instrument_id=instrument_id)
    rows = (
        rows.filter(strategy__isnull=True)
        if strategy_id is None
        else rows.filter(strategy_id=strategy_id)
    )
    return rows.order_by("-id").first()


def position_drift(row: Position | None, state: PositionState) -> dict[str, tuple[Any, Any]]:
    expected: dict[str, Any] = {
        "quantity": state.quantity,
        "avg_entry_price": state.avg_entry_price,
        "realized_pnl": state.realized_pnl,
        "fees_paid": state.fees_paid,
        "opened_at": state.opened_at,
        "closed_at": state.closed_at,
        "status": state.status,
    }
    if row is None:
        return {name: (None, value) for name, value in expected.items()}
    return {
        name: (getattr(row, name), value)
        for name, value in expected.items()
        if getattr(row, name) != value
    }


@transaction.atomic
def position_rebuild(
    *, stream: str, as_of: datetime | None = None, apply: bool = False
) -> tuple[Replay, PositionDrift | None]:
    """Replay one position stream; report drift of its row and head and, with `apply`,
    repair them.

    A head is drift only when it is at the stream's version with another state: one that
    is missing or behind is ignored by the next fill anyway, and `apply` rewrites it.
    """
    newest = latest_events([stream]).get(stream)
    if newest is None:
        raise ValidationError({"stream": f"no events in {stream}"})
    instrument = Instrument.objects.get(pk=newest.data["instrument_id"])
    replay = position_replay(stream=stream, instrument=instrument, as_of=as_of)
    if as_of is not None:
        return replay, None
    replayed = replay.state.to_json()
    head = PositionHead.objects.filter(stream=stream, version=replay.version).first()
    head_fields = (
        {
            f"head.{name}": (head.state.get(name), value)
            for name, value in replayed.items()
            if head.state.get(name) != value
        }
        if head is not None
        else {}
    )
    if apply:
        _heads_store(
            [
                PositionHead(
                    stream=stream,
                    version=replay.version,
                    state=replayed,
                    updated_at=timezone.now(),
                )
            ]
        )
    row = position_row_for(
        owner_id=newest.data["owner_id"],
        strategy_id=newest.data["strategy_id"],
        instrument_id=instrument.pk,
    )
    fields = position_drift(row, replay.state)
    if not fields and not head_fields:
        return replay, None
    drift = PositionDrift(
        stream=stream, position_id=row.pk if row else None, fields={**fields, **head_fields}
    )
    if apply and row is not None and fields:
        locked = Position.objects.select_for_update().get(pk=row.pk)
        for name, (_, value) in fields.items():
            setattr(locked, name, value)
        locked.save(update_fields=[*fields, "updated_at"])
    return replay, drift


def position_streams() -> list[str]:
    return list(
        Event.objects.filter(stream__startswith="position-", version=1)
        .order_by("stream")
        .values_list("stream", flat=True)
    )


__all__ = [
    "FillInput",
    "FillRejected",
    "FillsInvalid",
    "FillsResult",
    "LedgerConflict",
    "OrderSubmitResult",
    "fill_record",
    "fills_record",
    "order_cancel",
    "order_reject",
    "order_submit",
    "position_as_of",
    "position_rebuild",
    "position_replay",
]
