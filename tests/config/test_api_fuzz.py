"""Fuzzing the API against its own OpenAPI schema: no request an ordinary user can send gets
a 5xx, and every answer is one the schema describes (status, content type, body, headers).

Schemathesis generates valid and invalid requests for every operation of the schema and
sends them to the app in-process (WSGI) with the user's JWT. The user owns a few rows for
generated ids to find (a strategy, orders, fills, trades, a finished backtest, a sweep), and
so does another user.

The generation is derandomised, so every run sends the same requests and a failure
reproduces. To search further: API_FUZZ_EXAMPLES=100 tries more examples per operation, and
API_FUZZ_COVERAGE=1 adds schemathesis' coverage phase (every boundary and type the schema
implies; it doubles the run's time).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backtests import services as backtest_services
from tests.backtests.conftest import END, T0, add_candles
from tests.factories import InstrumentFactory, StrategyFactory
from tests.trading.conftest import trade

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))
PHASES = ["examples", "fuzzing"] + (["coverage"] if os.environ.get("API_FUZZ_COVERAGE") else [])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Loaded when the module is collected: the schema endpoint reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
schema.config.generation.update(max_examples=EXAMPLES)
schema.config.phases.update(phases=PHASES)


@pytest.fixture(autouse=True)
def connections_kept_open():  # type: ignore[no-untyped-def]
    """Calls into the WSGI app end with request_finished, whose close_old_connections closes
    a connection in a transaction it did not open: on PostgreSQL, the test's own. Django's
    test client holds it off the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def ledger_rows(user, other_user):  # type: ignore[no-untyped-def]
    instrument = InstrumentFactory(symbol="BTCUSDT")
    add_candles(instrument)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, kind="sma_cross", parameters={"fast": 5, "slow": 20}
    )
    StrategyFactory(owner=other_user, instrument=instrument)
    trade(user, instrument, "buy", "1", "100", strategy=strategy)
    trade(user, instrument, "sell", "2", "110")
    trade(other_user, instrument, "buy", "1", "100")
    run = backtest_services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, enqueue=False
    )
    backtest_services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    backtest_services.sweep_submit(
        user=user, strategy=strategy, start=T0, end=END, grid={"fast": [3, 5]}
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,  # nothing written under .hypothesis/
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error_or_an_answer_the_schema_does_not_describe(
    case: Any,
    user,  # type: ignore[no-untyped-def]
    ledger_rows,
) -> None:
    token = AccessToken.for_user(user)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
