"""A small market (hourly random walk) and a strategy on it, for the backtest tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketdata.models import Candle, Instrument
from marketdata.services import random_walk_candles
from tests.factories import InstrumentFactory, StrategyFactory

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BARS = 600
END = T0 + timedelta(hours=BARS)


def add_candles(instrument: Instrument, bars: int = BARS, seed: int = 7) -> None:
    frame = random_walk_candles(bars=bars, timeframe="1h", seed=seed, start=T0)
    Candle.objects.bulk_create(
        Candle(instrument=instrument, timeframe="1h", ts=ts.to_pydatetime(), **row)
        for ts, row in zip(frame.index, frame.to_dict(orient="records"), strict=True)
    )


@pytest.fixture
def market(db):  # type: ignore[no-untyped-def]
    instrument = InstrumentFactory(symbol="BTCUSDT")
    add_candles(instrument)
    return instrument


@pytest.fixture
def strategy(user, market):  # type: ignore[no-untyped-def]
    return StrategyFactory(
        owner=user, instrument=market, kind="sma_cross", parameters={"fast": 5, "slow": 20}
    )


@pytest.fixture
def eager_celery():  # type: ignore[no-untyped-def]
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous
