"""Sweeps: a chord of run_sweep chunks, cached combinations skipped, best combination chosen."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from backtests import services
from backtests.engine import EngineError
from backtests.models import RunStatus, Sweep
from backtests.services import sweeps
from marketdata.models import Instrument
from persistence.models import CachedResult
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


@pytest.fixture
def validations(monkeypatch):  # type: ignore[no-untyped-def]
    """The parameters checked against the strategy's rules, each time they are: a grid that
    is built in full has every one of its combinations checked."""
    from strategies.library.base import StrategyKind

    calls: list[dict] = []
    real = StrategyKind.validate

    def counting(self, params):  # type: ignore[no-untyped-def]
        calls.append(dict(params or {}))
        return real(self, params)

    monkeypatch.setattr(StrategyKind, "validate", counting)
    return calls


# 100 x 100 raw combinations, every one of them valid (fast < slow).
WIDE_GRID = {"fast": list(range(2, 102)), "slow": list(range(110, 210))}


def test_a_grid_over_the_cap_is_refused_before_any_combination_is_built(
    api_client, strategy, settings, validations
) -> None:
    settings.SWEEP_MAX_COMBINATIONS = 50
    response = post(api_client, strategy, grid=WIDE_GRID)
    assert response.status_code == 400
    assert response.json() == {
        "grid": ["10000 combinations; at most 50 run in one sweep. Narrow the grid or set samples."]
    }
    assert validations == [strategy.parameters]  # the strategy's own, and no combination
    assert not Sweep.objects.exists()


def test_a_billion_combination_grid_is_refused_at_once(api_client, strategy) -> None:
    values = list(range(1, 1001))
    response = post(api_client, strategy, grid={"fast": values, "slow": values, "extra": values})
    assert response.status_code == 400
    assert response.json()["grid"][0].startswith("1000000000 combinations; at most 5000")


def test_samples_of_a_grid_over_the_cap_are_drawn_without_building_it(
    api_client, strategy, settings, validations, eager_celery, django_capture_on_commit_callbacks
) -> None:
    settings.SWEEP_MAX_COMBINATIONS = 50
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, strategy, grid=WIDE_GRID, samples=7)
    assert response.status_code == 201, response.json()
    sweep = Sweep.objects.get(pk=response.json()["id"])
    assert sweep.status == RunStatus.SUCCEEDED, sweep.error
    drawn = [row["params"] for row in sweep.results]
    assert sweep.combinations_total == len(drawn) == 7
    assert len({(p["fast"], p["slow"]) for p in drawn}) == 7
    assert all(p["fast"] in WIDE_GRID["fast"] and p["slow"] in WIDE_GRID["slow"] for p in drawn)
    # The strategy's own parameters and the 7 drawn (at submit, and again at launch and in
    # the chunks); never the 10,000.
    assert {(p["fast"], p["slow"]) for p in validations} == {
        (strategy.parameters["fast"], strategy.parameters["slow"]),
        *((p["fast"], p["slow"]) for p in drawn),
    }


def test_the_same_sampled_sweep_draws_the_same_combinations(
    user, strategy, settings, eager_celery, django_capture_on_commit_callbacks
) -> None:
    settings.SWEEP_MAX_COMBINATIONS = 50
    drawn = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            sweep = services.sweep_submit(
                user=user, strategy=strategy, start=T0, end=END, grid=WIDE_GRID, samples=5
            )
        sweep.refresh_from_db()
        drawn.append(
            sorted((row["params"]["fast"], row["params"]["slow"]) for row in sweep.results)
        )
    assert drawn[0] == drawn[1] and len(drawn[0]) == 5


def test_more_samples_than_the_cap_from_a_grid_over_it_is_a_400_naming_samples(
    api_client, strategy, settings, validations
) -> None:
    settings.SWEEP_MAX_COMBINATIONS = 50
    response = post(api_client, strategy, grid=WIDE_GRID, samples=51)
    assert response.status_code == 400
    assert response.json() == {
        "samples": [
            "samples is 51, above the cap: at most 50 combinations run in one sweep, and this "
            "grid has 10000. Set samples to 50 or fewer."
        ]
    }
    assert validations == [strategy.parameters]


def test_a_million_samples_are_told_the_cap_and_the_grid_size_not_to_set_samples(
    api_client, strategy
) -> None:
    response = post(api_client, strategy, grid=WIDE_GRID, samples=1_000_000)
    assert response.status_code == 400
    assert response.json() == {
        "samples": [
            "samples is 1000000, above the cap: at most 5000 combinations run in one sweep, "
            "and this grid has 10000. Set samples to 5000 or fewer."
        ]
    }


def test_an_empty_grid_is_called_empty_by_the_api(api_client, strategy) -> None:
    response = post(api_client, strategy, grid={})
    assert response.status_code == 400
    assert response.json() == {
        "grid": ["The grid is empty: give at least one parameter a list of values to try."]
    }
    response = post(api_client, strategy, grid={"fast": []})
    assert response.status_code == 400
    assert response.json() == {
        "grid": {"fast": ["The grid is empty: give this parameter at least one value."]}
    }


def test_a_parameter_without_values_is_called_an_empty_grid_by_the_service(user, strategy) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        services.sweep_submit(
            user=user, strategy=strategy, start=T0, end=END, grid={"fast": [], "slow": [30]}
        )
    assert caught.value.errors == {
        "grid": {"fast": ["The grid is empty: fast has no value to try; give it at least one."]}
    }


def test_samples_of_a_grid_within_the_cap_are_drawn_as_they_always_were(user, strategy) -> None:
    import random

    from backtests.engine import expand_grid
    from persistence.hashing import canonical_json

    sweep = services.sweep_submit(
        user=user, strategy=strategy, start=T0, end=END, grid={"fast": [3, 5, 8, 10]}, samples=3
    )
    expected = random.Random(canonical_json(sweep.grid)).sample(
        expand_grid("sma_cross", sweep.grid), 3
    )
    assert sweep.grid == {"fast": [3, 5, 8, 10], "slow": [20]}
    assert sweeps._sweep_combinations("sma_cross", sweep.grid, 3, canonical_json(sweep.grid)) == (
        expected
    )


def _receive_all(layer, channel):  # type: ignore[no-untyped-def]
    messages = []
    while True:
        try:
            messages.append(async_to_sync(layer.receive)(channel)["payload"])
        except Exception:
            return messages
        if messages[-1]["type"] == "final":
            return messages


def test_chunks_only_compute_and_the_callback_stores_every_row_at_once(
    user, strategy, eager_celery, django_capture_on_commit_callbacks, settings
) -> None:
    settings.SWEEP_CHUNK_SIZE = 2
    stores = []
    real = sweeps.cache_store_many

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        stores.append((Sweep.objects.get().status, len(kwargs["contents"])))
        return real(**kwargs)

    with (
        patch.object(sweeps, "cache_store_many", spy),
        django_capture_on_commit_callbacks(execute=True),
    ):
        sweep = services.sweep_submit(user=user, strategy=strategy, start=T0, end=END, grid=GRID)
    sweep.refresh_from_db()
    assert sweep.status == RunStatus.SUCCEEDED
    # Three chunks ran, but the six rows were stored by the callback, in one call.
    assert stores == [(RunStatus.RUNNING, 6)]
    assert CachedResult.objects.filter(kind=services.SWEEP_ROW_KIND).count() == 6


def test_a_failed_chunk_fails_the_sweep_readably_and_caches_no_row(
    user, strategy, eager_celery, django_capture_on_commit_callbacks, settings, monkeypatch
) -> None:
    settings.SWEEP_CHUNK_SIZE = 2
    real = sweeps.run_sweep
    calls = []

    def second_chunk_breaks(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise EngineError("candle close is NaN in 1 bar(s)")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweeps, "run_sweep", second_chunk_breaks)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = services.sweep_submit(user=user, strategy=strategy, start=T0, end=END, grid=GRID)
    sweep.refresh_from_db()
    assert sweep.status == RunStatus.FAILED
    assert sweep.error == "candle close is NaN in 1 bar(s)"
    assert sweep.best_parameters is None
    assert not CachedResult.objects.filter(kind=services.SWEEP_ROW_KIND).exists()


def test_a_sweep_cancelled_midway_stops_its_chunks_and_stores_nothing(
    user, strategy, eager_celery, django_capture_on_commit_callbacks, settings, monkeypatch
) -> None:
    settings.SWEEP_CHUNK_SIZE = 2
    settings.BACKTEST_PROGRESS_MIN_INTERVAL = 0
    real = sweeps.run_sweep
    ran = []

    def cancel_during_first(candles, kind, combos, config, progress):  # type: ignore[no-untyped-def]
        ran.append(len(combos))

        def on_progress(done: int, total: int) -> None:
            if done == 1:
                services.sweep_cancel(sweep=Sweep.objects.get())
            progress(done, total)

        return real(candles, kind, combos, config, progress=on_progress)

    monkeypatch.setattr(sweeps, "run_sweep", cancel_during_first)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = services.sweep_submit(user=user, strategy=strategy, start=T0, end=END, grid=GRID)
    sweep.refresh_from_db()
    assert sweep.status == RunStatus.CANCELLED
    assert ran == [2], "the later chunks should not have run the engine"
    assert not CachedResult.objects.filter(kind=services.SWEEP_ROW_KIND).exists()


def test_sweep_progress_reaches_the_sweeps_group_without_writing_the_row(
    user, strategy, eager_celery, django_capture_on_commit_callbacks, settings
) -> None:
    settings.SWEEP_CHUNK_SIZE = 2
    settings.BACKTEST_PROGRESS_MIN_INTERVAL = 0
    with django_capture_on_commit_callbacks() as enqueue:
        sweep = services.sweep_submit(user=user, strategy=strategy, start=T0, end=END, grid=GRID)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"sweep.{sweep.pk}", channel)
    with django_capture_on_commit_callbacks(execute=True):
        for callback in enqueue:
            callback()
    messages = _receive_all(layer, channel)
    done = [m["combinations_done"] for m in messages if m["type"] == "progress"]
    assert done == sorted(done) and done[-1] == 6 and len(set(done)) >= 3
    final = messages[-1]
    assert final["type"] == "final" and final["status"] == "succeeded"
    assert final["best_parameters"] is not None
    # A short sweep's chunks never wrote its row: the heartbeat is still the launch's.
    sweep.refresh_from_db()
    assert sweep.heartbeat_at == sweep.started_at


def test_a_sweep_passes_sizing_fees_and_the_calendar_to_the_engine_like_a_single_run(
    user, strategy, market, eager_celery, django_capture_on_commit_callbacks
) -> None:
    Instrument.objects.filter(pk=market.pk).update(asset_class="equity", quantity_step="0.01")
    strategy.instrument.refresh_from_db()
    settings = {"sizing": "fixed_notional", "fixed_notional": "4000", "min_fee": "1"}

    def single(fast: int) -> dict:  # type: ignore[type-arg]
        run = services.backtest_submit(
            user=user,
            strategy=strategy,
            start=T0,
            end=END,
            overrides={**settings, "parameters": {"fast": fast}},
        )
        services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
        run.refresh_from_db()
        return run.metrics

    cached = single(3)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = services.sweep_submit(
            user=user,
            strategy=strategy,
            start=T0,
            end=END,
            grid={"fast": [3, 5], "slow": [20]},
            overrides=settings,
        )
    sweep.refresh_from_db()
    assert sweep.status == RunStatus.SUCCEEDED, sweep.error
    # Same settings, same calendar: the single run's key is the combination's.
    assert sweep.combinations_cached == 1
    rows = {row["params"]["fast"]: row["metrics"] for row in sweep.results}
    assert rows[3] == {name: cached[name] for name in rows[3]}
    computed = single(5)
    assert rows[5] == {name: computed[name] for name in rows[5]}
    assert rows[5]["sharpe"] is not None
