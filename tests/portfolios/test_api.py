"""The portfolio API through real HTTP requests: create, list, detail, trades, equity, the
400s per field, 404s for other users' runs, and the endpoints in the OpenAPI schema."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from backtests.selectors import curve_thin
from portfolios import selectors
from portfolios.models import PortfolioRun
from tests.backtests.conftest import END, T0
from tests.portfolios.conftest import SYMBOLS, execute, submit

pytestmark = pytest.mark.django_db

URL = "/api/v1/portfolios/"


def body(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "three coins",
        "kind": "sma_cross",
        "parameters": {"fast": 5, "slow": 20},
        "instruments": list(SYMBOLS),
        "timeframe": "1h",
        "start": T0.isoformat(),
        "end": END.isoformat(),
    }
    values.update(changes)
    return values


@pytest.fixture
def finished(user, basket) -> PortfolioRun:  # type: ignore[no-untyped-def]
    return execute(submit(user))


def test_create_queues_a_run_and_answers_201(
    api_client, basket, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post(URL, body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["cache_hit"] is False
    assert data["instruments"] == list(SYMBOLS)
    assert data["initial_capital"] == "10000.00"  # money as a string
    assert len(callbacks) == 1
    assert PortfolioRun.objects.get(pk=data["id"]).params_hash == data["params_hash"]


def test_create_with_a_cached_result_is_a_succeeded_cache_hit(api_client, finished) -> None:
    response = api_client.post(URL, body(name="again"), format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["cache_hit"] is True and data["status"] == "succeeded"
    assert data["shared_from"] == finished.pk
    assert data["metrics"]["final_equity"] == finished.metrics["final_equity"]


def test_create_runs_through_the_celery_task(
    api_client, basket, django_capture_on_commit_callbacks
) -> None:
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_client.post(URL, body(), format="json")
    finally:
        app.conf.task_always_eager = previous
    run = PortfolioRun.objects.get(pk=response.json()["id"])
    assert run.status == "succeeded", run.error


def test_list_shows_only_the_callers_runs_paginated(api_client, user, other_user, basket) -> None:
    mine = [submit(user), submit(user, name="two", allocation="signal")]
    submit(other_user)
    page = api_client.get(URL, {"limit": 1}).json()
    assert len(page["results"]) == 1 and page["next"]
    second = api_client.get(page["next"]).json()
    ids = {page["results"][0]["id"], second["results"][0]["id"]}
    assert ids == {run.pk for run in mine}
    assert second["next"] is None
    signal = api_client.get(URL, {"allocation": "signal"}).json()["results"]
    assert [r["id"] for r in signal] == [mine[1].pk]


def test_detail_has_metrics_and_a_row_per_instrument(api_client, finished) -> None:
    data = api_client.get(f"{URL}{finished.pk}/").json()
    assert data["status"] == "succeeded"
    assert "per_instrument" not in data["metrics"]
    assert data["metrics"]["num_trades"] == finished.metrics["num_trades"]
    rows = data["per_instrument"]
    assert [row["instrument"] for row in rows] == list(SYMBOLS)
    stored = finished.metrics["per_instrument"]
    for row, expected in zip(rows, stored, strict=True):
        for key in ("contribution", "exposure_pct", "turnover", "missing_bars"):
            assert row[key] == expected[key]
    # The contributions add up to the run's profit.
    total = sum(row["contribution"] for row in rows)
    final = selectors.equity_frame(finished)["equity"].iloc[-1]
    assert total == pytest.approx(final - float(finished.initial_capital), rel=1e-9)


def test_trades_are_paginated_and_filter_by_instrument(api_client, finished) -> None:
    every = selectors.portfolio_trades(run=finished)
    page = api_client.get(f"{URL}{finished.pk}/trades/", {"limit": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert isinstance(first["pnl"], str) and Decimal(first["pnl"]) == every.first().pnl
    symbol = SYMBOLS[1]
    own = api_client.get(f"{URL}{finished.pk}/trades/", {"instrument": symbol, "limit": 1000})
    results = own.json()["results"]
    assert {t["instrument"] for t in results} == {symbol}
    assert len(results) == every.filter(instrument__symbol=symbol).count() > 0


def test_equity_is_thinned_to_at_most_max_points(api_client, finished) -> None:
    frame = selectors.equity_frame(finished)
    data = api_client.get(f"{URL}{finished.pk}/equity/", {"max_points": 50}).json()
    expected = curve_thin(frame, max_points=50)
    assert data["points"] == len(data["ts"]) == len(expected) <= 50
    assert data["total_points"] == len(frame)
    assert data["equity"][-1] == frame["equity"].iloc[-1]
    assert data["drawdown"] == expected["drawdown"].tolist()
    full = api_client.get(f"{URL}{finished.pk}/equity/").json()
    assert full["points"] == len(frame)
    assert api_client.get(f"{URL}{finished.pk}/equity/", {"max_points": 1}).status_code == 400


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instruments": ["AAAUSDT", "NOPE"]}, "instruments"),
        ({"instruments": ["AAAUSDT"]}, "instruments"),
        ({"allocation": "fixed", "weights": {"AAAUSDT": 0.5, "ZZZ": 0.2}}, "weights"),
        ({"allocation": "fixed", "weights": {"AAAUSDT": 0.7, "BBBUSDT": 0.6}}, "weights"),
        ({"weights": {"AAAUSDT": 0.5}}, "weights"),
        ({"start": END.isoformat(), "end": T0.isoformat()}, "end"),
        ({"start": "yesterday"}, "start"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"parameters": {"fast": 30, "slow": 20}}, "parameters"),
        ({"allocation": "best"}, "allocation"),
        ({"rebalance": "hourly"}, "rebalance"),
        ({"max_positions": 0}, "max_positions"),
        ({"drift_threshold": "1.5"}, "drift_threshold"),
        ({"fee_rate": "-0.1"}, "fee_rate"),
        ({"timeframe": "7h"}, "timeframe"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(
    api_client, basket, changes, field
) -> None:
    response = api_client.post(URL, body(**changes), format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not PortfolioRun.objects.exists()


def test_another_users_run_is_a_404_everywhere(other_user, finished) -> None:
    client = APIClient()
    client.force_authenticate(other_user)
    for suffix in ("", "trades/", "equity/"):
        assert client.get(f"{URL}{finished.pk}/{suffix}").status_code == 404
    assert client.get(URL).json()["results"] == []


def test_anonymous_requests_are_refused(finished) -> None:
    assert APIClient().get(URL).status_code == 401


def test_the_schema_documents_every_endpoint(api_client) -> None:
    paths = api_client.get("/api/schema/?format=json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/portfolios/"])
    for path in ("{id}/", "{id}/trades/", "{id}/equity/"):
        assert "get" in paths[f"/api/v1/portfolios/{path}"]
    create = paths["/api/v1/portfolios/"]["post"]
    assert "201" in create["responses"] and "400" in create["responses"]
