"""`verify_ledger`: walk the event chain and every stream's versions; fail loudly on tampering.

With `--against`, also hold the ledger against signed checkpoints kept outside the event
table, which catches what the chain alone cannot: its newest events deleted.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence.checkpoints import Witness, checkpoints_verify, witness_for, witnesses_configured
from persistence.events import Problem, ledger_verify
from persistence.models import Event
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Recompute every event's hash, check each prev_hash link and each stream's versions; "
        "with --against, check signed checkpoints and that the ledger still holds what they "
        "signed. Exits non-zero and names every bad sequence number."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=5000)
        parser.add_argument(
            "--against",
            action="append",
            nargs="?",
            const="",
            default=[],
            metavar="WITNESS",
            help="Signed checkpoints to check the ledger against: a JSON-lines checkpoint "
            "file, one checkpoint's JSON, or a postgres:// or sqlite:// witness URL. Alone, "
            "the configured witnesses (LEDGER_CHECKPOINT_PATH, LEDGER_CHECKPOINT_DATABASE_URL). "
            "May be repeated.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total = Event.objects.count()
        with progress_bar("verify", total, "ev", self.stderr) as update:
            report = ledger_verify(chunk_size=options["chunk_size"], progress=update)
        problems: list[Problem] = list(report.problems)
        summary = ""
        if options["against"]:
            witnesses = self._witnesses(options["against"])
            try:
                checked = checkpoints_verify(witnesses)
            except FileNotFoundError as exc:
                raise CommandError(str(exc)) from exc
            problems.extend(checked.problems)
            if checked.newest is not None:
                summary = (
                    f"; {checked.signed} signed checkpoint(s) hold, the newest of seq "
                    f"{checked.newest.seq} ({checked.newest.event_count} events) at "
                    f"{checked.newest.created_at}"
                )
            else:
                summary = f"; {checked.signed} signed checkpoint(s) hold"
        if problems:
            for problem in problems:
                self.stderr.write(f"TAMPERED {problem}")
            raise CommandError(
                f"ledger verification failed: {len(problems)} problem(s) in {report.events} events"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"ledger OK: {report.events} events in {report.streams} streams, "
                f"{report.snapshots} snapshots anchored; head hash {report.head_hash}{summary}"
            )
        )

    @staticmethod
    def _witnesses(specs: list[str]) -> list[Witness]:
        witnesses: list[Witness] = []
        for spec in specs:
            witnesses.extend([witness_for(spec)] if spec else witnesses_configured())
        return witnesses
