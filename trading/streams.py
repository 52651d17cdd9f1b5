"""The ledger's event streams: how they are named, the types of event appended to them, and
the metadata every event carries. The services append to them; the selectors replay them.
"""

from __future__ import annotations

from typing import Any

from accounts.models import User

# An order's stream holds its lifecycle; a fill is one event in its position's stream.
ORDER_SUBMITTED = "OrderSubmitted"
ORDER_ACCEPTED = "OrderAccepted"
ORDER_REJECTED = "OrderRejected"
ORDER_CANCELLED = "OrderCancelled"
FILL_RECORDED = "FillRecorded"

POSITION_STREAM_PREFIX = "position-"


def order_stream(order_id: int) -> str:
    return f"order-{order_id}"


def position_stream(*, owner_id: int, strategy_id: int | None, symbol: str) -> str:
    return f"{POSITION_STREAM_PREFIX}{owner_id}-{strategy_id or 'manual'}-{symbol}"


def event_metadata(actor: User | None, source: str) -> dict[str, Any]:
    return {"actor_id": actor.pk if actor is not None else None, "source": source}
