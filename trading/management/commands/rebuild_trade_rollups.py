"""`rebuild_trade_rollups`: recompute the daily trade rollups behind /trades/summary/."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from trading.rollups import trade_rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the daily trade rollups (per series and per owner) from the closed trades. "
        "The services keep them current; run this after trades were written around them "
        "(a restore, a bulk load by SQL)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", type=int, action="append", help="Only these owner ids")

    def handle(self, *args: Any, **options: Any) -> None:
        series, owners = trade_rollups_rebuild(owner_ids=options["owner"])
        self.stdout.write(
            self.style.SUCCESS(f"{series} series-days and {owners} owner-days rebuilt")
        )
