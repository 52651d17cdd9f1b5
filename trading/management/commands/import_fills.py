"""`import_fills`: bulk-import a CSV of fills for one user, through the bulk fill service.

The whole file is one transaction: a row the ledger refuses, wherever it is, leaves nothing
of the file written, and the error names its CSV line.
"""

from __future__ import annotations

import csv
from datetime import UTC
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_datetime

from accounts.models import User
from persistence.progress import progress_bar
from trading.models import Order
from trading.services import FillInput, FillRejected, FillsInvalid, LedgerConflict, fills_record

FIRST_LINE = 2  # line 1 is the header


class Command(BaseCommand):
    help = (
        "Import fills from a CSV with columns order (id) or client_order_id, venue_trade_id, "
        "quantity, price, fee (optional) and ts (ISO datetime). The file is imported all or "
        "nothing; known venue trade ids are skipped and counted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--user", required=True, help="Username owning the orders")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            owner = User.objects.get(username=options["user"])
        except User.DoesNotExist as exc:
            raise CommandError(f"no user {options['user']!r}") from exc
        with options["path"].open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        by_client_id = dict(Order.objects.filter(owner=owner).values_list("client_order_id", "id"))
        fills = [self._parse(n, row, by_client_id) for n, row in enumerate(rows, FIRST_LINE)]
        recorded = duplicates = 0
        size = max(1, options["batch_size"])
        # Batches keep each service call (and the progress bar) small; the outer transaction
        # makes them one unit, so a refused row late in the file rolls back earlier batches.
        with (
            progress_bar("import", len(fills), "fill", self.stderr) as update,
            transaction.atomic(),
        ):
            for start in range(0, len(fills), size):
                batch = fills[start : start + size]
                try:
                    result = fills_record(owner=owner, fills=batch, source="import")
                except (ValidationError, LedgerConflict) as exc:
                    raise CommandError(
                        f"{_refusal(exc, FIRST_LINE + start)}; nothing imported"
                    ) from exc
                recorded += len(result.recorded)
                duplicates += len(result.duplicates)
                update(start + len(batch), len(fills))
        self.stdout.write(
            self.style.SUCCESS(f"{recorded} fills recorded, {duplicates} duplicates skipped")
        )

    def _parse(self, line: int, row: dict[str, str], by_client_id: dict[str, int]) -> FillInput:
        try:
            if row.get("order"):
                order_id = int(row["order"])
            else:
                order_id = by_client_id[row["client_order_id"]]
            ts = parse_datetime(row["ts"])
            if ts is None:
                raise ValueError(f"bad ts {row['ts']!r}")
            return FillInput(
                order_id=order_id,
                venue_trade_id=row["venue_trade_id"],
                quantity=Decimal(row["quantity"]),
                price=Decimal(row["price"]),
                fee=Decimal(row.get("fee") or "0"),
                ts=ts if ts.tzinfo else ts.replace(tzinfo=UTC),
            )
        except (KeyError, ValueError, InvalidOperation) as exc:
            raise CommandError(f"CSV line {line}: {exc!r}") from exc


def _refusal(exc: ValidationError | LedgerConflict, first_line: int) -> str:
    """The service's complaint, with each refused fill named by its CSV line."""
    by_index: dict[int, str] = {}
    if isinstance(exc, FillsInvalid):
        by_index = exc.errors
    elif isinstance(exc, FillRejected) and "errors" in exc.detail:
        by_index = {int(i): problem for i, problem in exc.detail["errors"].items()}
    if by_index:
        return "; ".join(
            f"CSV line {first_line + i}: {problem}" for i, problem in sorted(by_index.items())
        )
    if isinstance(exc, LedgerConflict):
        return f"batch starting at CSV line {first_line} refused: {exc.message}"
    return f"batch starting at CSV line {first_line} refused: {'; '.join(exc.messages)}"
