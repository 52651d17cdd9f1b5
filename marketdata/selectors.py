"""Market-data reads: candles for the engine through a parquet cache keyed by instrument,
timeframe and range, in front of the database; the candle data version that goes into every
params hash; and the reads behind price charts (a window of a backtest's range).

The data version is cheap on purpose, because it is computed on every submit, including
the cache hits that must answer in milliseconds: it covers the instrument's ``updated_at``
and the first and last bar of the range (timestamps and values), all index lookups. It
changes when bars are added at either end of the range, when the boundary bars are
rewritten, and whenever the writer touches the instrument, which is how a re-import of
the middle of a range is meant to announce itself. Counting or summing every bar of the
range would catch more, but costs hundreds of milliseconds per million bars.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
from django.core.cache import cache
from django.db import connection
from django.db.models import Max, Min, QuerySet

from marketdata.models import Candle, CandleUpload, Instrument, UploadStatus
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.hashing import params_hash
from persistence.models import StorageFormat
from persistence.services import cache_load, cache_lookup, cache_peek, cache_store

CANDLE_CACHE_KIND = "candles"
OHLCV = ("open", "high", "low", "close", "volume")
# Rows fetched per round trip when reading from the database; also the progress step.
FETCH_CHUNK = 50_000

LoadProgressFn = Callable[[int, int], None]

# Frames a worker process read recently, by cache key: the chunks of one sweep that land
# on the same process read the parquet copy once. Two, so a worker alternating between two
# sweeps does not thrash; a key includes the data version, so a stale frame is never served.
MEMORY_FRAMES = 2
_in_memory: OrderedDict[str, pd.DataFrame] = OrderedDict()
_in_memory_lock = threading.Lock()


def _range(instrument_id: int, timeframe: str, start: datetime, end: datetime):  # type: ignore[no-untyped-def]
    # Half-open [start, end): a bar belongs to the range when it opens inside it.
    return Candle.objects.filter(
        instrument_id=instrument_id, timeframe=timeframe, ts__gte=start, ts__lt=end
    )


def candle_data_version(
    *, instrument_id: int, timeframe: str, start: datetime, end: datetime
) -> str:
    """A short fingerprint of the candles in the range; see the module docstring."""
    bars = _range(instrument_id, timeframe, start, end)
    fields = ("id", "ts", *OHLCV)
    first = bars.order_by("ts").values_list(*fields).first()
    last = bars.order_by("-ts").values_list(*fields).first()
    touched = Instrument.objects.filter(pk=instrument_id).values_list("updated_at", flat=True)
    return params_hash({"instrument_updated_at": touched.first(), "first": first, "last": last})[
        :16
    ]


def candle_count(*, instrument_id: int, timeframe: str, start: datetime, end: datetime) -> int:
    """How many bars the range holds: from this process's copy of the range when it keeps
    one (candles_load(keep_in_memory=True)), else counted by the database, which is far
    cheaper than reading a million bars only to count them."""
    frame = _kept(_range_key(instrument_id, timeframe, start, end))
    if frame is not None:
        return len(frame)
    return _range(instrument_id, timeframe, start, end).count()


def candle_count_at_least(
    *, instrument_id: int, timeframe: str, start: datetime, end: datetime, bars: int
) -> int:
    """How many bars the range has, counting no further than `bars` (cheap on huge ranges)."""
    ids = _range(instrument_id, timeframe, start, end).order_by("ts").values_list("id")[:bars]
    return len(ids)


def _frame_from_rows(ts: list[object], values: np.ndarray) -> pd.DataFrame:
    if ts and isinstance(ts[0], str):
        # SQLite hands back the stored text; it is UTC by Django's convention.
        index = pd.DatetimeIndex(pd.to_datetime(ts, utc=True, format="ISO8601"))
    else:
        index = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    frame = pd.DataFrame(values, index=index, columns=list(OHLCV), dtype=np.float64)
    frame.index.name = "ts"
    return frame


def candles_from_db(
    *,
    instrument_id: int,
    timeframe: str,
    start: datetime,
    end: datetime,
    progress: LoadProgressFn | None = None,
) -> pd.DataFrame:
    """The range's candles straight from the database, oldest first."""
    query = _range(instrument_id, timeframe, start, end).order_by("ts").values_list("ts", *OHLCV)
    total = query.count() if progress is not None else 0
    sql, sql_params = query.query.sql_with_params()
    stamps: list[object] = []
    chunks: list[np.ndarray] = []
    # A raw cursor skips per-row model conversion, which dominates on a million bars.
    with connection.cursor() as cursor:
        cursor.execute(sql, sql_params)
        while True:
            rows = cursor.fetchmany(FETCH_CHUNK)
            if not rows:
                break
            stamps.extend(row[0] for row in rows)
            chunks.append(np.array([row[1:] for row in rows], dtype=np.float64))
            if progress is not None:
                progress(len(stamps), total)
    values = np.concatenate(chunks) if chunks else np.empty((0, len(OHLCV)))
    return _frame_from_rows(stamps, values)


