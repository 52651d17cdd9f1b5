"""Market-data writes: instruments, and generating, importing and upserting candles.

Candles are float64 like the engine. A batch is validated completely before anything is
written, then upserted on (instrument, timeframe, ts) inside one transaction, so a bad
file writes nothing and re-importing overlapping data is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from marketdata.models import AssetClass, Candle, CandleUpload, Instrument, UploadStatus
from marketdata.selectors import candle_upload_progress_key
from marketdata.timeframes import TIMEFRAME_SECONDS, timeframe_delta
from persistence.services import artifact_load, artifact_save

logger = logging.getLogger(__name__)

OHLCV = ["open", "high", "low", "close", "volume"]
REQUIRED_COLUMNS = ["ts", *OHLCV]
# Rows per INSERT batch: large enough to amortise round trips, small enough for SQLite's
# limit on bound parameters per statement.
WRITE_CHUNK = 5_000
MAX_REPORTED_ERRORS = 20

ProgressFn = Callable[[int, int], None]


class CandleValidationError(ValueError):
    """A candle file or frame is unusable; `errors` names each bad row."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        lines = "\n  ".join(shown)
        suffix = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(errors)} problem(s) found, nothing was written:\n  {lines}{suffix}")


@dataclass(frozen=True)
class CandleWriteResult:
    rows: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None


def random_walk_candles(
    *,
    bars: int,
    timeframe: str,
    seed: int,
    start: pd.Timestamp | None = None,
    start_price: float = 100.0,
    annual_volatility: float = 0.6,
    annual_drift: float = 0.05,
) -> pd.DataFrame:
    """A seeded geometric random walk of OHLCV bars, consistent bar to bar.

    Each bar opens at the previous close; high and low extend beyond the body by a
    random fraction of the bar's volatility, so high >= max(open, close) always holds.
    """
    if bars < 1:
        raise ValueError("bars must be at least 1")
    rng = np.random.default_rng(seed)
    bar_seconds = TIMEFRAME_SECONDS[timeframe]
    dt_years = bar_seconds / (365 * 24 * 3600)
    sigma = annual_volatility * np.sqrt(dt_years)
    mu = (annual_drift - 0.5 * annual_volatility**2) * dt_years
    log_returns = rng.normal(mu, sigma, bars)
    close = start_price * np.exp(np.cumsum(log_returns))
    open_ = np.empty(bars)
    open_[0] = start_price
    open_[1:] = close[:-1]
    wick_up = np.abs(rng.normal(0.0, sigma / 2, bars))
    wick_down = np.abs(rng.normal(0.0, sigma / 2, bars))
    high = np.maximum(open_, close) * np.exp(wick_up)
    low = np.minimum(open_, close) * np.exp(-wick_down)
    volume = rng.lognormal(mean=3.0, sigma=0.5, size=bars)
    if start is None:
        # End the series at the latest whole bar, so demo data reaches "now".
        end = pd.Timestamp.now(tz="UTC").floor(timeframe_delta(timeframe))
        start = end - timeframe_delta(timeframe) * (bars - 1)
    index = pd.date_range(start=start, periods=bars, freq=timeframe_delta(timeframe), tz="UTC")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
    frame.index.name = "ts"
    return frame


