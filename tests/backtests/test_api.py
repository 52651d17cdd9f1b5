"""The backtest REST API over real HTTP calls through DRF's test client."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from openpyxl import load_workbook

from backtests import services
from backtests.models import BacktestRun, Sweep
from persistence.models import Artifact
from tests.backtests.conftest import END, T0
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/backtests/"


def body(strategy, **extra):  # type: ignore[no-untyped-def]
    return {"strategy": strategy.pk, "start": T0.isoformat(), "end": END.isoformat(), **extra}


def run_to_completion(api_client, strategy, **extra) -> dict:  # type: ignore[no-untyped-def]
    response = api_client.post(URL, body(strategy, **extra), format="json")
    assert response.status_code == 201, response.json()
    run = BacktestRun.objects.get(pk=response.json()["id"])
    if run.status == "queued":
        services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    return api_client.get(f"{URL}{run.pk}/").json()


def test_submit_returns_201_with_cache_hit_and_params_hash(api_client, strategy) -> None:
    response = api_client.post(URL, body(strategy), format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "queued"
    assert data["cache_hit"] is False
    assert len(data["params_hash"]) == 64
    assert data["websocket"] == f"/ws/backtests/{data['id']}/"


def test_the_same_request_again_is_a_cache_hit(api_client, strategy) -> None:
    first = run_to_completion(api_client, strategy)
    second = api_client.post(URL, body(strategy), format="json").json()
    assert second["cache_hit"] is True
    assert second["status"] == "succeeded"
    assert second["params_hash"] == first["params_hash"]
    assert second["headline_metrics"] == first["headline_metrics"]


def test_invalid_parameters_are_a_400_naming_field_and_rule(api_client, strategy) -> None:
    response = api_client.post(
        URL, body(strategy, parameters={"fast": 0, "bogus": 1}), format="json"
    )
    assert response.status_code == 400
    errors = response.json()["parameters"]
    assert errors["fast"] == ["Must be at least 1."]
    assert "Unknown parameter" in errors["bogus"][0]


def test_another_users_run_is_a_404_and_their_strategy_a_400(
    api_client, other_user, strategy, market
) -> None:
    from rest_framework.test import APIClient

    theirs = APIClient()
    theirs.force_authenticate(other_user)
    run = theirs.post(
        URL, body(StrategyFactory(owner=other_user, instrument=market)), format="json"
    )
    run_id = run.json()["id"]
    assert api_client.get(f"{URL}{run_id}/").status_code == 404
    assert api_client.post(f"{URL}{run_id}/cancel/").status_code == 404
    assert api_client.get(f"{URL}{run_id}/trades/").status_code == 404
    as_csv = api_client.get(f"{URL}{run_id}/equity/", {"format": "csv"})
    assert as_csv.status_code == 404 and as_csv.json() == {"detail": "No such backtest run."}
    assert run_id not in [r["id"] for r in api_client.get(URL).json()["results"]]
    foreign = api_client.post(URL, body(StrategyFactory(owner=other_user, instrument=market)))
    assert foreign.status_code == 400 and "strategy" in foreign.json()


def test_staff_see_every_run(api_client, staff_client, strategy) -> None:
    api_client.post(URL, body(strategy), format="json")
    assert len(staff_client.get(URL).json()["results"]) == 1


def test_staff_may_backtest_and_sweep_any_users_strategy(staff_client, strategy) -> None:
    run = staff_client.post(URL, body(strategy), format="json")
    assert run.status_code == 201, run.json()
    assert run.json()["strategy"] == strategy.pk
    sweep = staff_client.post(
        "/api/v1/sweeps/", body(strategy, grid={"fast": [5, 8]}), format="json"
    )
    assert sweep.status_code == 201, sweep.json()


def test_the_list_filters_and_orders_by_a_headline_metric(api_client, strategy) -> None:
    run_to_completion(api_client, strategy)
    run_to_completion(api_client, strategy, parameters={"fast": 8, "slow": 40})
    api_client.post(URL, body(strategy, parameters={"fast": 3, "slow": 30}), format="json")
    listed = api_client.get(URL, {"status": "succeeded", "ordering": "-return_pct"}).json()
    returns = [r["headline_metrics"]["return_pct"] for r in listed["results"]]
    assert len(returns) == 2 and returns == sorted(returns, reverse=True)

    def listed_count(**params: str) -> int:
        return len(api_client.get(URL, params).json()["results"])

    assert listed_count(symbol="btcusdt", kind="sma_cross") == 3
    assert listed_count(symbol="ETHUSDT") == 0
    assert listed_count(created_after="2100-01-01T00:00:00Z") == 0
    assert listed_count(limit="100000") == 3
    bogus = api_client.get(URL, {"ordering": "bogus"})
    assert bogus.status_code == 400 and "ordering" in bogus.json()


def _runs(strategy, count: int, metrics=lambda i: {}) -> list[int]:  # type: ignore[no-untyped-def]
    runs = BacktestRun.objects.bulk_create(
        BacktestRun(
            owner=strategy.owner,
            strategy=strategy,
            kind=strategy.kind,
            instrument=strategy.instrument,
            timeframe="1h",
            start=T0,
            end=END,
            initial_capital=10_000,
            fee_rate=0,
            params_hash=f"{i:064d}",
            metrics=metrics(i),
        )
        for i in range(count)
    )
    return [run.pk for run in runs]


@pytest.mark.parametrize(
    ("query", "listed"),
    [
        ("created_after=9999-12-31T23:59:59-05:00", 0),  # past the last instant in UTC
        ("created_before=9999-12-31T23:59:59-05:00", 2),
        ("created_after=0001-01-01T00:00:00%2B01:00", 2),  # before the first one
        ("created_before=0001-01-01T00:00:00%2B01:00", 0),
    ],
)
def test_a_created_bound_past_either_end_of_the_calendar_is_that_end(
    api_client, strategy, query, listed
) -> None:
    _runs(strategy, 2)
    response = api_client.get(f"{URL}?{query}")
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == listed


def test_the_run_list_is_cursor_paginated_100_by_default_and_at_most_1000(
    api_client, strategy
) -> None:
    ids = _runs(strategy, 1001)
    first = api_client.get(URL).json()
    assert "count" not in first and first["previous"] is None
    assert len(first["results"]) == 100
    second = api_client.get(first["next"]).json()
    assert len(second["results"]) == 100
    newest_first = list(
        BacktestRun.objects.filter(pk__in=ids)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[:200]
    )
    assert [r["id"] for r in first["results"] + second["results"]] == newest_first
    capped = api_client.get(URL, {"limit": 100000}).json()
    assert len(capped["results"]) == 1000 and capped["next"] is not None
    rest = api_client.get(capped["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    for bad in ("0", "-1", "abc"):
        response = api_client.get(URL, {"limit": bad})
        assert response.status_code == 400 and "limit" in response.json()


def test_metric_ordering_pages_by_cursor_with_runs_lacking_the_metric_last(
    api_client, strategy
) -> None:
    returns = [3.5, -1.0, 10.0, 9.0, 3.5, 0.0]
    ids = _runs(
        strategy,
        len(returns) + 2,
        lambda i: {"return_pct": returns[i]} if i < len(returns) else {},
    )
    without = set(ids[len(returns) :])

    def every_page(ordering: str) -> list[dict]:  # type: ignore[type-arg]
        rows, url, params = [], URL, {"ordering": ordering, "limit": 2}
        while url:
            page = api_client.get(url, params).json()
            rows += page["results"]
            url, params = page["next"], {}
        return rows

    descending = every_page("-return_pct")
    assert [r["metrics"].get("return_pct") for r in descending] == [
        10.0, 9.0, 3.5, 3.5, 0.0, -1.0, None, None
    ]  # fmt: skip
    ascending = every_page("return_pct")
    assert [r["metrics"].get("return_pct") for r in ascending] == [
        -1.0, 0.0, 3.5, 3.5, 9.0, 10.0, None, None
    ]  # fmt: skip
    for rows in (descending, ascending):
        assert sorted(r["id"] for r in rows) == sorted(ids)
        assert {r["id"] for r in rows[-2:]} == without


def test_trades_are_paginated_and_filterable(api_client, strategy) -> None:
    run = run_to_completion(api_client, strategy)
    trades = api_client.get(f"{URL}{run['id']}/trades/", {"limit": 1000}).json()
    assert len(trades["results"]) > 2 and trades["next"] is None
    first = api_client.get(f"{URL}{run['id']}/trades/", {"limit": 2}).json()
    assert first["results"] == trades["results"][:2]
    second = api_client.get(first["next"]).json()
    assert second["results"] == trades["results"][2:4]
    winners = api_client.get(f"{URL}{run['id']}/trades/", {"pnl_sign": "positive"}).json()
    assert winners["results"] and all(t["pnl"] > 0 for t in winners["results"])
    shorts = api_client.get(f"{URL}{run['id']}/trades/", {"direction": "short"}).json()
    longs = api_client.get(f"{URL}{run['id']}/trades/", {"direction": "long"}).json()
    assert all(t["direction"] == "short" for t in shorts["results"])
    assert len(shorts["results"]) + len(longs["results"]) == len(trades["results"])
    by_reason = api_client.get(f"{URL}{run['id']}/trades/", {"exit_reason": "signal"}).json()
    assert all(t["exit_reason"] == "signal" for t in by_reason["results"])


def test_equity_comes_as_json_csv_or_parquet(api_client, strategy) -> None:
    run = run_to_completion(api_client, strategy)
    url = f"{URL}{run['id']}/equity/"
    as_json = api_client.get(url).json()
    assert len(as_json["equity"]) == len(as_json["ts"]) == 600
    as_csv = api_client.get(url, {"format": "csv"})
    assert as_csv.status_code == 200 and as_csv["Content-Type"] == "text/csv"
    assert as_csv.content.decode().splitlines()[0] == "ts,equity,drawdown"
    as_parquet = api_client.get(url, {"format": "parquet"})
    frame = pd.read_parquet(io.BytesIO(as_parquet.content))
    assert len(frame) == 600 and frame["equity"].iloc[-1] == pytest.approx(as_json["equity"][-1])


def test_the_xlsx_export_has_three_sheets_and_is_kept_as_an_artifact(api_client, strategy) -> None:
    run = run_to_completion(api_client, strategy)
    response = api_client.get(f"{URL}{run['id']}/export/", {"format": "xlsx"})
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    assert book.sheetnames == ["metrics", "trades", "equity"]
    assert sum(1 for _ in book["equity"].iter_rows()) == 601
    assert Artifact.objects.filter(name="export.xlsx").count() == 1
    again = api_client.get(f"{URL}{run['id']}/export/")
    assert again.content == response.content
    assert Artifact.objects.filter(name="export.xlsx").count() == 1
    csv = api_client.get(f"{URL}{run['id']}/export/", {"format": "csv"})
    assert csv.content.decode().startswith("direction,entry_time")


def test_export_of_an_unfinished_run_is_a_conflict(api_client, strategy) -> None:
    run = api_client.post(URL, body(strategy), format="json").json()
    for wanted in ("xlsx", "csv"):
        response = api_client.get(f"{URL}{run['id']}/export/", {"format": wanted})
        assert response.status_code == 409
        assert "has no results" in response.json()["detail"]


def test_cancel_then_cancel_again_is_a_conflict(api_client, strategy) -> None:
    run = api_client.post(URL, body(strategy), format="json").json()
    cancelled = api_client.post(f"{URL}{run['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api_client.post(f"{URL}{run['id']}/cancel/")
    assert again.status_code == 409
    assert again.json() == {"detail": f"Run {run['id']} has already cancelled."}


def test_a_sweep_grid_error_is_a_400_naming_the_field(api_client, strategy) -> None:
    response = api_client.post(
        "/api/v1/sweeps/", body(strategy, grid={"bogus": [1, 2]}), format="json"
    )
    assert response.status_code == 400
    assert "bogus" in str(response.json()["grid"])


def test_strategy_kinds_list_every_kind_with_its_spec(api_client) -> None:
    kinds = {k["name"]: k for k in api_client.get("/api/v1/strategies/kinds/").json()}
    assert "sma_cross" in kinds
    fast = next(p for p in kinds["sma_cross"]["params"] if p["name"] == "fast")
    assert fast["type"] == "int" and fast["min"] == 1


def test_cache_stats_report_hits(api_client, strategy) -> None:
    run_to_completion(api_client, strategy)
    api_client.post(URL, body(strategy), format="json")
    stats = api_client.get("/api/v1/cache/stats/").json()
    assert stats["cache"]["by_kind"]["backtest"]["hits"] == 1
    assert stats["runs"]["cache_hits"] == 1


def test_anonymous_requests_are_refused(client) -> None:
    assert client.get(URL).status_code in (401, 403)


def test_the_schema_describes_the_backtest_api(api_client) -> None:
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    for path in (
        "/api/v1/backtests/",
        "/api/v1/backtests/{id}/cancel/",
        "/api/v1/backtests/{id}/trades/",
        "/api/v1/backtests/{id}/equity/",
        "/api/v1/backtests/{id}/export/",
        "/api/v1/sweeps/",
        "/api/v1/sweeps/{id}/",
        "/api/v1/strategies/kinds/",
    ):
        assert path in schema["paths"], path
    assert api_client.get("/api/docs/").status_code == 200


def test_health_reports_cache_size_and_hit_rate(client, api_client, strategy) -> None:
    run_to_completion(api_client, strategy)
    api_client.post(URL, body(strategy), format="json")
    cache = client.get("/health").json()["cache"]
    assert cache["entries"] >= 2  # the backtest result and the candle copy
    assert cache["hits"] >= 1 and cache["size_bytes"] > 0


def test_a_backtest_takes_sizing_and_fees_per_fill(api_client, strategy) -> None:
    extra = {"sizing": "fixed_notional", "fixed_notional": "2500", "fixed_fee": "0.5"}
    response = api_client.post(URL, body(strategy, **extra), format="json")
    assert response.status_code == 201, response.json()
    run = BacktestRun.objects.get(pk=response.json()["id"])
    assert (run.sizing, run.fixed_notional, run.fixed_fee, run.min_fee) == (
        "fixed_notional",
        2500,
        0.5,
        0,
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sizing": "risk", "risk_pct": "1"}, "stop_loss_pct"),
        ({"sizing": "leverage"}, "sizing"),
        ({"fixed_fee": "-0.5"}, "fixed_fee"),
        ({"min_fee": "lots"}, "min_fee"),
        ({"sizing": "fixed_quantity", "fixed_quantity": None}, "fixed_quantity"),
        ({"risk_pct": "2"}, "risk_pct"),
    ],
)
def test_bad_sizing_or_fees_are_a_400_naming_the_field(api_client, strategy, extra, field) -> None:
    response = api_client.post(URL, body(strategy, **extra), format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_a_sweep_takes_sizing_and_refuses_risk_without_a_stop(api_client, strategy) -> None:
    grid = {"fast": [3, 5]}
    ok = api_client.post(
        "/api/v1/sweeps/",
        body(strategy, grid=grid, sizing="risk", risk_pct="1", stop_loss_pct="2"),
        format="json",
    )
    assert ok.status_code == 201, ok.json()
    stored = Sweep.objects.get(pk=ok.json()["id"])
    assert (stored.sizing, stored.risk_pct, stored.stop_loss_pct) == ("risk", 1, 2)
    refused = api_client.post(
        "/api/v1/sweeps/", body(strategy, grid=grid, sizing="risk", risk_pct="1"), format="json"
    )
    assert refused.status_code == 400 and "stop_loss_pct" in refused.json()


def test_a_backtest_takes_execution_options_and_shows_them(api_client, strategy) -> None:
    extra = {"entry_order": "stop", "entry_offset_pct": "0.1", "time_stop_bars": 12}
    response = api_client.post(URL, body(strategy, **extra), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["execution"] == {
        "entry_order": "stop",
        "entry_offset_pct": "0.1",
        "time_stop_bars": 12,
    }
    bad = api_client.post(URL, body(strategy, entry_order="limit"), format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["entry_offset_pct"]
    bad = api_client.post(URL, body(strategy, max_leverage="0"), format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["max_leverage"]