def candle_cache_key(
    *, instrument_id: int, timeframe: str, start: datetime, end: datetime, data_version: str
) -> str:
    return params_hash(
        {
            "instrument": instrument_id,
            "timeframe": timeframe,
            "start": start,
            "end": end,
            "data_version": data_version,
        }
    )


def _range_key(
    instrument_id: int,
    timeframe: str,
    start: datetime,
    end: datetime,
    data_version: str | None = None,
) -> str:
    """The cache key of the range's candles as they stand (their data version)."""
    if data_version is None:
        data_version = candle_data_version(
            instrument_id=instrument_id, timeframe=timeframe, start=start, end=end
        )
    return candle_cache_key(
        instrument_id=instrument_id,
        timeframe=timeframe,
        start=start,
        end=end,
        data_version=data_version,
    )


def _kept(key: str) -> pd.DataFrame | None:
    """The frame this process keeps under `key` (candles_load(keep_in_memory=True))."""
    with _in_memory_lock:
        frame = _in_memory.get(key)
        if frame is not None:
            _in_memory.move_to_end(key)
        return frame


def candles_load(
    *,
    instrument_id: int,
    timeframe: str,
    start: datetime,
    end: datetime,
    data_version: str | None = None,
    progress: LoadProgressFn | None = None,
    keep_in_memory: bool = False,
) -> tuple[pd.DataFrame, bool]:
    """(candles, from_cache): the parquet copy when one matches the data version, else the
    database, whose result is then cached for the next run over the same range.

    `keep_in_memory=True` is for repeated readers of one range, such as sweep chunks: the
    frame is also kept in this process (shared, so callers must not modify it), and a parquet
    hit is read without being counted, so that the lookup writes nothing to the database.
    """
    key = _range_key(instrument_id, timeframe, start, end, data_version)
    if keep_in_memory:
        kept = _kept(key)
        if kept is not None:
            return kept, True
    lookup = cache_peek if keep_in_memory else cache_lookup
    entry = lookup(kind=CANDLE_CACHE_KIND, params_hash=key)
    if entry is not None:
        frame = pd.read_parquet(io.BytesIO(cache_load(entry=entry)))
        from_cache = True
    else:
        frame = candles_from_db(
            instrument_id=instrument_id,
            timeframe=timeframe,
            start=start,
            end=end,
            progress=progress,
        )
        from_cache = False
        if len(frame):
            buffer = io.BytesIO()
            frame.to_parquet(buffer)
            cache_store(
                kind=CANDLE_CACHE_KIND,
                params_hash=key,
                content=buffer.getvalue(),
                format=StorageFormat.PARQUET,
                row_count=len(frame),
            )
    if keep_in_memory:
        with _in_memory_lock:
            _in_memory[key] = frame
            while len(_in_memory) > MEMORY_FRAMES:
                _in_memory.popitem(last=False)
    return frame, from_cache


