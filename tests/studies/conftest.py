"""A small market, a strategy on it, and Celery replaced by a queue the test drains.

Studies write Optuna's tables through a connection of their own (SQLAlchemy), which on
SQLite cannot see into, or wait out, the transaction a `db` test runs in: tests that run a
study use `transactional_db`. The queue stands in for Celery: the pump's batches are
collected and `drain` runs them one after another with the same services the workers
call, so a study of many trials runs without recursion or a broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from marketdata.models import Candle, Instrument
from marketdata.services import random_walk_candles
from studies import services
from studies.models import Study
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BARS = 600
END = T0 + timedelta(hours=BARS)


def add_candles(instrument: Instrument, bars: int = BARS, seed: int = 7, frame: Any = None) -> None:
    if frame is None:
        frame = random_walk_candles(bars=bars, timeframe="1h", seed=seed, start=T0)
    Candle.objects.bulk_create(
        Candle(instrument=instrument, timeframe="1h", ts=ts.to_pydatetime(), **row)
        for ts, row in zip(frame.index, frame.to_dict(orient="records"), strict=True)
    )


class Queue:
    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.launches: list[int] = []
        self.watches: list[int] = []

    def drain(self, *, worker: str = "test-worker", limit: int = 100_000) -> int:
        ran = 0
        while self.batches and ran < limit:
            batch = self.batches.pop(0)
            services.trials_execute(worker=worker, **batch)
            ran += 1
        return ran

    def run(self, study: Study) -> Study:
        services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
        self.drain()
        study.refresh_from_db()
        return study


@pytest.fixture
def queue(monkeypatch) -> Iterator[Queue]:  # type: ignore[no-untyped-def]
    from studies.services import driver, submit

    found = Queue()
    monkeypatch.setattr(driver, "trials_dispatch", lambda **kw: found.batches.append(kw))
    monkeypatch.setattr(driver, "watch_schedule", lambda **kw: found.watches.append(kw))
    monkeypatch.setattr(
        submit, "study_enqueue_on_commit", lambda **kw: found.launches.append(kw["study_id"])
    )
    monkeypatch.setattr(driver, "cancel_cleanup_on_commit", lambda **kw: None)
    monkeypatch.setattr(driver, "study_enqueue_on_commit", lambda **kw: None)
    yield found


@pytest.fixture
def study_user(transactional_db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def study_market(transactional_db):  # type: ignore[no-untyped-def]
    instrument = InstrumentFactory(symbol="STUDYUSDT")
    add_candles(instrument)
    return instrument


@pytest.fixture
def study_strategy(study_user, study_market):  # type: ignore[no-untyped-def]
    return StrategyFactory(
        owner=study_user,
        instrument=study_market,
        kind="sma_cross",
        parameters={"fast": 5, "slow": 20},
    )


SPACE = {"fast": {"low": 2, "high": 10}, "slow": {"low": 12, "high": 40, "step": 4}}


def submit(strategy, **extra: Any) -> Study:  # type: ignore[no-untyped-def]
    arguments: dict[str, Any] = {
        "user": strategy.owner,
        "strategy": strategy,
        "start": T0,
        "end": END,
        "sampler": "tpe",
        "n_trials": 12,
        "search_space": SPACE,
        "parallelism": 2,
        "seed": 3,
        **extra,
    }
    return services.study_submit(**arguments)


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