def read_candle_file(path: Path) -> pd.DataFrame:
    """Read a CSV or parquet file of ts, open, high, low, close, volume and validate it.

    Timestamps without an offset are taken as UTC. Row numbers in errors are the file's
    line numbers for CSV (the header is line 1) and 1-based row positions for parquet.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        raw = pd.read_parquet(path)
        first_row_number = 1
    elif suffix in {".csv", ".txt"}:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        first_row_number = 2
    else:
        raise CandleValidationError(
            [f"{path.name}: unsupported file type {suffix!r}; use .csv or .parquet"]
        )
    raw.columns = [str(column).strip().lower() for column in raw.columns]
    return validate_candle_frame(raw, first_row_number=first_row_number)


def validate_candle_frame(raw: pd.DataFrame, *, first_row_number: int = 1) -> pd.DataFrame:
    """Turn raw columns into a clean, sorted, UTC-indexed float frame, or say what is wrong."""
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise CandleValidationError(
            [f"missing column(s): {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)})"]
        )
    if raw.empty:
        raise CandleValidationError(["the file has no rows"])

    rows = pd.RangeIndex(first_row_number, first_row_number + len(raw))
    errors: list[tuple[int, str]] = []

    ts_raw = raw["ts"]
    if pd.api.types.is_datetime64_any_dtype(ts_raw):
        ts = pd.to_datetime(ts_raw, utc=True)
    elif pd.api.types.is_numeric_dtype(ts_raw):
        # Epoch numbers: milliseconds when they are too large to be seconds.
        unit = "ms" if float(pd.Series(ts_raw).abs().max()) > 1e11 else "s"
        ts = pd.to_datetime(ts_raw, unit=unit, utc=True, errors="coerce")
    else:
        ts = pd.to_datetime(ts_raw, utc=True, errors="coerce", format="ISO8601")
    for position in np.flatnonzero(ts.isna().to_numpy()):
        errors.append((rows[position], f"ts {raw['ts'].iloc[position]!r} is not a timestamp"))

    values = {}
    for column in OHLCV:
        numbers = pd.to_numeric(raw[column], errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
        for position in np.flatnonzero(bad.to_numpy()):
            errors.append(
                (rows[position], f"{column} {raw[column].iloc[position]!r} is not a number")
            )
        values[column] = numbers.to_numpy(dtype=float, na_value=np.nan)

    o, h, low, c, v = (values[column] for column in OHLCV)
    with np.errstate(invalid="ignore"):
        checks = [
            (h < low, "high {h} is below low {low}"),
            ((o > h) | (c > h), "open/close above high {h}"),
            ((o < low) | (c < low), "open/close below low {low}"),
            (low <= 0, "prices must be positive (low {low})"),
            (v < 0, "volume {v} is negative"),
        ]
    for mask, message in checks:
        for position in np.flatnonzero(mask):
            errors.append(
                (rows[position], message.format(h=h[position], low=low[position], v=v[position]))
            )

    duplicated = ts.duplicated(keep=False).to_numpy() & ts.notna().to_numpy()
    if duplicated.any():
        first_seen: dict[pd.Timestamp, int] = {}
        for position in np.flatnonzero(duplicated):
            stamp = ts.iloc[position]
            if stamp in first_seen:
                errors.append(
                    (
                        rows[position],
                        f"duplicate ts {stamp.isoformat()} (also row {first_seen[stamp]})",
                    )
                )
            else:
                first_seen[stamp] = rows[position]

    if errors:
        errors.sort(key=lambda item: item[0])
        raise CandleValidationError([f"row {row}: {message}" for row, message in errors])

    frame = pd.DataFrame(values, index=pd.DatetimeIndex(ts, name="ts"))
    return frame.sort_index()


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _ts_params(index: pd.DatetimeIndex) -> list[object]:
    utc = index.tz_convert("UTC")
    if connection.vendor != "sqlite":
        return list(utc.to_pydatetime())
    # Django stores aware datetimes in SQLite as str() of the naive UTC datetime; matching
    # that text exactly keeps ORM lookups and the unique constraint consistent.
    text = utc.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)
    fractional = np.flatnonzero(utc.microsecond != 0)
    if fractional.size:
        text[fractional] = utc[fractional].strftime("%Y-%m-%d %H:%M:%S.%f")
    return list(text)


@transaction.atomic
def candles_upsert(
    *,
    instrument: Instrument,
    timeframe: str,
    frame: pd.DataFrame,
    progress: ProgressFn | None = None,
) -> CandleWriteResult:
    """Insert or overwrite bars on (instrument, timeframe, ts): re-imports are idempotent."""
    if timeframe not in TIMEFRAME_SECONDS:
        raise CandleValidationError([f"unknown timeframe {timeframe!r}"])
    frame = validate_candle_frame(frame.reset_index().rename(columns={"index": "ts"}))
    if connection.vendor == "postgresql":
        _copy_upsert(instrument=instrument, timeframe=timeframe, frame=frame, progress=progress)
    else:
        _executemany_upsert(
            instrument=instrument, timeframe=timeframe, frame=frame, progress=progress
        )
    # Bars may have been rewritten in place; touching the instrument changes the candle data
    # version that backtest cache keys include, so no stale result is served afterwards.
    Instrument.objects.filter(pk=instrument.pk).update(updated_at=timezone.now())
    return CandleWriteResult(
        rows=len(frame),
        first_ts=frame.index[0] if len(frame) else None,
        last_ts=frame.index[-1] if len(frame) else None,
    )


_UPSERT_SET = (
    "ON CONFLICT (instrument_id, timeframe, ts) DO UPDATE SET "
    "open = excluded.open, high = excluded.high, low = excluded.low, "
    "close = excluded.close, volume = excluded.volume"
)


def _executemany_upsert(
    *, instrument: Instrument, timeframe: str, frame: pd.DataFrame, progress: ProgressFn | None
) -> None:
    table = Candle._meta.db_table
    sql = (
        f"INSERT INTO {table} (instrument_id, timeframe, ts, open, high, low, close, volume) "  # noqa: S608
        f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s) {_UPSERT_SET}"
    )
    done = 0
    with connection.cursor() as cursor:
        for chunk in _chunks(frame, WRITE_CHUNK):
            stamps = _ts_params(pd.DatetimeIndex(chunk.index))
            columns = [chunk[column].tolist() for column in OHLCV]
            params = [
                (instrument.pk, timeframe, stamp, *bar)
                for stamp, *bar in zip(stamps, *columns, strict=True)
            ]
            cursor.executemany(sql, params)
            done += len(chunk)
            if progress is not None:
                progress(done, len(frame))


def _copy_upsert(
    *, instrument: Instrument, timeframe: str, frame: pd.DataFrame, progress: ProgressFn | None
) -> None:
    """COPY into a session temp table, then one INSERT ... ON CONFLICT: a million bars take
    seconds on PostgreSQL, where row-by-row inserts take minutes."""
    table = Candle._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candle_load (ts timestamptz, open float8, "
            "high float8, low float8, close float8, volume float8) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE candle_load")
        raw = cursor.cursor
        done = 0
        with raw.copy("COPY candle_load (ts, open, high, low, close, volume) FROM STDIN") as copy:
            for chunk in _chunks(frame, WRITE_CHUNK * 10):
                stamps = pd.DatetimeIndex(chunk.index).tz_convert("UTC").to_pydatetime()
                columns = [chunk[column].tolist() for column in OHLCV]
                for row in zip(stamps, *columns, strict=True):
                    copy.write_row(row)
                done += len(chunk)
                if progress is not None:
                    # COPY is most of the work; the final merge is reported as the last step.
                    progress(min(done, len(frame) - 1), len(frame))
        cursor.execute(
            f"INSERT INTO {table} (instrument_id, timeframe, ts, open, high, low, close, volume) "  # noqa: S608
            f"SELECT %s, %s, ts, open, high, low, close, volume FROM candle_load {_UPSERT_SET}",
            [instrument.pk, timeframe],
        )
    if progress is not None:
        progress(len(frame), len(frame))


def instrument_for_symbol(symbol: str) -> Instrument:
    """The instrument named `symbol`, created with sensible ticks if it is new.

    A symbol like BTCUSDT is split into base and quote on a known quote currency.
    """
    symbol = symbol.upper()
    existing = Instrument.objects.filter(symbol=symbol).first()
    if existing is not None:
        return existing
    quote = next((q for q in ("USDT", "USDC", "USD", "EUR", "BTC") if symbol.endswith(q)), "USD")
    base = symbol.removesuffix(quote) or symbol
    instrument = Instrument(
        symbol=symbol, base=base, quote=quote, price_tick="0.01", quantity_step="0.0001"
    )
    instrument.full_clean()
    instrument.save()
    return instrument


# --- Instruments ----------------------------------------------------------------------


@transaction.atomic
def instrument_create(
    *,
    symbol: str,
    base: str,
    quote: str,
    price_tick: Decimal,
    quantity_step: Decimal,
    min_notional: Decimal = Decimal(0),
    asset_class: str = AssetClass.CRYPTO,
    is_active: bool = True,
) -> Instrument:
    """A new instrument; symbols are stored upper-case, as imports store them.

    A duplicate symbol is a ValidationError on `symbol`, also when a concurrent request
    creates it between the check and the insert.
    """
    instrument = Instrument(
        symbol=symbol.strip().upper(),
        base=base.strip().upper(),
        quote=quote.strip().upper(),
        price_tick=price_tick,
        quantity_step=quantity_step,
        min_notional=min_notional,
        asset_class=asset_class,
        is_active=is_active,
    )
    instrument.full_clean()
    try:
        with transaction.atomic():
            instrument.save()
    except IntegrityError as exc:
        raise ValidationError(
            {"symbol": [f"Instrument {instrument.symbol} already exists."]}
        ) from exc
    return instrument


# --- Candle files and uploads ---------------------------------------------------------

CANDLE_FILE_SUFFIXES = (".csv", ".parquet")
# The share of an upload job's progress given to reading and validating the file.
READ_SHARE = 10.0
# Live progress of a job's write phase: at most one update per this many seconds.
PROGRESS_MIN_INTERVAL = 0.5
PROGRESS_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CandleImport:
    instrument: Instrument
    result: CandleWriteResult


def _read_candles(path: Path) -> pd.DataFrame:
    """read_candle_file, with an unreadable file (not CSV, broken parquet) as a
    CandleValidationError too, as import_candles reports it."""
    try:
        return read_candle_file(path)
    except CandleValidationError:
        raise
    except (ValueError, OSError) as exc:
        raise CandleValidationError([f"could not read the file: {exc}"]) from exc


def candles_import_file(
    *, path: Path, symbol: str, timeframe: str, progress: ProgressFn | None = None
) -> CandleImport:
    """Import a CSV or parquet file exactly as `import_candles` does, all or nothing.

    The file is read and validated completely first; then the instrument (created for a
    new symbol) and every bar are written in one transaction, so a bad file writes nothing,
    not even the instrument.
    """
    if timeframe not in TIMEFRAME_SECONDS:
        raise CandleValidationError([f"unknown timeframe {timeframe!r}"])
    frame = _read_candles(path)
    with transaction.atomic():
        instrument = instrument_for_symbol(symbol)
        result = candles_upsert(
            instrument=instrument, timeframe=timeframe, frame=frame, progress=progress
        )
    return CandleImport(instrument=instrument, result=result)


def _suffix(file_name: str) -> str:
    suffix = Path(file_name).suffix.lower()
    if suffix not in CANDLE_FILE_SUFFIXES:
        raise CandleValidationError(
            [f"{file_name}: unsupported file type {suffix!r}; use .csv or .parquet"]
        )
    return suffix


@contextmanager
def _spooled(file_name: str, chunks: Iterable[bytes]) -> Iterator[Path]:
    # read_candle_file reads a path and picks the reader by its suffix; the upload's own
    # name never becomes part of the path.
    suffix = _suffix(file_name)
    with tempfile.TemporaryDirectory(prefix="candle-upload-") as directory:
        path = Path(directory) / f"candles{suffix}"
        with path.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        yield path


def candles_import_upload(
    *, file_name: str, chunks: Iterable[bytes], symbol: str, timeframe: str
) -> CandleImport:
    """An uploaded file imported within the request (see candles_import_file)."""
    with _spooled(file_name, chunks) as path:
        return candles_import_file(path=path, symbol=symbol, timeframe=timeframe)


def candle_upload_submit(
    *, user: User, file_name: str, content: bytes, symbol: str, timeframe: str
) -> CandleUpload:
    """Keep the file as an artifact and queue its import; the job answers for its outcome."""
    suffix = _suffix(file_name)
    if timeframe not in TIMEFRAME_SECONDS:
        raise CandleValidationError([f"unknown timeframe {timeframe!r}"])
    with transaction.atomic():
        artifact = artifact_save(
            name=f"candle-upload{suffix}",
            mime_type="text/csv" if suffix == ".csv" else "application/vnd.apache.parquet",
            content=content,
            owner=user,
            # Artifacts are keyed by a run or a hash; an upload's is its content's.
            params_hash=hashlib.sha256(content).hexdigest(),
        )
        upload = CandleUpload(
            owner=user,
            symbol=symbol.strip().upper(),
            timeframe=timeframe,
            file_name=Path(file_name).name[:200],
            size_bytes=len(content),
            artifact=artifact,
        )
        upload.full_clean()
        upload.save()
        upload_id = upload.pk

        def enqueue() -> None:
            from marketdata.tasks import import_candle_upload

            import_candle_upload.delay(upload_id)

        transaction.on_commit(enqueue)
    return upload


class _UploadProgress:
    """Throttled progress of a job's write phase.

    The bars are written inside one transaction (that is what makes a failed import write
    nothing), so an update of the job's row made meanwhile would stay invisible until the
    end. Live progress goes to the cache instead, where selectors.candle_upload_live reads
    it; the row gets the outcome.
    """

    def __init__(self, upload_id: int) -> None:
        self.key = candle_upload_progress_key(upload_id)
        self.last_at: float | None = None
        self.last_percent = -1.0

    def __call__(self, done: int, total: int) -> None:
        percent = READ_SHARE + (100.0 - READ_SHARE) * done / max(total, 1)
        now = time.monotonic()
        final = done >= total
        too_soon = self.last_at is not None and (
            now - self.last_at < PROGRESS_MIN_INTERVAL or percent - self.last_percent < 1.0
        )
        if too_soon and not final:
            return
        self.last_at, self.last_percent = now, percent
        try:
            cache.set(
                self.key,
                {"progress": round(percent, 2), "rows_done": done},
                PROGRESS_TTL_SECONDS,
            )
        except Exception:  # progress lost is never worth failing an import for
            logger.warning("could not record progress at %s", self.key, exc_info=True)


def _upload_finish(upload: CandleUpload, **fields: object) -> CandleUpload:
    for name, value in fields.items():
        setattr(upload, name, value)
    upload.finished_at = timezone.now()
    upload.save(update_fields=[*fields, "finished_at"])
    cache.delete(candle_upload_progress_key(upload.pk))
    return upload


def candle_upload_execute(*, upload_id: int, task_id: str = "") -> CandleUpload | None:
    """Import a queued upload (the worker's side); None when there is no such job.

    Safe to redeliver: a finished job is left alone, and a job whose worker died mid-import
    wrote nothing (the write is one transaction), so it is simply imported again. Any
    failure ends the job `failed` with readable errors; nothing is written then.
    """
    upload = CandleUpload.objects.select_related("artifact").filter(pk=upload_id).first()
    if upload is None or upload.status in (UploadStatus.SUCCEEDED, UploadStatus.FAILED):
        return upload
    upload.status = UploadStatus.RUNNING
    upload.task_id = task_id or upload.task_id
    upload.started_at = timezone.now()
    upload.progress = 0
    upload.save(update_fields=["status", "task_id", "started_at", "progress"])
    try:
        if upload.artifact is None:
            raise CandleValidationError(["the uploaded file is no longer stored"])
        content = artifact_load(artifact=upload.artifact)
        with _spooled(upload.file_name, [content]) as path:
            imported = candles_import_file(
                path=path,
                symbol=upload.symbol,
                timeframe=upload.timeframe,
                progress=_UploadProgress(upload.pk),
            )
    except CandleValidationError as exc:
        return _upload_finish(
            upload, status=UploadStatus.FAILED, errors=reported_errors(exc.errors)
        )
    except Exception as exc:
        logger.exception("candle upload %s failed", upload.pk)
        return _upload_finish(
            upload, status=UploadStatus.FAILED, errors=[f"the import failed: {exc}"]
        )
    result = imported.result
    return _upload_finish(
        upload,
        status=UploadStatus.SUCCEEDED,
        progress=100.0,
        rows_total=result.rows,
        rows_written=result.rows,
        first_ts=None if result.first_ts is None else result.first_ts.to_pydatetime(),
        last_ts=None if result.last_ts is None else result.last_ts.to_pydatetime(),
        errors=[],
    )


def reported_errors(errors: list[str]) -> list[str]:
    """The first MAX_REPORTED_ERRORS problems, and how many more there are."""
    shown = errors[:MAX_REPORTED_ERRORS]
    if len(errors) > len(shown):
        shown = [*shown, f"... and {len(errors) - len(shown)} more"]
    return shown