def candle_span(*, instrument_id: int, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last bar open times stored for a series, or None when it is empty."""
    span = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe).aggregate(
        first=Min("ts"), last=Max("ts")
    )
    if span["first"] is None:
        return None
    return pd.Timestamp(span["first"]), pd.Timestamp(span["last"])


# Windows estimated to hold more bars than this are sliced from the whole range's parquet
# copy when there is one: read whole once (about half a second for a million bars) and then
# kept in the process, it beats the database's row-by-row fetch of so many bars, but not an
# indexed read of a few.
WINDOW_PARQUET_MIN_BARS = 100_000


def candles_window(
    *,
    instrument_id: int,
    timeframe: str,
    start: datetime,
    end: datetime,
    range_start: datetime,
    range_end: datetime,
    lookback: int = 0,
) -> tuple[pd.DataFrame, int]:
    """(candles, lookback bars): the bars of the window [start, end) inside the stored
    range [range_start, range_end) (a backtest's), preceded by up to `lookback` bars of the
    range before `start`, for indicators to warm up on; oldest first.

    A narrow window is read alone from the database. A wide one is sliced from the parquet
    copy of the whole range that the run left in the candle cache, when it is still there.
    """
    first = start
    if lookback > 0:
        before = (
            _range(instrument_id, timeframe, range_start, start)
            .order_by("-ts")
            .values_list("ts", flat=True)[lookback - 1 : lookback]
        )
        found = list(before)
        first = found[0] if found else range_start
    frame: pd.DataFrame | None = None
    seconds = TIMEFRAME_SECONDS.get(timeframe, 60)
    if (end - first).total_seconds() / seconds > WINDOW_PARQUET_MIN_BARS:
        frame = _cached_range_slice(instrument_id, timeframe, range_start, range_end, first, end)
    if frame is None:
        frame = candles_from_db(
            instrument_id=instrument_id, timeframe=timeframe, start=first, end=end
        )
    return frame, int(frame.index.searchsorted(pd.Timestamp(start)))


def _cached_range_slice(
    instrument_id: int,
    timeframe: str,
    range_start: datetime,
    range_end: datetime,
    first: datetime,
    end: datetime,
) -> pd.DataFrame | None:
    """[first, end) of the cached parquet copy of the whole range (shared: not to be
    modified), or None without one."""
    version = candle_data_version(
        instrument_id=instrument_id, timeframe=timeframe, start=range_start, end=range_end
    )
    key = candle_cache_key(
        instrument_id=instrument_id,
        timeframe=timeframe,
        start=range_start,
        end=range_end,
        data_version=version,
    )
    with _in_memory_lock:
        frame = _in_memory.get(key)
        if frame is not None:
            _in_memory.move_to_end(key)
    if frame is None:
        entry = cache_peek(kind=CANDLE_CACHE_KIND, params_hash=key)
        if entry is None:
            return None
        # Kept whole in this process, as sweep chunks keep theirs: the researcher zooming
        # about one run asks for many windows of the same range in a row.
        frame = pd.read_parquet(io.BytesIO(cache_load(entry=entry)))
        with _in_memory_lock:
            _in_memory[key] = frame
            while len(_in_memory) > MEMORY_FRAMES:
                _in_memory.popitem(last=False)
    index = frame.index
    return frame.iloc[
        index.searchsorted(pd.Timestamp(first)) : index.searchsorted(pd.Timestamp(end))
    ]


# --- The API's reads ------------------------------------------------------------------


def instrument_list() -> QuerySet[Instrument]:
    return Instrument.objects.order_by("symbol")


def instrument_by_symbol(*, symbol: str) -> Instrument | None:
    """The instrument named `symbol`, matched upper-case as instruments are stored."""
    return Instrument.objects.filter(symbol=symbol.strip().upper()).first()


def candle_list(
    *,
    instrument_id: int,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[Candle]:
    """One series' bars, oldest first; `start` inclusive, `end` exclusive, both optional."""
    bars = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe)
    if start is not None:
        bars = bars.filter(ts__gte=start)
    if end is not None:
        bars = bars.filter(ts__lt=end)
    return bars.order_by("ts")


def candle_frame(
    *,
    instrument_id: int,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """candle_list as a UTC-indexed float frame (open bounds become the series' own)."""
    span = candle_span(instrument_id=instrument_id, timeframe=timeframe)
    if span is None:
        return _frame_from_rows([], np.empty((0, len(OHLCV))))
    first, last = span
    return candles_from_db(
        instrument_id=instrument_id,
        timeframe=timeframe,
        start=start if start is not None else first.to_pydatetime(),
        # candles_from_db's end is exclusive; one microsecond past the last bar keeps it.
        end=end if end is not None else (last + pd.Timedelta(microseconds=1)).to_pydatetime(),
    )


def candle_upload_progress_key(upload_id: int) -> str:
    """Where a running upload job's live progress is kept in the cache."""
    return f"marketdata:candle-upload:{upload_id}:progress"


def candle_upload_get(*, upload_id: int) -> CandleUpload | None:
    return CandleUpload.objects.filter(pk=upload_id).first()


def candle_upload_live(upload: CandleUpload) -> dict[str, float | int]:
    """A job's progress and rows done so far: the row's, overlaid while it runs with the
    throttled progress its worker keeps in the cache (see services._UploadProgress)."""
    live: dict[str, float | int] = {
        "progress": upload.progress,
        "rows_done": upload.rows_written,
    }
    if upload.status == UploadStatus.RUNNING:
        cached = cache.get(candle_upload_progress_key(upload.pk))
        if isinstance(cached, dict):
            live.update(cached)
    return live
