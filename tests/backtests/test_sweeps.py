"""Sweeps: a chord of run_sweep chunks, cached combinations skipped, best combination chosen."""

from __future__ import annotations

import pytest

from backtests import services
from backtests.models import RunStatus, Sweep
from tests.backtests.conftest import END, T0

pytestmark = pytest.mark.django_db

URL = "/api/v1/sweeps/"
GRID = {"fast": [3, 5, 8], "slow": [20, 30]}


def post(api_client, strategy, **extra):  # type: ignore[no-untyped-def]
    payload = {
        "strategy": strategy.pk,
        "start": T0.isoformat(),
        "end": END.isoformat(),
        "grid": GRID,
        "rank_metric": "return_pct",
        **extra,
    }
    return api_client.post(URL, payload, format="json")


def test_a_sweep_runs_every_combination_and_picks_the_best(
    api_client, strategy, eager_celery, django_capture_on_commit_callbacks, settings
) -> None:
    settings.SWEEP_CHUNK_SIZE = 2
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, strategy)
    assert response.status_code == 201, response.json()
    sweep = api_client.get(f"{URL}{response.json()['id']}/").json()
    assert sweep["status"] == "succeeded", sweep["error"]
    assert sweep["combinations_total"] == sweep["combinations_done"] == 6
    returns = [row["metrics"]["return_pct"] for row in sweep["results"]]
    assert returns == sorted(returns, reverse=True)
    assert sweep["best_value"] == returns[0]
    assert sweep["best_parameters"] == sweep["results"][0]["params"]


def test_cached_combinations_are_skipped(
    api_client, strategy, eager_celery, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, strategy)
    with django_capture_on_commit_callbacks(execute=True):
        again = post(api_client, strategy, grid={"fast": [3, 5, 8, 10], "slow": [20, 30]})
    sweep = Sweep.objects.get(pk=again.json()["id"])
    assert sweep.status == RunStatus.SUCCEEDED
    assert (sweep.combinations_total, sweep.combinations_cached) == (8, 6)
    assert sum(row["cached"] for row in sweep.results) == 6


def test_a_single_backtest_result_serves_the_sweep_too(
    user, strategy, eager_celery, django_capture_on_commit_callbacks
) -> None:
    run = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, overrides={"parameters": {"fast": 3}}
    )
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = services.sweep_submit(
            user=user, strategy=strategy, start=T0, end=END, grid={"fast": [3], "slow": [20]}
        )
    sweep.refresh_from_db()
    assert sweep.combinations_cached == 1


def test_random_samples_draw_from_the_grid(
    api_client, strategy, eager_celery, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, strategy, samples=4)
    sweep = Sweep.objects.get(pk=response.json()["id"])
    assert sweep.combinations_total == 4 and len(sweep.results) == 4


def test_a_bad_grid_is_a_400(api_client, strategy) -> None:
    response = post(api_client, strategy, grid={"fast": [30], "slow": [20]})
    assert response.status_code == 400 and "grid" in response.json()
    response = post(api_client, strategy, grid={"nope": [1]})
    assert response.status_code == 400 and "nope" in response.json()["grid"]
    response = post(api_client, strategy, rank_metric="luck")
    assert response.status_code == 400 and "rank_metric" in response.json()
