"""Three instruments with hourly random walks (one starting later), and helpers to submit
and execute portfolio runs over them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from marketdata.models import Instrument
from portfolios import services
from portfolios.models import PortfolioRun
from tests.backtests.conftest import BARS, END, T0, add_candles
from tests.factories import InstrumentFactory

SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT")


@pytest.fixture
def basket(db):  # type: ignore[no-untyped-def]
    """Three instruments; the last one's candles start 24 bars later than the others'."""
    instruments = []
    for seed, symbol in enumerate(SYMBOLS, start=11):
        instrument = InstrumentFactory(symbol=symbol)
        add_candles(instrument, bars=BARS, seed=seed)
        instruments.append(instrument)
    instruments[2].candles.filter(ts__lt=T0 + timedelta(hours=24)).delete()
    return instruments


def request(**changes: Any) -> dict[str, Any]:
    """A valid submission over the basket; `changes` override its fields."""
    values: dict[str, Any] = {
        "name": "three coins",
        "kind": "sma_cross",
        "parameters": {"fast": 5, "slow": 20},
        "instruments": list(SYMBOLS),
        "timeframe": "1h",
        "start": T0,
        "end": END,
    }
    values.update(changes)
    return values


def submit(user, **changes: Any) -> PortfolioRun:  # type: ignore[no-untyped-def]
    return services.portfolio_submit(user=user, **request(**changes))


def execute(run: PortfolioRun) -> PortfolioRun:
    services.portfolio_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    return run


def instruments_of(run: PortfolioRun) -> list[Instrument]:
    return [m.instrument for m in run.members.select_related("instrument").order_by("position")]
