"""run_backtest end to end: shape of the result and agreement with a plain loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtests.engine import ENGINE_VERSION, TRADE_COLUMNS, BacktestConfig, run_backtest
from strategies.library.base import StrategyRef
from tests.backtests.engine.bars import random_walk


def reference_loop(candles: pd.DataFrame, target: np.ndarray, config: BacktestConfig):
    """A bar-by-bar simulation written for clarity, to cross-check the vectorised engine."""
    o, h, lo, c = (candles[k].to_numpy() for k in ("open", "high", "low", "close"))
    fee, slip = config.fee_rate, config.slippage_bps / 1e4
    sl, tp = config.stop_loss_pct, config.take_profit_pct
    wanted = np.sign(target) if config.allow_short else np.maximum(np.sign(target), 0)
    cash, pos, qty, entry = config.initial_capital, 0.0, 0.0, 0.0
    blocked = None
    equity, trades = [], []
    for t in range(len(c)):
        want = wanted[t - 1] if t else 0.0
        if blocked is not None and want != blocked:
            blocked = None
        if blocked is not None:
            want = 0.0
        if want != pos:
            if pos:
                px = o[t] * (1 - pos * slip)
                cash += pos * qty * px - qty * px * fee
                trades.append(("signal", px))
                pos = 0.0
            if want:
                entry = o[t] * (1 + want * slip)
                qty = config.size_fraction * cash / (entry * (1 + fee))
                cash -= want * qty * entry + qty * entry * fee
                pos = want
        if pos and (sl or tp):
            stop = entry * (1 - pos * sl / 100) if sl else None
            target_px = entry * (1 + pos * tp / 100) if tp else None
            worst, best = (lo[t], h[t]) if pos > 0 else (h[t], lo[t])
            hit_stop = stop is not None and (worst - stop) * pos <= 0
            hit_target = target_px is not None and (best - target_px) * pos >= 0
            px = None
            if hit_stop and (o[t] - stop) * pos <= 0:
                px, why = o[t] * (1 - pos * slip), "stop"
            elif hit_target and (o[t] - target_px) * pos >= 0:
                px, why = o[t], "target"
            elif hit_stop:
                px, why = stop * (1 - pos * slip), "stop"
            elif hit_target:
                px, why = target_px, "target"
            if px is not None:
                cash += pos * qty * px - qty * px * fee
                trades.append((why, px))
                blocked, pos = pos, 0.0
        equity.append(cash + pos * qty * c[t])
    return np.array(equity), trades


@pytest.mark.parametrize(
    "config",
    [
        BacktestConfig(),
        BacktestConfig(allow_short=True, slippage_bps=3, size_fraction=0.7),
        BacktestConfig(allow_short=True, stop_loss_pct=0.4, take_profit_pct=0.6),
        BacktestConfig(fee_rate=0.0005, stop_loss_pct=0.3),
    ],
)
@pytest.mark.parametrize("kind", ["sma_cross", "rsi_reversion", "bollinger_reversion"])
def test_vectorised_engine_matches_a_bar_by_bar_loop(kind, config):
    candles = random_walk(3_000, seed=21)
    from strategies.library.registry import get_kind

    target = get_kind(kind).target_positions(candles, {})
    result = run_backtest(candles, StrategyRef(kind, {}), config)
    equity, trades = reference_loop(candles, target, config)
    assert np.allclose(result.equity.to_numpy(), equity, rtol=1e-10)
    closed = result.trades[~result.trades.is_open]
    assert closed.exit_reason.tolist() == [why for why, _ in trades]
    assert np.allclose(closed.exit_price.to_numpy(), [px for _, px in trades], rtol=1e-12)


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
