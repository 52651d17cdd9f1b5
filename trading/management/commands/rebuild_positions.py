"""`rebuild_positions`: replay position streams from their snapshots and compare with the rows."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from persistence.progress import progress_bar
from trading.selectors import position_streams
from trading.services import position_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild positions from the newest snapshot plus the events after it. Without "
        "--as-of, compare with the live Position rows (and repair them with --apply); with "
        "--as-of, print the positions as the ledger knew them then."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="ISO date or datetime (UTC when naive)")
        parser.add_argument("--apply", action="store_true", help="Repair rows that drifted")
        parser.add_argument("--stream", action="append", help="Only these streams")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = None
        if options["as_of"]:
            raw = options["as_of"]
            day = parse_date(raw)
            as_of = parse_datetime(raw) if day is None else None
            if day is not None:
                as_of = datetime.combine(day, time.max, tzinfo=UTC)
            if as_of is None:
                raise CommandError(f"--as-of {raw!r} is not an ISO date or datetime")
            if timezone.is_naive(as_of):
                as_of = as_of.replace(tzinfo=UTC)
        streams = options["stream"] or position_streams()
        drifted = 0
        with progress_bar("rebuild", len(streams), "pos", self.stderr) as update:
            for done, stream in enumerate(streams, start=1):
                replay, drift = position_rebuild(stream=stream, as_of=as_of, apply=options["apply"])
                update(done, len(streams))
                if as_of is not None:
                    state = replay.state
                    self.stdout.write(
                        f"{stream}: quantity {state.quantity} avg {state.avg_entry_price} "
                        f"realized {state.realized_pnl} fees {state.fees_paid} ({state.status}, "
                        f"snapshot @{replay.from_snapshot} + {replay.events_applied} events)"
                    )
                elif drift is not None:
                    drifted += 1
                    fields = ", ".join(
                        f"{name}: row {row} != ledger {ledger}"
                        for name, (row, ledger) in drift.fields.items()
                    )
                    verb = "repaired" if options["apply"] else "DRIFT"
                    self.stderr.write(f"{verb} {stream} (position {drift.position_id}): {fields}")
        if as_of is not None:
            self.stdout.write(f"{len(streams)} positions as of {as_of.isoformat()}")
            return
        if drifted and not options["apply"]:
            raise CommandError(f"{drifted} of {len(streams)} positions differ from the ledger")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(streams)} positions rebuilt; "
                + (f"{drifted} repaired" if drifted else "all equal the live rows")
            )
        )
