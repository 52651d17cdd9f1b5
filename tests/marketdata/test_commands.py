"""generate_candles and import_candles: valid data lands, bad files write nothing."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketdata.models import Candle, Instrument
from marketdata.services import random_walk_candles

pytestmark = pytest.mark.django_db

GOOD_CSV = """ts,open,high,low,close,volume
2024-01-01T00:00:00Z,100,101,99,100.5,10
2024-01-01T01:00:00Z,100.5,102,100,101.5,12
2024-01-01T02:00:00Z,101.5,103,101,102,8
"""


def _write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _import(path: Path, symbol: str = "BTCUSDT") -> str:
    out = StringIO()
    call_command(
        "import_candles", str(path), symbol=symbol, timeframe="1h", stdout=out, stderr=StringIO()
    )
    return out.getvalue()


def test_generate_candles_is_seeded_and_consistent():
    call_command(
        "generate_candles",
        symbol="ETHUSDT",
        timeframe="1m",
        bars=500,
        seed=7,
        start="2024-01-01T00:00:00",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    bars = pd.DataFrame(Candle.objects.order_by("ts").values("ts", "open", "high", "low", "close"))
    assert len(bars) == 500
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert (bars["ts"].diff().dropna() == pd.Timedelta(minutes=1)).all()
    again = random_walk_candles(
        bars=500, timeframe="1m", seed=7, start=pd.Timestamp("2024-01-01", tz="UTC")
    )
    assert bars["close"].tolist() == pytest.approx(again["close"].tolist(), rel=1e-12)


def test_import_of_a_good_csv_writes_every_bar_in_utc(tmp_path):
    output = _import(_write(tmp_path, GOOD_CSV))
    assert "Imported 3 candles" in output
    first = Candle.objects.order_by("ts").first()
    assert first.ts == pd.Timestamp("2024-01-01T00:00:00Z").to_pydatetime()
    assert first.ts.utcoffset().total_seconds() == 0


def test_reimporting_overlapping_bars_is_idempotent(tmp_path):
    _import(_write(tmp_path, GOOD_CSV))
    overlapping = GOOD_CSV + "2024-01-01T03:00:00Z,102,104,101,103,9\n"
    _import(_write(tmp_path, overlapping, "more.csv"))
    _import(_write(tmp_path, overlapping, "more.csv"))
    assert Candle.objects.count() == 4


def test_reimport_overwrites_a_corrected_bar(tmp_path):
    _import(_write(tmp_path, GOOD_CSV))
    _import(
        _write(tmp_path, GOOD_CSV.replace("100.5,102,100,101.5", "100.5,102,100,101.75"), "fix.csv")
    )
    assert Candle.objects.get(ts="2024-01-01T01:00:00Z").close == 101.75


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ts,open,high,low,volume\n2024-01-01T00:00:00Z,1,2,0.5,1\n", "missing column(s): close"),
        (GOOD_CSV + "not-a-date,1,2,0.5,1,1\n", "row 5: ts 'not-a-date' is not a timestamp"),
        (GOOD_CSV + "2024-01-01T03:00:00Z,1,abc,0.5,1,1\n", "row 5: high 'abc' is not a number"),
        (
            GOOD_CSV + "2024-01-01T03:00:00Z,100,99,101,100,1\n",
            "row 5: high 99.0 is below low 101.0",
        ),
        (
            GOOD_CSV + "2024-01-01T01:00:00Z,100,101,99,100,1\n",
            "row 5: duplicate ts 2024-01-01T01:00:00+00:00 (also row 3)",
        ),
    ],
    ids=["missing-column", "bad-timestamp", "bad-number", "high-below-low", "duplicate-ts"],
)
def test_bad_file_names_the_row_and_writes_nothing(tmp_path, text, expected):
    _import(_write(tmp_path, GOOD_CSV, "seed.csv"))
    before = Candle.objects.count()
    with pytest.raises(CommandError) as excinfo:
        _import(_write(tmp_path, text))
    assert expected in str(excinfo.value)
    assert Candle.objects.count() == before


def test_bad_file_for_a_new_symbol_creates_no_instrument(tmp_path):
    with pytest.raises(CommandError):
        _import(_write(tmp_path, GOOD_CSV + "x,1,1,1,1,1\n"), symbol="NEWUSDT")
    assert not Instrument.objects.filter(symbol="NEWUSDT").exists()


def test_parquet_import_matches_csv(tmp_path):
    frame = pd.read_csv(StringIO(GOOD_CSV))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path)
    _import(path)
    assert list(Candle.objects.order_by("ts").values_list("close", flat=True)) == [
        100.5,
        101.5,
        102.0,
    ]


def test_reimport_changes_the_candle_data_version_used_by_the_cache(tmp_path):
    from marketdata.selectors import candle_data_version

    _import(_write(tmp_path, GOOD_CSV))
    instrument = Instrument.objects.get(symbol="BTCUSDT")
    window = {
        "instrument_id": instrument.pk,
        "timeframe": "1h",
        "start": pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime(),
        "end": pd.Timestamp("2024-01-02", tz="UTC").to_pydatetime(),
    }
    before = candle_data_version(**window)
    # Only the middle bar changes: the range's first and last bars stay the same.
    _import(
        _write(tmp_path, GOOD_CSV.replace("100.5,102,100,101.5", "100.5,102,100,101.25"), "fix.csv")
    )
    assert candle_data_version(**window) != before
