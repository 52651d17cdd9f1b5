"""`restore <path>`: load a `backup` archive into an empty database, all or nothing."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any
from zipfile import BadZipFile

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.base import DeserializationError
from django.db import DatabaseError

from persistence.backup import BackupError, backup_restore
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Load a backup archive into an empty, migrated database in one transaction; reset "
        "id sequences; check row counts, every event's hash and the ledger's chain. Refuses "
        "a database with rows in it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="An archive written by `backup`")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"no backup archive at {path}")
        with ExitStack() as bars:
            try:
                summary = backup_restore(
                    path=path,
                    progress=lambda total: bars.enter_context(
                        progress_bar("restore", total, "rows", self.stderr)
                    ),
                )
            except BadZipFile as exc:
                raise CommandError(f"{path} is not a zip archive: {exc}") from exc
            except (BackupError, DeserializationError, DatabaseError) as exc:
                raise CommandError(f"restore failed, the database is unchanged: {exc}") from exc
        head = summary.event_head
        self.stdout.write(
            self.style.SUCCESS(
                f"restored {sum(summary.rows.values())} rows of {len(summary.rows)} models and "
                f"{summary.files} files from {path}; ledger verified at seq {head['seq']} "
                f"({head['events']} events, head hash {head['hash']})"
            )
        )
