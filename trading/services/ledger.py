"""What every ledger service shares: the conflict error, the retry budget, and the grid check."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from trading.accounting import exact_context

# Attempts of a service whose transaction lost a race (a stream moved, a venue id was taken)
# before it gives up with a LedgerConflict; every attempt starts from a clean transaction.
RETRIES = 3


class LedgerConflict(Exception):
    """The request is valid but clashes with the ledger's current state (HTTP 409)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def on_grid(value: Decimal, step: Decimal) -> bool:
    with exact_context():
        return value % step == 0
