"""run_backtest end to end: shape of the result and agreement with a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from backtests.engine import ENGINE_VERSION, TRADE_COLUMNS, BacktestConfig, run_backtest
from strategies.library.base import StrategyRef
from tests.backtests.engine.bars import random_walk
from tests.backtests.engine.reference import reference_run


@pytest.mark.parametrize(
    "config",
    [
        BacktestConfig(),
        BacktestConfig(allow_short=True, slippage_bps=3, size_fraction=0.7),
        BacktestConfig(allow_short=True, stop_loss_pct=0.4, take_profit_pct=0.6),
        BacktestConfig(fee_rate=0.0005, stop_loss_pct=0.3),
        # Order by order: fees per fill, steps, other sizing modes.
        BacktestConfig(allow_short=True, fixed_fee=0.5, min_fee=3.0, quantity_step=0.01),
        BacktestConfig(sizing="fixed_notional", fixed_notional=4_000, min_notional=10),
        BacktestConfig(allow_short=True, sizing="risk", risk_pct=2, stop_loss_pct=0.4),
    ],
)
@pytest.mark.parametrize("kind", ["sma_cross", "rsi_reversion", "bollinger_reversion"])
def test_engine_matches_a_bar_by_bar_loop(kind, config):
    candles = random_walk(3_000, seed=21)
    from strategies.library.registry import get_kind

    target = get_kind(kind).target_positions(candles, {})
    result = run_backtest(candles, StrategyRef(kind, {}), config)
    expected = reference_run(candles, target, config)
    assert np.allclose(result.equity.to_numpy(), expected.equity, rtol=1e-10)
    closed = result.trades[~result.trades.is_open]
    assert closed.exit_reason.tolist() == [why for why, _ in expected.exits]
    # A resized trade reports the mean of its exits; these trades are never resized.
    assert np.allclose(closed.exit_price.to_numpy(), [px for _, px in expected.exits], rtol=1e-12)


def test_result_shape_and_trade_columns():
    candles = random_walk(2_000, seed=2)
    result = run_backtest(candles, StrategyRef("sma_cross", {"fast": 5, "slow": 30}))
    assert list(result.trades.columns) == TRADE_COLUMNS
    assert result.equity.index.equals(candles.index)
    assert result.drawdown.max() <= 0
    assert result.engine_version == ENGINE_VERSION
    assert result.params == {"fast": 5, "slow": 30} and result.kind == "sma_cross"
    trades = result.trades
    assert (trades.duration == (trades.exit_time - trades.entry_time).dt.total_seconds()).all()
    assert (trades.quantity > 0).all()
    assert result.metrics["num_trades"] == (~trades.is_open).sum()


def test_buy_and_hold_tracks_the_asset_after_its_first_fill():
    candles = random_walk(1_000, seed=8)
    config = BacktestConfig(fee_rate=0.0)
    result = run_backtest(candles, StrategyRef("buy_and_hold", {}), config)
    qty = 10_000 / candles.open.iloc[1]
    assert result.metrics["final_equity"] == pytest.approx(qty * candles.close.iloc[-1])
    assert result.trades.is_open.tolist() == [True]
