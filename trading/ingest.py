"""The ledger's bulk-ingest room: `fills_ingest`, the one transaction every fill goes through
(a single audited fill from the API, a 5,000-fill batch from POST /fills/bulk/ or
import_fills), and every speed trick it plays. The ledger's lock order is written down here,
once, in `_ingest`.

The rules a fill follows live elsewhere, as plain domain logic: its checks and its order in
`trading.services.fills`, its position in `trading.services.positions`, the rows it changes
in `trading.services.projections`. This module decides only how a batch of them is stored
fast. Each trick earned its place by a measurement (bench/ledger.py, PostgreSQL, batches of
5,000 unless said otherwise; the commits named carry the details):

- COPY instead of INSERT for fills, events, new lives and snapshots. Django's bulk_create
  has psycopg quote every value in Python: 5,000 fills took 13.2 s with it and 4.5 s with
  COPY (f7507b4). With one event per fill and COPY streamed as rows are made, the bench's
  20,000 fills went from 2,000-2,900 to 7,000-8,300 fills/s (bde2d2a).
- COPY text built inline (`FillText`, `_fill_lines`): each fill's strings are made once,
  for its COPY row and its event, with no per-value call into the driver (55c3fac).
- The fills go first (`_fills_copying`): their ids are taken from the sequence, the rows
  sent, and the batch is checked and applied to its positions while the server stores
  them, about 40 ms of a batch that used to run with the connection idle; a refused fill
  abandons the COPY and the transaction with it. 12,300 against 11,500 fills/s over 8 A/B
  pairs (9e17597; the overlap of Python work with a COPY in flight began in 81573a6,
  10,100-11,900 against 9,200-10,600 fills/s).
- The cyclic garbage collector is paused per attempt (`gc_paused`): a batch allocates
  enough short-lived objects to trigger collections, now and then a full one over every
  object of the process, measured at 143 ms in one batch of four (55c3fac).
- Known venue trade ids are looked up as one JSON parameter, one index probe per id
  (`known_venue_trade_ids`): a plain join, planned on statistics older than the ingest,
  hashed every fill of the owner, 48 ms per lookup against 0.23 ms (b3be7d8).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import NamedTuple

import orjson
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from persistence.bulk import COPY_THRESHOLD, copy_text, copy_text_into, reserve_ids
from persistence.events import events_ingest, lock_streams
from trading.accounting import utc_isoformat
from trading.models import Fill, Order, Trade
from trading.rollups import trades_closed_record
from trading.services.fills import (
    FillInput,
    FillsInvalid,
    FillsResult,
    OrderBook,
    RecordedFill,
    VenueTradeIdRace,
    fills_checked,
)
from trading.services.positions import (
    heads_write,
    position_books,
    position_events,
    snapshots_due_store,
)
from trading.services.projections import batch_projections, locked_rows, projections_write
from trading.streams import event_metadata, position_stream


def fills_ingest(
    *, owner: User, fills: Sequence[FillInput], actor: User | None, source: str, audit: bool
) -> FillsResult:
    """One attempt at recording `fills` (see `trading.services.fills.fills_record`).

    Raises StreamVersionConflict or VenueTradeIdRace, with everything rolled back, when a
    concurrent writer got there first; the caller retries.
    """
    with gc_paused():
        return _ingest(owner=owner, fills=fills, actor=actor, source=source, audit=audit)


# The ledger's lock order, the one place it is written down. Every ledger write takes its
# locks in this order, and within a step in a fixed order, so writers queue, never deadlock:
#
#   1. order rows, by id (`_orders_locked`);
#   2. the batch's position streams, by name (`lock_streams`, advisory locks). They stand
#      for what has no row to lock yet (a position's first fill) and for each stream's
#      head and its series' rollup rows;
#   3. the streams' open position rows, then their open trades' rows, by id
#      (`position_books`);
#   4. the fills' (owner, venue trade id) index entries, as the fills go in: a concurrent
#      writer of the same venue id waits for this transaction to end, then fails and retries;
#   5. the projections: the rows of 1 and 3, held already, and new lives' rows;
#   6. the owner's rollup lock, then the owner's rollup rows by key (`trades_closed_record`);
#   7. the streams' head rows, covered by 2;
#   8. last, the chain lock (`events_ingest`: one advisory lock for the whole ledger), held
#      to commit: the events, the snapshots anchored to their hashes, and the commit.
#
# Order services take a subset: the order row, then the chain lock. `position_rebuild` takes
# its stream's lock, then the stream's head and row, and never the chain lock.
#
# The chain lock covers only step 8: other writers wait on it for the events' COPY and the
# commit, not for the projections. That is correct because:
# - it is one transaction: if the append fails (a stream moved), the projections roll back
#   with it and the attempt is retried, so no projection commits without its events;
# - nothing before step 8 depends on the chain: projections come from the positions' states
#   at their streams' versions, which the stream locks hold still, and the append checks
#   those versions again under the chain lock;
# - commit order is chain order: the chain lock is held to commit, and the projections
#   commit with their events, so a reader never sees one without the other;
# - the chain lock's holder waits on no other writer: its snapshots are of its own streams,
#   and the deferred foreign keys are checked before it is taken (`_keys_checked`).
# Step 6 has its own lock per owner because of that: an owner's daily streak rows are shared
# by all the owner's streams, so no stream lock orders them. Writers of one owner that
# inserted and locked the same new days in turn could otherwise deadlock.
@transaction.atomic
def _ingest(
    *, owner: User, fills: Sequence[FillInput], actor: User | None, source: str, audit: bool
) -> FillsResult:
    result = FillsResult()
    orders = _orders_locked(owner, fills)
    fresh = _fresh(owner, fills, duplicates=result.duplicates)
    if not fresh:
        return result
    streams = {
        o.pk: position_stream(
            owner_id=owner.pk, strategy_id=o.strategy_id, symbol=o.instrument.symbol
        )
        for o in orders.values()
    }
    lock_streams(streams.values())
    order_books = {pk: OrderBook.of(o) for pk, o in orders.items()}
    positions = position_books(owner=owner, orders=orders, streams=streams)
    # The rows as locked, before this batch changes them: what their audit entries diff with.
    locked = locked_rows(orders, positions) if audit else {}

    now = timezone.now()
    texts = [FillText.of(fill) for _, fill in fresh]
    applied = partial(
        position_events,
        texts=texts,
        order_books=order_books,
        books=positions,
        streams=streams,
        metadata=event_metadata(actor, source),
    )
    if not audit and len(fresh) >= COPY_THRESHOLD and connection.vendor == "postgresql":
        # The fills go first, ids taken from the sequence: the server stores them while the
        # batch is checked and applied. A refused fill raises, abandoning the COPY and the
        # transaction with it.
        fill_ids = reserve_ids(Fill, len(fresh))
        with _fills_copying(_fill_lines(owner, fresh, fill_ids, texts, now)):
            accepted = fills_checked(fills, fresh, order_books)
            events = applied(accepted, fill_ids=fill_ids)
    else:
        accepted = fills_checked(fills, fresh, order_books)
        fill_ids = _fills_save(owner, [fill for fill, _ in accepted], audit=audit)
        events = applied(accepted, fill_ids=fill_ids)

    projections_write(batch_projections(order_books, positions), audit=audit, locked=locked)
    trades_closed_record(
        trade
        for book in positions.values()
        for trade in book.trades.values()
        if trade.status == Trade.Status.CLOSED
    )
    heads_write(positions.values(), now)
    _keys_checked()
    hashes = events_ingest(events, streams=positions.keys(), created_at=now)
    snapshots_due_store(positions.values(), hashes, now)
    result.recorded = [
        RecordedFill(pk=pk, order_id=fill.order_id, venue_trade_id=fill.venue_trade_id)
        for pk, (fill, _) in zip(fill_ids, accepted, strict=True)
    ]
    return result


def _orders_locked(owner: User, fills: Sequence[FillInput]) -> dict[int, Order]:
    """The fills' orders, locked by id; raises if any is not one of the owner's."""
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
    return orders


def _fresh(
    owner: User, fills: Sequence[FillInput], *, duplicates: list[str]
) -> list[tuple[int, FillInput]]:
    """The fills whose venue trade ids are new (each with its index in `fills`); the others'
    ids, already in the ledger or earlier in the batch, are added to `duplicates`."""
    known = known_venue_trade_ids(owner, [f.venue_trade_id for f in fills])
    fresh: list[tuple[int, FillInput]] = []
    for index, fill in enumerate(fills):
        if fill.venue_trade_id in known:
            duplicates.append(fill.venue_trade_id)
            continue
        known.add(fill.venue_trade_id)
        fresh.append((index, fill))
    return fresh


def known_venue_trade_ids(owner: User, venue_trade_ids: list[str]) -> set[str]:
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


class FillText(NamedTuple):
    """A fill's values as its event and its COPY row write them: made once per fill."""

    quantity: str
    price: str
    fee: str
    ts: str  # UTC

    @classmethod
    def of(cls, fill: FillInput) -> FillText:
        return cls(str(fill.quantity), str(fill.price), str(fill.fee), utc_isoformat(fill.ts))


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


