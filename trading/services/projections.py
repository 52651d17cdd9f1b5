"""The projections of a batch of fills: the order, position and trade rows its fills change,
worked out in memory once the fills are applied, then written, each row once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from django.db.models import Model
from django.utils import timezone

from persistence.audit import audited_update
from persistence.bulk import bulk_update_rows, insert_models
from trading.accounting import PositionState, Scales, average_price, instrument_scales
from trading.models import Order, Position, Trade
from trading.services.fills import OrderBook
from trading.services.positions import PositionBook

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
class Projections:
    """The rows a batch changes, worked out in memory before any is written."""

    orders: list[Order]
    updated: list[tuple[Position, Trade]]
    # New lives, closed ones first: the row left open goes in after any row it replaces.
    created: list[tuple[Position, Trade]]


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


def batch_projections(
    order_books: dict[int, OrderBook], positions: dict[str, PositionBook]
) -> Projections:
    """Project the batch onto the orders, positions and trades it changed, each row once.

    Pure Python, apart from the writing, which `projections_write` does.
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
    return Projections(orders=orders, updated=updated, created=created)


def locked_rows(orders: dict[int, Order], positions: dict[str, PositionBook]) -> dict[int, Model]:
    """Copies of the rows a batch may update, as locked and read, by the id() of each row."""
    rows: list[Model] = [*orders.values()]
    for book in positions.values():
        rows += [*book.rows.values(), *book.trades.values()]
    return {id(row): copy.copy(row) for row in rows}


def projections_write(projections: Projections, *, audit: bool, locked: dict[int, Model]) -> None:
    """Write the rows `batch_projections` worked out: audited one by one, or in bulk.

    Lives are written in order, so the life a fill closed is closed before the next one
    opens: one open row per position at a time. An audited update diffs with the row in
    `locked` (from `locked_rows`), not with a fresh read of it.
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
