"""The candle parquet cache: the database on a miss, the parquet copy after, a new copy after
a re-import, and a data version that moves with the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from marketdata.models import Candle, Instrument
from marketdata.selectors import candle_count, candle_data_version, candles_load
from persistence.models import CachedResult
from tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _bars(instrument: Instrument, count: int, price: float = 100.0) -> None:
    Candle.objects.bulk_create(
        Candle(
            instrument=instrument,
            timeframe="1h",
            ts=T0 + timedelta(hours=i),
            open=price + i,
            high=price + i + 1,
            low=price + i - 1,
            close=price + i + 0.5,
            volume=1.0,
        )
        for i in range(count)
    )


def _load(instrument: Instrument, hours: int = 10):  # type: ignore[no-untyped-def]
    return candles_load(
        instrument_id=instrument.pk, timeframe="1h", start=T0, end=T0 + timedelta(hours=hours)
    )


def test_candles_come_from_the_database_then_from_the_parquet_cache(store: str) -> None:
    instrument = InstrumentFactory()
    _bars(instrument, 12)
    first, from_cache = _load(instrument)
    assert not from_cache
    # Half-open range: the bar opening at the end instant is not part of it.
    assert len(first) == 10
    assert str(first.index.tz) == "UTC"
    assert first.index[0] == T0
    assert list(first.columns) == ["open", "high", "low", "close", "volume"]
    assert first["close"].iloc[3] == 103.5

    second, from_cache = _load(instrument)
    assert from_cache
    assert second.equals(first)
    assert CachedResult.objects.get(kind="candles").row_count == 10


def test_a_reimport_that_touches_the_instrument_invalidates_the_copy(store: str) -> None:
    instrument = InstrumentFactory()
    _bars(instrument, 10)
    _load(instrument)
    Candle.objects.filter(instrument=instrument, ts=T0 + timedelta(hours=5)).update(close=150.0)
    Instrument.objects.filter(pk=instrument.pk).update(updated_at=timezone.now())
    frame, from_cache = _load(instrument)
    assert not from_cache
    assert frame["close"].iloc[5] == 150.0


def test_the_data_version_moves_when_bars_are_added_or_boundaries_rewritten() -> None:
    instrument = InstrumentFactory()
    _bars(instrument, 5)
    args = {
        "instrument_id": instrument.pk,
        "timeframe": "1h",
        "start": T0,
        "end": T0 + timedelta(days=1),
    }
    before = candle_data_version(**args)
    assert candle_data_version(**args) == before
    Candle.objects.create(
        instrument=instrument,
        timeframe="1h",
        ts=T0 + timedelta(hours=5),
        open=1,
        high=2,
        low=0.5,
        close=1.5,
        volume=1,
    )
    appended = candle_data_version(**args)
    assert appended != before
    Candle.objects.filter(instrument=instrument, ts=T0).update(open=99.5)
    assert candle_data_version(**args) != appended


def test_a_range_is_counted_from_this_processes_copy_or_by_the_database(
    django_assert_num_queries,
) -> None:
    instrument = InstrumentFactory()
    _bars(instrument, 12)
    span = {"instrument_id": instrument.pk, "timeframe": "1h", "start": T0}
    end = T0 + timedelta(hours=10)
    # Not kept in memory: the data version (three reads) and a count.
    with django_assert_num_queries(4):
        assert candle_count(**span, end=end) == 10
    frame, _ = candles_load(**span, end=end, keep_in_memory=True)
    # Kept: the data version names the copy, and no bar is read or counted.
    with django_assert_num_queries(3):
        assert candle_count(**span, end=end) == len(frame) == 10
    # Another range is not kept: counted by the database again.
    with django_assert_num_queries(4):
        assert candle_count(**span, end=T0 + timedelta(hours=12)) == 12
