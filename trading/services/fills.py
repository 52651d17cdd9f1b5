"""Fill services: record one fill or a batch, and the rules each fill must pass.

`fill_record` and `fills_record` are the entry points; both run `trading.ingest.fills_ingest`,
the one transaction every fill goes through, and retry it when a concurrent writer got there
first. What one fill does, whichever path carries it, is written here as plain domain logic:
the checks against its order (`fill_error`), and how it changes its order (`order_apply`).
What it does to its position is `trading.services.positions.position_apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import NamedTuple

from django.core.exceptions import ValidationError

from accounts.models import User
from marketdata.models import Instrument
from persistence.events import StreamVersionConflict
from trading.accounting import PRECISION
from trading.models import ExitReason, Fill, Order, OrderSource, OrderStatus, OrderType
from trading.services.ledger import RETRIES, LedgerConflict, on_grid
from trading.services.orders import FILLABLE


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


class VenueTradeIdRace(Exception):
    """A concurrent request recorded one of the batch's venue trade ids first: retry."""


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
    # Imported here: trading.ingest builds on this module's types and rules.
    from trading.ingest import fills_ingest

    for _ in range(RETRIES):
        try:
            return fills_ingest(owner=owner, fills=fills, actor=actor, source=source, audit=audit)
        except (StreamVersionConflict, VenueTradeIdRace):
            # Someone else wrote first: everything was rolled back; read afresh and redo.
            continue
    raise LedgerConflict("the ledger changed while the fills were being recorded; retry")


def fill_validate(
    *, order: Order, quantity: Decimal, price: Decimal, ts: datetime, fee: Decimal = Decimal(0)
) -> None:
    """Raise what `fill_record` would for this fill (forms use it before saving)."""
    probe = FillInput(
        order_id=order.pk, venue_trade_id="", quantity=quantity, price=price, ts=ts, fee=fee
    )
    with localcontext(prec=PRECISION):  # as the batch path runs it
        conflict, problem = fill_error(order, order.instrument, probe)
    if problem or conflict:
        raise ValidationError(problem or conflict)


NOTIONAL_LIMIT = 10**20


def fill_error(order: Order, instrument: Instrument, fill: FillInput) -> tuple[str, str]:
    """(conflict, invalid): what the order's state forbids, and what is malformed."""
    if fill.quantity <= 0:
        return "", "quantity must be positive"
    if not on_grid(fill.quantity, instrument.quantity_step):
        return "", f"quantity must be a multiple of the quantity step {instrument.quantity_step}"
    if fill.price <= 0:
        return "", "price must be positive"
    if not on_grid(fill.price, instrument.price_tick):
        return "", f"price must be a multiple of the price tick {instrument.price_tick}"
    if fill.fee < 0:
        return "", "fee must not be negative"
    if fill.price * order.quantity >= NOTIONAL_LIMIT:
        # Bounds every sum of quantity x price the order, its position and trades keep in
        # NUMERIC(38, 18) columns, which hold 20 digits before the point.
        return "", f"price x the order's quantity must stay below {NOTIONAL_LIMIT:,}"
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


@dataclass
class OrderBook:
    """An order as a batch fills it: the locked row and what its fills add up to."""

    order: Order
    instrument: Instrument
    filled_notional: Decimal
    # Plain strings, not the choices enums: each goes into the event of every fill.
    side: str
    exit_hint: str
    changed: bool = False

    @classmethod
    def of(cls, order: Order) -> OrderBook:
        return cls(
            order=order,
            instrument=order.instrument,
            filled_notional=order.filled_notional,
            side=str(order.side),
            exit_hint=str(exit_reason_hint(order)),
        )


def exit_reason_hint(order: Order) -> str:
    """Why a fill of this order would close a position."""
    if order.order_type == OrderType.STOP:
        return ExitReason.STOP
    if order.source == OrderSource.MANUAL:
        return ExitReason.MANUAL
    return ExitReason.SIGNAL


def fills_checked(
    fills: Sequence[FillInput],
    fresh: list[tuple[int, FillInput]],
    order_books: dict[int, OrderBook],
) -> list[tuple[FillInput, dict[str, str]]]:
    """Check each fresh fill (with its index in `fills`) against its order and add it to the
    order; return each with its order's state after it. Raises, naming every fill's index,
    if any is refused."""
    conflicts: dict[str, str] = {}
    invalid: dict[str, str] = {}
    accepted: list[tuple[FillInput, dict[str, str]]] = []
    with localcontext(prec=PRECISION):
        for index, fill in fresh:
            book = order_books[fill.order_id]
            conflict, problem = fill_error(book.order, book.instrument, fill)
            if conflict or problem:
                (conflicts if conflict else invalid)[str(index)] = conflict or problem
                continue
            accepted.append((fill, order_apply(book, fill)))
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


def order_apply(book: OrderBook, fill: FillInput) -> dict[str, str]:
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
