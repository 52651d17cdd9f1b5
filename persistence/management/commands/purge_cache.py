"""`purge_cache --older-than 30d [--dry-run]`: drop cached results nobody has used lately."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from persistence.services import cache_purge

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90m', '2w' or '45s' as a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not an age like 30d, 12h, 90m, 2w or 45s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"


class Command(BaseCommand):
    help = (
        "Delete cached results (backtest results, sweep rows, candle parquet copies) that were "
        "neither stored nor hit within --older-than, and report the space freed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="Age such as 30d, 12h or 2w")
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be freed; delete nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report = cache_purge(older_than=age, dry_run=options["dry_run"])
        verb = "Would free" if options["dry_run"] else "Freed"
        for kind, numbers in sorted(report.by_kind.items()):
            self.stdout.write(
                f"  {kind}: {numbers['entries']} entries, {_human(numbers['size_bytes'])}"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {report.entries} cached results, {_human(report.size_bytes)} "
                f"(unused for more than {options['older_than']})"
            )
        )
