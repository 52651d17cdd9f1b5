"""`generate_candles`: a seeded geometric random walk written as candles."""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = "Generate seeded random-walk candles for a symbol (created if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", default="BTCUSDT")
        parser.add_argument("--timeframe", default="1m", choices=sorted(TIMEFRAME_SECONDS))
        parser.add_argument("--bars", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--start-price", type=float, default=100.0)
        parser.add_argument(
            "--start", help="First bar's open time (ISO, UTC); default: end at the current bar"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["bars"] < 1:
            raise CommandError("--bars must be at least 1")
        start = pd.Timestamp(options["start"], tz="UTC") if options["start"] else None
        frame = random_walk_candles(
            bars=options["bars"],
            timeframe=options["timeframe"],
            seed=options["seed"],
            start=start,
            start_price=options["start_price"],
        )
        instrument = instrument_for_symbol(options["symbol"])
        with progress_bar("candles", len(frame), "bar", self.stderr) as progress:
            result = candles_upsert(
                instrument=instrument,
                timeframe=options["timeframe"],
                frame=frame,
                progress=progress,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {result.rows:,} {options['timeframe']} candles for {instrument.symbol} "
                f"from {result.first_ts} to {result.last_ts}"
            )
        )
