"""Sweeps: one row per valid combination, each equal to its own single backtest."""

from __future__ import annotations

import itertools
import random

import pytest

from backtests.engine import (
    METRIC_DEFINITIONS,
    BacktestConfig,
    EngineError,
    ParamValidationError,
    expand_grid,
    grid_size,
    run_backtest,
    run_sweep,
    sample_grid,
)
from backtests.engine.sweep import grid_combination
from strategies.library.base import StrategyRef
from tests.backtests.engine.bars import random_walk

GRID = {"fast": list(range(5, 46, 5)), "slow": list(range(20, 181, 20))}


def test_expand_grid_keeps_only_combinations_the_spec_allows():
    combos = expand_grid("sma_cross", GRID)
    assert len(combos) == 73
    assert all(c["fast"] < c["slow"] for c in combos)


def test_expand_grid_accepts_a_list_and_drops_duplicates():
    combos = expand_grid("sma_cross", [{"fast": 5}, {"fast": 5, "slow": 50}, {"fast": 60}])
    assert combos == [{"fast": 5, "slow": 50}]


def test_a_grids_size_is_counted_without_building_it():
    values = list(range(1, 1001))
    assert grid_size(GRID) == 81
    assert grid_size({"fast": values, "slow": values, "extra": values}) == 10**9
    assert grid_size([{"fast": 5}, {"fast": 6}]) == 2
    with pytest.raises(ParamValidationError):
        grid_size({"fast": "5"})


def test_a_combination_is_read_by_its_index_in_product_order():
    grid = {"fast": [5, 10, 15], "slow": [20, 40], "x": ["a", "b", "c", "d"]}
    product = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    assert [grid_combination(grid, i) for i in range(grid_size(grid))] == product


def test_sampling_a_small_grid_is_random_sample_of_its_expansion():
    # What sweeps always drew for grids up to the threshold, unchanged.
    drawn = sample_grid("sma_cross", GRID, 10, "seed")
    assert drawn == random.Random("seed").sample(expand_grid("sma_cross", GRID), 10)
    assert sample_grid("sma_cross", GRID, 500, "seed") == expand_grid("sma_cross", GRID)


def test_sampling_a_large_grid_draws_valid_distinct_combinations_deterministically():
    grid = {"fast": list(range(1, 201)), "slow": list(range(1, 201))}  # about half valid
    drawn = sample_grid("sma_cross", grid, 50, "seed", by_index_above=100)
    assert len(drawn) == 50
    assert len({(c["fast"], c["slow"]) for c in drawn}) == 50
    assert all(c["fast"] < c["slow"] for c in drawn)
    assert drawn == sample_grid("sma_cross", grid, 50, "seed", by_index_above=100)
    assert drawn != sample_grid("sma_cross", grid, 50, "other seed", by_index_above=100)


def test_sampling_a_large_grid_can_draw_all_of_it():
    grid = {"fast": list(range(1, 21)), "slow": list(range(21, 41))}
    drawn = sample_grid("sma_cross", grid, 400, 1, by_index_above=10)
    assert sorted((c["fast"], c["slow"]) for c in drawn) == sorted(
        (c["fast"], c["slow"]) for c in expand_grid("sma_cross", grid)
    )


def test_sampling_a_grid_the_rules_cut_to_one_combination_gives_that_one():
    grid = {"fast": [5] * 100, "slow": [20] * 100}  # 10,000 raw, one distinct
    assert sample_grid("sma_cross", grid, 5, "seed", by_index_above=100) == [
        {"fast": 5, "slow": 20}
    ]


def test_sampling_a_huge_grid_costs_the_sample_not_the_grid():
    values = list(range(1, 1001))
    drawn = sample_grid("sma_cross", {"fast": values, "slow": values}, 20, "seed")
    assert len(drawn) == 20 and all(c["fast"] < c["slow"] for c in drawn)
    with pytest.raises(ParamValidationError):
        sample_grid("sma_cross", {"fast": values, "slow": values, "extra": values}, 3, "seed")


def test_each_sweep_row_equals_the_single_backtest():
    candles = random_walk(5_000, seed=5)
    config = BacktestConfig(allow_short=True)
    sweep = run_sweep(candles, "sma_cross", {"fast": [5, 10], "slow": [10, 30]}, config)
    assert len(sweep) == 3  # (10, 10) breaks fast < slow
    assert sweep.attrs["skipped"][0]["params"] == {"fast": 10, "slow": 10}
    assert list(sweep.columns) == ["fast", "slow", *METRIC_DEFINITIONS]
    for row in sweep.to_dict("records"):
        params = {"fast": row["fast"], "slow": row["slow"]}
        single = run_backtest(candles, StrategyRef("sma_cross", params), config).metrics
        for key, value in single.items():
            assert row[key] == value or (row[key] != row[key] and value is None), key


def test_sweep_skips_combinations_that_need_more_bars():
    sweep = run_sweep(random_walk(100), "sma_cross", {"fast": [5], "slow": [20, 200]})
    assert sweep.slow.tolist() == [20]
    assert "candles" in sweep.attrs["skipped"][0]["errors"]


def test_sweep_reports_progress_per_combination():
    calls = []
    run_sweep(
        random_walk(500),
        "ema_cross",
        {"fast": [3, 5], "slow": [8, 13]},
        None,
        lambda done, total: calls.append((done, total)),
    )
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_unknown_grid_parameter_fails_the_whole_sweep():
    with pytest.raises(ParamValidationError):
        run_sweep(random_walk(500), "sma_cross", {"fats": [5]})


def test_a_grid_with_no_valid_combination_fails():
    with pytest.raises(EngineError, match="no runnable combination"):
        run_sweep(random_walk(500), "sma_cross", {"fast": [50], "slow": [20]})
