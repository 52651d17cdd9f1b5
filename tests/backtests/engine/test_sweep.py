"""Sweeps: one row per valid combination, each equal to its own single backtest."""

from __future__ import annotations

import pytest

from backtests.engine import (
    METRIC_DEFINITIONS,
    BacktestConfig,
    EngineError,
    ParamValidationError,
    expand_grid,
    run_backtest,
    run_sweep,
)
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
