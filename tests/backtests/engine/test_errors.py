"""Bad input raises a typed error with a readable message, never a wrong number."""

from __future__ import annotations

import numpy as np
import pytest

from backtests.engine import (
    BacktestConfig,
    EngineError,
    InsufficientDataError,
    InvalidCandlesError,
    InvalidConfigError,
    ParamValidationError,
    UnknownKindError,
    run_backtest,
)
from strategies.library.base import StrategyRef
from tests.backtests.engine.bars import random_walk

SMA = StrategyRef("sma_cross", {"fast": 5, "slow": 20})


def test_unsorted_timestamps_are_rejected():
    candles = random_walk(100)
    shuffled = candles.iloc[[*range(50), 60, *range(50, 60), *range(61, 100)]]
    with pytest.raises(InvalidCandlesError, match="not sorted"):
        run_backtest(shuffled, SMA)


def test_duplicate_timestamps_are_rejected():
    candles = random_walk(100)
    with pytest.raises(InvalidCandlesError, match="duplicates"):
        run_backtest(candles.iloc[[0, *range(100)]], SMA)


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_nan_prices_are_rejected(column):
    candles = random_walk(100)
    candles.loc[candles.index[40], column] = np.nan
    with pytest.raises(InvalidCandlesError, match=f"{column} is NaN"):
        run_backtest(candles, SMA)


def test_high_below_low_is_rejected():
    candles = random_walk(100)
    row = candles.index[30]
    candles.loc[row, "high"], candles.loc[row, "low"] = candles.loc[row, "low"] - 1, 500.0
    with pytest.raises(InvalidCandlesError, match="high < low"):
        run_backtest(candles, SMA)


def test_open_outside_the_range_is_rejected():
    candles = random_walk(100)
    candles.loc[candles.index[30], "open"] = 1_000.0
    with pytest.raises(InvalidCandlesError, match="outside"):
        run_backtest(candles, SMA)


def test_non_positive_prices_and_naive_timestamps_are_rejected():
    candles = random_walk(100)
    candles.loc[candles.index[3], "low"] = 0.0
    with pytest.raises(InvalidCandlesError, match="zero or negative"):
        run_backtest(candles, SMA)
    with pytest.raises(InvalidCandlesError, match="timezone"):
        run_backtest(random_walk(100).tz_localize(None), SMA)
    with pytest.raises(InvalidCandlesError, match="missing"):
        run_backtest(random_walk(100).drop(columns="close"), SMA)


def test_too_few_bars_for_the_parameters():
    with pytest.raises(InsufficientDataError, match="needs at least 22 candles"):
        run_backtest(random_walk(21), SMA)
    run_backtest(random_walk(22), SMA)


def test_parameters_outside_their_spec():
    with pytest.raises(ParamValidationError) as caught:
        run_backtest(random_walk(100), StrategyRef("sma_cross", {"fast": 30, "slow": 20}))
    assert "fast" in caught.value.errors


def test_unknown_kind():
    with pytest.raises(UnknownKindError, match="unknown strategy kind"):
        run_backtest(random_walk(100), StrategyRef("nope", {}))


@pytest.mark.parametrize(
    "config",
    [
        BacktestConfig(initial_capital=0),
        BacktestConfig(fee_rate=-0.1),
        BacktestConfig(size_fraction=1.5),
        BacktestConfig(stop_loss_pct=0),
        BacktestConfig(take_profit_pct=float("nan")),
        BacktestConfig(timeframe="7m"),
    ],
)
def test_invalid_config(config):
    with pytest.raises(InvalidConfigError):
        run_backtest(random_walk(100), SMA, config)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (BacktestConfig(fixed_fee=-1.0), "fixed_fee"),
        (BacktestConfig(min_fee=float("inf")), "min_fee"),
        (BacktestConfig(min_notional=-5.0), "min_notional"),
        (BacktestConfig(quantity_step=0.0), "quantity_step"),
        (BacktestConfig(quantity_step=-0.1), "quantity_step"),
        (BacktestConfig(sizing="kelly"), "sizing"),
        (BacktestConfig(sizing="fixed_quantity"), "fixed_quantity"),
        (BacktestConfig(sizing="fixed_notional", fixed_notional=0.0), "fixed_notional"),
        (BacktestConfig(sizing="risk", risk_pct=1.0), "stop_loss_pct"),
        (BacktestConfig(sizing="risk", stop_loss_pct=2.0), "risk_pct"),
        (BacktestConfig(sizing="risk", risk_pct=150.0, stop_loss_pct=2.0), "risk_pct"),
        (BacktestConfig(fixed_quantity=3.0), "fixed_quantity"),
        (BacktestConfig(calendar="lunar"), "calendar"),
        (BacktestConfig(trading_days_per_year=0.0), "trading_days_per_year"),
        (BacktestConfig(bars_per_day=-1.0), "bars_per_day"),
        (BacktestConfig(timeframe="1d"), "timeframe"),  # the candles are 1-minute bars
    ],
)
def test_a_bad_setting_names_its_field(config, field):
    with pytest.raises(InvalidConfigError) as caught:
        run_backtest(random_walk(100), SMA, config)
    assert list(caught.value.errors) == [field]
    assert field in str(caught.value)


def test_all_engine_errors_share_a_base_class():
    assert issubclass(InvalidCandlesError, EngineError)
    assert issubclass(InsufficientDataError, EngineError)
