"""`import_candles`: load a CSV or parquet file of bars, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from marketdata.services import (
    CandleValidationError,
    candles_upsert,
    instrument_for_symbol,
    read_candle_file,
)
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Import candles from a CSV or parquet file with columns ts, open, high, low, close, "
        "volume. A bad file writes nothing; re-importing overlapping bars overwrites them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", required=True, choices=sorted(TIMEFRAME_SECONDS))

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            frame = read_candle_file(path)
        except CandleValidationError as exc:
            raise CommandError(f"{path.name}: {exc}") from exc
        except (ValueError, OSError) as exc:  # unreadable CSV/parquet structure
            raise CommandError(f"{path.name}: could not read the file: {exc}") from exc
        instrument = instrument_for_symbol(options["symbol"])
        with progress_bar("import", len(frame), "bar", self.stderr) as progress:
            result = candles_upsert(
                instrument=instrument,
                timeframe=options["timeframe"],
                frame=frame,
                progress=progress,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.rows:,} candles for {instrument.symbol} "
                f"{options['timeframe']} ({result.first_ts} .. {result.last_ts})"
            )
        )