def _fill_lines(
    owner: User,
    fresh: list[tuple[int, FillInput]],
    fill_ids: list[int],
    texts: list[FillText],
    now: datetime,
) -> str:
    """The fills' rows as COPY text lines of FILL_COLUMNS."""
    owner_id, stamp = owner.pk, now.isoformat()
    return "".join(
        f"{fill_id}\t{f.order_id}\t{owner_id}\t{copy_text(f.venue_trade_id)}\t"
        f"{t.quantity}\t{t.price}\t{t.fee}\t{t.ts}\t{stamp}\n"
        for fill_id, (_, f), t in zip(fill_ids, fresh, texts, strict=True)
    )


@contextmanager
def _fills_copying(lines: str) -> Iterator[None]:
    """Send fill rows (COPY text lines of FILL_COLUMNS, with ids from `reserve_ids`) by COPY;
    the block runs while the server stores them, and leaving it waits until they are stored.
    An exception in the block abandons the COPY and propagates."""
    try:
        with copy_text_into(Fill, FILL_COLUMNS) as write:
            write(lines)
            yield
    except IntegrityError as exc:
        # A concurrent request recorded one of these venue trade ids for another order.
        raise VenueTradeIdRace from exc


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
        raise VenueTradeIdRace from exc
    return [row.pk for row in rows]


def _keys_checked() -> None:
    """Check the foreign keys PostgreSQL defers to commit now, before the chain lock.

    A batch's fills defer one key check each (their order and owner); at commit they would
    run under the chain lock, and every other writer would wait for them.
    """
    if connection.vendor == "postgresql":
        connection.check_constraints()  # SET CONSTRAINTS ALL IMMEDIATE, then DEFERRED again


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for one bulk write.

    A batch of thousands of rows allocates hundreds of thousands of short-lived objects,
    which reference counting frees on its own; but each allocation counts towards the
    collector's thresholds, so a batch triggers many collections, and now and then a full
    one that walks every object of the process (over 100 ms in a Django process holding a
    batch of fills). Collection resumes, with the same thresholds, as soon as the batch
    is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
