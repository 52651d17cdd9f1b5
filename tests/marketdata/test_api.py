"""The market-data REST API over real HTTP calls: instruments, candle pages and downloads,
and staff uploads of candle files, in the request and as a background job."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from marketdata.models import Candle, CandleUpload, Instrument
from marketdata.services import random_walk_candles
from tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2024, 1, 1, tzinfo=UTC)
UPLOAD = "/api/v1/candles/upload/"


@pytest.fixture
def eager_celery():  # type: ignore[no-untyped-def]
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def series(db):  # type: ignore[no-untyped-def]
    """BTCUSDT with 30 hourly bars from T0."""
    instrument = InstrumentFactory(symbol="BTCUSDT")
    frame = random_walk_candles(bars=30, timeframe="1h", seed=3, start=pd.Timestamp(T0))
    Candle.objects.bulk_create(
        Candle(instrument=instrument, timeframe="1h", ts=ts.to_pydatetime(), **row)
        for ts, row in zip(frame.index, frame.to_dict(orient="records"), strict=True)
    )
    return frame


def candle_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index_label="ts", date_format="%Y-%m-%dT%H:%M:%SZ").encode()


def csv_file(content: bytes, name: str = "bars.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def good_frame(bars: int = 5) -> pd.DataFrame:
    return random_walk_candles(bars=bars, timeframe="1h", seed=11, start=pd.Timestamp(T0))


def bad_csv() -> bytes:
    return (
        b"ts,open,high,low,close,volume\n"
        b"2024-01-01T00:00:00Z,1.5,2.0,1.0,1.5,10\n"
        b"2024-01-01T01:00:00Z,1.5,1.0,2.0,1.5,10\n"
        b"2024-01-01T02:00:00Z,1.5,2.0,1.0,1.5,10\n"
    )


# --- Instruments ----------------------------------------------------------------------


def test_instruments_list_is_readable_by_any_user_and_filters(api_client) -> None:
    InstrumentFactory(symbol="BTCUSDT", quote="USDT")
    InstrumentFactory(symbol="ETHEUR", quote="EUR")
    InstrumentFactory(symbol="OLDUSDT", quote="USDT", is_active=False)

    everything = api_client.get("/api/v1/instruments/")
    assert everything.status_code == 200
    assert [i["symbol"] for i in everything.json()["results"]] == ["BTCUSDT", "ETHEUR", "OLDUSDT"]

    usdt = api_client.get("/api/v1/instruments/?quote=usdt&is_active=true").json()["results"]
    assert [i["symbol"] for i in usdt] == ["BTCUSDT"]
    by_symbol = api_client.get("/api/v1/instruments/?symbol=ethEUR").json()["results"]
    assert [i["symbol"] for i in by_symbol] == ["ETHEUR"]


def test_an_instrument_is_retrieved_by_symbol_in_any_case(api_client) -> None:
    InstrumentFactory(symbol="BTCUSDT", price_tick="0.01")
    response = api_client.get("/api/v1/instruments/btcusdt/")
    assert response.status_code == 200
    assert response.json()["symbol"] == "BTCUSDT"
    assert response.json()["price_tick"] == "0.010000000000000000"
    assert api_client.get("/api/v1/instruments/NOPE/").status_code == 404


def test_instruments_need_authentication(client, db) -> None:
    assert client.get("/api/v1/instruments/").status_code in (401, 403)


INSTRUMENT = {
    "symbol": "solusdt",
    "base": "SOL",
    "quote": "USDT",
    "price_tick": "0.001",
    "quantity_step": "0.01",
}


def test_staff_creates_an_instrument_stored_upper_case(staff_client) -> None:
    response = staff_client.post("/api/v1/instruments/", INSTRUMENT, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["symbol"] == "SOLUSDT"
    assert Instrument.objects.get(symbol="SOLUSDT").quantity_step == Decimal("0.01")


def test_an_instrument_is_created_with_its_asset_class_and_minimum_notional(staff_client) -> None:
    body = {**INSTRUMENT, "symbol": "SPY", "asset_class": "equity", "min_notional": "5"}
    response = staff_client.post("/api/v1/instruments/", body, format="json")
    assert response.status_code == 201, response.json()
    spy = Instrument.objects.get(symbol="SPY")
    assert (spy.asset_class, spy.calendar, spy.min_notional) == ("equity", "exchange", Decimal(5))
    bad = staff_client.post(
        "/api/v1/instruments/", {**body, "symbol": "QQQ", "asset_class": "bonds"}, format="json"
    )
    assert bad.status_code == 400 and "asset_class" in bad.json()


def test_non_staff_may_not_create_an_instrument(api_client) -> None:
    response = api_client.post("/api/v1/instruments/", INSTRUMENT, format="json")
    assert response.status_code == 403
    assert not Instrument.objects.filter(symbol="SOLUSDT").exists()


def test_a_duplicate_symbol_is_a_400_naming_symbol(staff_client) -> None:
    InstrumentFactory(symbol="SOLUSDT")
    response = staff_client.post("/api/v1/instruments/", INSTRUMENT, format="json")
    assert response.status_code == 400
    assert "symbol" in response.json()
    assert Instrument.objects.filter(symbol="SOLUSDT").count() == 1


def test_a_non_positive_tick_is_a_400_naming_it(staff_client) -> None:
    response = staff_client.post(
        "/api/v1/instruments/", {**INSTRUMENT, "price_tick": "0"}, format="json"
    )
    assert response.status_code == 400
    assert not Instrument.objects.filter(symbol="SOLUSDT").exists()


# --- Candles --------------------------------------------------------------------------


def test_candles_come_as_numbers_with_utc_times_in_order(api_client, series) -> None:
    response = api_client.get("/api/v1/candles/?symbol=BTCUSDT&timeframe=1h&limit=3")
    assert response.status_code == 200
    bars = response.json()["results"]
    assert [bar["ts"] for bar in bars] == [
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00Z",
        "2024-01-01T02:00:00Z",
    ]
    assert bars[0]["open"] == series["open"].iloc[0]
    assert isinstance(bars[0]["volume"], float)


def test_the_next_page_of_candles_follows_on(api_client, series) -> None:
    first = api_client.get("/api/v1/candles/?symbol=BTCUSDT&timeframe=1h&limit=20").json()
    assert len(first["results"]) == 20
    second = api_client.get(first["next"]).json()
    assert second["results"][0]["ts"] == "2024-01-01T20:00:00Z"
    assert len(second["results"]) == 10
    assert second["next"] is None


def test_candles_filter_by_a_half_open_range(api_client, series) -> None:
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=8)
    response = api_client.get(
        "/api/v1/candles/",
        {
            "symbol": "btcusdt",
            "timeframe": "1h",
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
    )
    assert [bar["ts"] for bar in response.json()["results"]] == [
        "2024-01-01T05:00:00Z",
        "2024-01-01T06:00:00Z",
        "2024-01-01T07:00:00Z",
    ]


@pytest.mark.parametrize("missing", ["symbol", "timeframe"])
def test_candles_without_symbol_or_timeframe_are_a_400_naming_it(
    api_client, series, missing
) -> None:
    query = {"symbol": "BTCUSDT", "timeframe": "1h"}
    del query[missing]
    response = api_client.get("/api/v1/candles/", query)
    assert response.status_code == 400
    assert list(response.json()) == [missing]


def test_candles_of_an_unknown_symbol_are_a_400_naming_symbol(api_client, series) -> None:
    response = api_client.get("/api/v1/candles/?symbol=NOPE&timeframe=1h")
    assert response.status_code == 400
    assert response.json() == {"symbol": ["No instrument NOPE."]}


def test_csv_download_parses_back_to_the_same_bars(api_client, series) -> None:
    response = api_client.get("/api/v1/candles/download/?symbol=BTCUSDT&timeframe=1h&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert 'filename="BTCUSDT-1h.csv"' in response["Content-Disposition"]
    content = b"".join(response.streaming_content)
    back = pd.read_csv(io.BytesIO(content), index_col="ts", parse_dates=["ts"])
    pd.testing.assert_frame_equal(back, series, check_freq=False, check_index_type=False)
    assert list(back.index) == list(series.index)


def test_parquet_download_of_a_range_parses_back_to_the_same_bars(api_client, series) -> None:
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=12)
    response = api_client.get(
        "/api/v1/candles/download/",
        {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "format": "parquet",
        },
    )
    assert response.status_code == 200
    back = pd.read_parquet(io.BytesIO(response.content))
    assert list(back.columns) == ["ts", "open", "high", "low", "close", "volume"]
    back = back.set_index("ts")
    pd.testing.assert_frame_equal(back, series.iloc[2:12], check_freq=False)


def test_a_download_over_the_bar_cap_is_a_400(api_client, series, settings) -> None:
    settings.CANDLE_DOWNLOAD_MAX_BARS = 29
    response = api_client.get("/api/v1/candles/download/?symbol=BTCUSDT&timeframe=1h&format=csv")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "more than 29 bars" in response.json()["end"][0]


# --- Uploads --------------------------------------------------------------------------


def test_a_good_csv_upload_writes_the_bars(staff_client) -> None:
    frame = good_frame(5)
    response = staff_client.post(
        UPLOAD,
        {"file": csv_file(candle_csv(frame)), "symbol": "newusdt", "timeframe": "1h"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "symbol": "NEWUSDT",
        "timeframe": "1h",
        "rows_written": 5,
        "first_ts": "2024-01-01T00:00:00Z",
        "last_ts": "2024-01-01T04:00:00Z",
    }
    stored = Candle.objects.filter(instrument__symbol="NEWUSDT", timeframe="1h").order_by("ts")
    assert [bar.close for bar in stored] == frame["close"].tolist()


def test_a_parquet_upload_writes_the_bars(staff_client, series) -> None:
    content = good_frame(4).reset_index().to_parquet(index=False)
    upload = SimpleUploadedFile("bars.parquet", content, content_type="application/octet-stream")
    response = staff_client.post(
        UPLOAD, {"file": upload, "symbol": "BTCUSDT", "timeframe": "4h"}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    assert Candle.objects.filter(timeframe="4h").count() == 4


def test_an_upload_with_a_bad_row_writes_nothing_and_names_the_row(staff_client, series) -> None:
    before = Candle.objects.count()
    response = staff_client.post(
        UPLOAD,
        {"file": csv_file(bad_csv()), "symbol": "FRESHUSDT", "timeframe": "1h"},
        format="multipart",
    )
    assert response.status_code == 400
    errors = response.json()["file"]
    assert errors[0] == "row 3: high 1.0 is below low 2.0"
    assert all(error.startswith("row 3: ") for error in errors)
    assert Candle.objects.count() == before
    assert not Instrument.objects.filter(symbol="FRESHUSDT").exists()


def test_an_upload_of_another_file_type_is_a_400_naming_file(staff_client) -> None:
    response = staff_client.post(
        UPLOAD,
        {"file": csv_file(b"x", name="bars.xlsx"), "symbol": "X", "timeframe": "1h"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "file" in response.json()


def test_non_staff_may_not_upload(api_client) -> None:
    response = api_client.post(
        UPLOAD,
        {"file": csv_file(candle_csv(good_frame())), "symbol": "NEWUSDT", "timeframe": "1h"},
        format="multipart",
    )
    assert response.status_code == 403
    assert Candle.objects.count() == 0


def test_an_upload_over_the_size_limit_is_refused(staff_client, settings) -> None:
    content = candle_csv(good_frame(50))
    settings.CANDLE_UPLOAD_MAX_BYTES = len(content) - 1
    response = staff_client.post(
        UPLOAD,
        {"file": csv_file(content), "symbol": "NEWUSDT", "timeframe": "1h"},
        format="multipart",
    )
    assert response.status_code == 413
    assert f"limited to {len(content) - 1:,} bytes" in response.json()["detail"]
    assert Candle.objects.count() == 0


def test_a_body_declared_far_over_the_limit_is_refused_before_it_is_read(
    staff_client, settings
) -> None:
    settings.CANDLE_UPLOAD_MAX_BYTES = 1000
    response = staff_client.generic(
        "POST",
        UPLOAD,
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(10_000_000),
    )
    assert response.status_code == 413
    assert "10,000,000 bytes" in response.json()["detail"]


def test_a_large_upload_runs_as_a_job_that_succeeds(
    staff_client, settings, eager_celery, django_capture_on_commit_callbacks
) -> None:
    settings.CANDLE_UPLOAD_ASYNC_BYTES = 100
    frame = good_frame(40)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            UPLOAD,
            {"file": csv_file(candle_csv(frame)), "symbol": "bigusdt", "timeframe": "1h"},
            format="multipart",
        )
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["status"] == "queued"
    assert response["Location"] == job["url"] == f"/api/v1/candles/uploads/{job['id']}/"

    done = staff_client.get(job["url"]).json()
    assert done["status"] == "succeeded"
    assert done["progress"] == 100.0
    assert done["rows_written"] == done["rows_done"] == 40
    assert done["first_ts"] == "2024-01-01T00:00:00Z"
    assert done["last_ts"] == "2024-01-02T15:00:00Z"
    assert done["errors"] == []
    assert Candle.objects.filter(instrument__symbol="BIGUSDT").count() == 40


def test_a_large_bad_upload_fails_naming_the_row_and_writes_nothing(
    staff_client, settings, eager_celery, django_capture_on_commit_callbacks
) -> None:
    settings.CANDLE_UPLOAD_ASYNC_BYTES = 100
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            UPLOAD,
            {"file": csv_file(bad_csv()), "symbol": "BADUSDT", "timeframe": "1h"},
            format="multipart",
        )
    assert response.status_code == 202
    done = staff_client.get(response.json()["url"]).json()
    assert done["status"] == "failed"
    assert done["errors"][0] == "row 3: high 1.0 is below low 2.0"
    assert done["rows_written"] == 0
    assert Candle.objects.count() == 0
    assert not Instrument.objects.filter(symbol="BADUSDT").exists()


def test_a_running_job_reports_the_progress_its_worker_left_in_the_cache(
    staff_client, staff_user
) -> None:
    from django.core.cache import cache

    from marketdata.selectors import candle_upload_progress_key

    upload = CandleUpload.objects.create(
        owner=staff_user, symbol="X", timeframe="1h", file_name="x.csv", status="running"
    )
    cache.set(candle_upload_progress_key(upload.pk), {"progress": 55.0, "rows_done": 500})
    try:
        body = staff_client.get(f"/api/v1/candles/uploads/{upload.pk}/").json()
    finally:
        cache.delete(candle_upload_progress_key(upload.pk))
    assert (body["status"], body["progress"], body["rows_done"]) == ("running", 55.0, 500)


def test_the_write_progress_is_throttled_but_the_end_always_reported(db) -> None:
    from django.core.cache import cache

    from marketdata.selectors import candle_upload_progress_key
    from marketdata.services import _UploadProgress

    progress = _UploadProgress(upload_id=987)
    key = candle_upload_progress_key(987)
    progress(10, 1000)
    assert cache.get(key) == {"progress": 10.9, "rows_done": 10}
    progress(500, 1000)  # too soon after the first tick
    assert cache.get(key)["rows_done"] == 10
    progress(1000, 1000)
    assert cache.get(key) == {"progress": 100.0, "rows_done": 1000}
    cache.delete(key)


def test_an_unknown_upload_job_is_a_404_and_jobs_are_staff_only(
    staff_client, api_client, staff_user
) -> None:
    assert staff_client.get("/api/v1/candles/uploads/999999/").status_code == 404
    upload = CandleUpload.objects.create(
        owner=staff_user, symbol="X", timeframe="1h", file_name="x.csv"
    )
    assert api_client.get(f"/api/v1/candles/uploads/{upload.pk}/").status_code == 403
