"""Position services: each fill applied to its position stream, the stream heads and
snapshots a batch leaves, and the rebuild that finds and repairs drift.

The event log is the truth. A position's next state is computed from its stream's head
(`PositionHead`, written with the events and checked against the stream's version) or,
when the head is not at that version, from a replay of the stream; never from the position
row. A projection that drifted is corrected by the next fill, and `position_rebuild` shows
and repairs drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import localcontext
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from marketdata.models import Instrument
from persistence.events import (
    NewEvent,
    StreamVersionConflict,
    latest_events,
    lock_streams,
    snapshots_store,
    stream_versions,
)
from persistence.models import Snapshot
from trading.accounting import PRECISION, PositionState, Scales, apply_fill, instrument_scales
from trading.models import Order, Position, PositionHead, Trade
from trading.selectors import Replay, position_replay, position_row_for
from trading.services.fills import FillInput, OrderBook
from trading.services.ledger import LedgerConflict
from trading.streams import FILL_RECORDED

if TYPE_CHECKING:
    from trading.ingest import FillText


@dataclass
class PositionBook:
    """A position stream as a batch writes it: its state, version, rows and touched lives."""

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


def position_books(
    *, owner: User, orders: dict[int, Order], streams: dict[int, str]
) -> dict[str, PositionBook]:
    """The books of the orders' position streams, by stream; locks their open rows and trades.

    Call it holding the streams' locks (`lock_streams`): each state is read at its stream's
    version, from the head when the head is at that version, else from a replay.
    """
    versions = stream_versions(streams.values())
    heads = {head.stream: head for head in PositionHead.objects.filter(stream__in=list(versions))}
    books: dict[str, PositionBook] = {}
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
        books[stream] = PositionBook(
            stream=stream,
            version=version,
            state=state,
            owner_id=owner.pk,
            strategy_id=order.strategy_id,
            instrument=order.instrument,
            scales=instrument_scales(order.instrument),
        )
    _open_rows_locked(owner, books)
    return books


def _open_rows_locked(owner: User, books: dict[str, PositionBook]) -> None:
    """Lock the books' open position rows, then their open trades (each by id), into the books."""
    streams = Q(pk__in=[])
    for b in books.values():
        strategy = (
            Q(strategy__isnull=True) if b.strategy_id is None else Q(strategy_id=b.strategy_id)
        )
        streams |= Q(instrument_id=b.instrument.pk) & strategy
    open_rows = (
        Position.objects.select_for_update(of=("self",))
        .filter(streams, owner=owner, status=Position.Status.OPEN)
        .order_by("pk")
    )
    by_key = {(b.strategy_id, b.instrument.pk): b for b in books.values()}
    for row in open_rows:
        book = by_key[(row.strategy_id, row.instrument_id)]
        if not book.state.is_open:
            raise LedgerConflict(
                f"position {row.pk} is open but its stream {book.stream} says otherwise; "
                "run rebuild_positions",
                position_id=row.pk,
            )
        book.rows[book.state.life] = row
    lives = {row.pk: (book, life) for book in books.values() for life, row in book.rows.items()}
    open_trades = (
        Trade.objects.select_for_update(of=("self",))
        .filter(position_id__in=list(lives), status=Trade.Status.OPEN)
        .order_by("pk")
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


def position_apply(
    book: PositionBook,
    *,
    order: OrderBook,
    order_after: dict[str, str],
    fill: FillInput,
    fill_id: int,
    text: FillText,
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


def position_events(
    accepted: Sequence[tuple[FillInput, dict[str, str]]],
    *,
    fill_ids: Sequence[int],
    texts: Sequence[FillText],
    order_books: dict[int, OrderBook],
    books: dict[str, PositionBook],
    streams: dict[int, str],
    metadata: dict[str, Any],
) -> list[NewEvent]:
    """Apply the accepted fills to their positions in order; return their events, in order.

    A snapshot falls due on every LEDGER_SNAPSHOT_EVERY'th version of a stream; it is
    stored once the events are, anchored to its event's hash (`snapshots_due_store`).
    """
    every = settings.LEDGER_SNAPSHOT_EVERY
    events: list[NewEvent] = []
    with localcontext(prec=PRECISION):  # once per batch, rather than once per fill
        for index, (fill_id, (fill, order_after), text) in enumerate(
            zip(fill_ids, accepted, texts, strict=True)
        ):
            book = books[streams[fill.order_id]]
            events.append(
                position_apply(
                    book,
                    order=order_books[fill.order_id],
                    order_after=order_after,
                    fill=fill,
                    fill_id=fill_id,
                    text=text,
                    metadata=metadata,
                )
            )
            if every > 0 and book.version % every == 0:
                book.due.append((index, book.version, book.state.to_json()))
    return events


def heads_write(books: Iterable[PositionBook], now: datetime) -> None:
    """Store each stream's state after the batch: where its next fill starts from."""
    heads_store(
        PositionHead(stream=b.stream, version=b.version, state=b.state.to_json(), updated_at=now)
        for b in books
        if b.touched
    )


def heads_store(heads: Iterable[PositionHead]) -> None:
    PositionHead.objects.bulk_create(
        list(heads),
        update_conflicts=True,
        unique_fields=["stream"],
        update_fields=["version", "state", "updated_at"],
    )


def snapshots_due_store(
    books: Iterable[PositionBook], hashes: Sequence[str], now: datetime
) -> None:
    """Store the snapshots due in a batch, each anchored to the hash of its event."""
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


# --- Drift and rebuild --------------------------------------------------------------------


@dataclass(frozen=True)
class PositionDrift:
    stream: str
    position_id: int | None
    fields: dict[str, tuple[Any, Any]]  # name -> (row value, replayed value)


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
    if as_of is None:
        # As a fill does: the stream stands still while its replay, head and row are read
        # (and repaired), so a fill committed in between is neither reported nor undone.
        lock_streams([stream])
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
        heads_store(
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
