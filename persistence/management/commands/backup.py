"""`backup <path>`: the whole database as one versioned zip archive (see persistence.backup)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence.backup import BackupError, backup_write
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Write every model's rows (JSON lines, dependency order), artifact files and the "
        "event log with its hashes to a zip archive with a manifest. For big production "
        "databases prefer pg_dump."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The archive to write, e.g. tradelab.zip")
        parser.add_argument(
            "--overwrite", action="store_true", help="Replace an archive already at the path."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if path.exists() and not options["overwrite"]:
            raise CommandError(f"{path} exists; choose another path or pass --overwrite")
        if not path.parent.is_dir():
            raise CommandError(f"no directory {path.parent}")
        with ExitStack() as bars:
            try:
                summary = backup_write(
                    path=path,
                    progress=lambda total: bars.enter_context(
                        progress_bar("backup", total, "rows", self.stderr)
                    ),
                )
            except BackupError as exc:
                raise CommandError(str(exc)) from exc
        for missing in summary.missing_files:
            self.stderr.write(f"MISSING {missing}: named by a row, not under MEDIA_ROOT")
        head = summary.event_head
        self.stdout.write(
            self.style.SUCCESS(
                f"backup written to {path}: {sum(summary.rows.values())} rows of "
                f"{len(summary.rows)} models, {summary.files} files; event log at seq "
                f"{head['seq']} ({head['events']} events, head hash {head['hash']})"
            )
        )
