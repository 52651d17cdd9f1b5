"""`verify_ledger`: walk the event chain and every stream's versions; fail loudly on tampering."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence.events import ledger_verify
from persistence.models import Event
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Recompute every event's hash, check each prev_hash link and each stream's versions. "
        "Exits non-zero and names every bad sequence number."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        total = Event.objects.count()
        with progress_bar("verify", total, "ev", self.stderr) as update:
            report = ledger_verify(chunk_size=options["chunk_size"], progress=update)
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(f"TAMPERED {problem}")
            raise CommandError(
                f"ledger verification failed: {len(report.problems)} problem(s) in "
                f"{report.events} events"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"ledger OK: {report.events} events in {report.streams} streams, "
                f"{report.snapshots} snapshots anchored; head hash {report.head_hash}"
            )
        )
