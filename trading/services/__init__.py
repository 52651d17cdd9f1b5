"""Writes to the trading ledger: orders and fills, and the positions and trades they project.

Every service is one transaction that appends to the event log and updates the projections
(order, position, trade rows) together. The event log is the truth; the projections always
equal a replay of it.

- `orders`: validate, submit (idempotent on the client order id), cancel, reject.
- `fills`: the entry points `fill_record` and `fills_record`, and the rules one fill follows.
- `positions`: a fill applied to its position stream, stream heads and snapshots, and the
  rebuild that finds and repairs drift.
- `projections`: the order, position and trade rows a batch changes, worked out and written.
- `ledger`: what the services share (LedgerConflict, the retry budget, the grid check).

The transaction every fill goes through, its speed tricks and the ledger's lock order are in
`trading.ingest`; stream and event names in `trading.streams`; replays (`position_replay`,
`position_as_of`) are reads, in `trading.selectors`.
"""

from trading.services.fills import (
    FillInput,
    FillRejected,
    FillsInvalid,
    FillsResult,
    RecordedFill,
    fill_record,
    fill_validate,
    fills_record,
)
from trading.services.ledger import LedgerConflict
from trading.services.orders import (
    OrderSubmitResult,
    order_cancel,
    order_reject,
    order_submit,
    order_validate,
)
from trading.services.positions import PositionDrift, position_drift, position_rebuild
from trading.streams import position_stream

__all__ = [
    "FillInput",
    "FillRejected",
    "FillsInvalid",
    "FillsResult",
    "LedgerConflict",
    "OrderSubmitResult",
    "PositionDrift",
    "RecordedFill",
    "fill_record",
    "fill_validate",
    "fills_record",
    "order_cancel",
    "order_reject",
    "order_submit",
    "order_validate",
    "position_drift",
    "position_rebuild",
    "position_stream",
]
