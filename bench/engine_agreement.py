"""Agreement: our engine's final equity against backtesting.py's where the fill rules match.

Run it in the bench virtualenv, from the repository root:

    /tmp/benchvenv/bin/python bench/engine_agreement.py

Workload: a seeded geometric random walk of 1-minute bars (as in bench/engine.py) and a
target series that is long (or, in the long/short case, short) while the close is above
(below) its 30-bar mean, flat over the last bars so every trade is closed by a signal.
Both engines trade a fixed 10 units (backtesting.py trades whole units), pay a 0.1% fee on
every fill and no slippage or spread. Our run_positions gets the targets; backtesting.py
gets a strategy that replays them: on a change of target it closes the position and
places the entry order our rules describe (rules 1, 7, 14 and 15 of `backtests.engine`):

- market: at the next open; stop-loss / take-profit levels from that open (the strategy
  reads the next open from the data frame, since backtesting.py takes absolute levels);
- close: trade_on_close=True, filled at the signal bar's close;
- limit / stop: entry_offset_pct % from the signal bar's close, cancelled after
  entry_valid_bars bars unfilled;
- trailing stop: the stop raised at each close to the best high since entry (or the fill
  price) times (1 - pct), which is our "best price before the bar" rule.

Prints one row per case: our final equity, backtesting.py's, the relative difference and
both trade counts, and how many of our trades a stop or take-profit closed. Target: within 1e-9 relative.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")

from backtesting import Backtest, Strategy

from backtests.engine import BacktestConfig, run_positions

FEE = 0.001
CAPITAL = 100_000.0
UNITS = 10
BARS = 20_000
TOLERANCE = 1e-9


def random_walk(n: int, seed: int = 42) -> pd.DataFrame:
    """bench/engine.py's workload (copied: that script imports the portfolio engine)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.empty(n)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 2e-4, n - 1))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 5e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 5e-4, n)))
    index = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )


def mean_reversion_targets(candles: pd.DataFrame, allow_short: bool) -> np.ndarray:
    close = candles.close
    mean = close.rolling(30).mean()
    target = (close > mean).to_numpy(dtype=float, copy=True)
    if allow_short:
        target -= (close < mean * 0.999).astype(float).to_numpy()
        # Through flat between sides: a flip closes and reopens differently in each engine's
        # bookkeeping (FIFO trades), which is not what this bench compares.
        flips = np.flatnonzero(target[1:] * target[:-1] < 0) + 1
        target[flips] = 0.0
    target[np.isnan(mean.to_numpy())] = 0.0
    target[-5:] = 0.0
    return target


class Replay(Strategy):
    """Replays a target series under our order rules (class attributes set per case)."""

    targets: Any = None
    next_open: Any = None
    entry_order = "market"
    offset_pct = 0.0
    valid_bars = 1
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None

    def init(self) -> None:
        self.placed_at = -1
        self.best = float("nan")

    def next(self) -> None:
        i = len(self.data) - 1
        resting = [o for o in self.orders if not o.is_contingent]
        if resting and i - self.placed_at >= self.valid_bars:
            for order in resting:
                order.cancel()
        if self.trailing_stop_pct is not None:
            self._trail()
        want = self.targets[i]
        before = self.targets[i - 1] if i else 0.0
        if want == before:
            return
        for order in self.orders:
            if not order.is_contingent:
                order.cancel()
        if self.position:
            self.position.close()
        if want == 0:
            return
        self.placed_at = i
        side = 1 if want > 0 else -1
        place = self.buy if side > 0 else self.sell
        close = float(self.data.Close[-1])
        x = self.offset_pct / 100
        if self.entry_order == "limit":
            place(size=UNITS, limit=close * (1 - side * x))
        elif self.entry_order == "stop":
            place(size=UNITS, stop=close * (1 + side * x))
        else:
            fill = close if self.entry_order == "close" else float(self.next_open[i + 1])
            sl = tp = None
            if self.stop_loss_pct is not None:
                sl = fill * (1 - side * self.stop_loss_pct / 100)
            if self.take_profit_pct is not None:
                tp = fill * (1 + side * self.take_profit_pct / 100)
            if self.trailing_stop_pct is not None:
                sl = fill * (1 - side * self.trailing_stop_pct / 100)
                self.best = side * fill
            place(size=UNITS, sl=sl, tp=tp)

    def _trail(self) -> None:
        # Our rule: the stop for the next bar trails the best price up to this bar's close.
        for trade in self.trades:
            side = 1 if trade.is_long else -1
            extreme = self.data.High[-1] if side > 0 else self.data.Low[-1]
            self.best = max(self.best, side * float(extreme))
            trade.sl = side * self.best * (1 - side * self.trailing_stop_pct / 100)  # type: ignore[operator]


def theirs(candles: pd.DataFrame, targets: np.ndarray, case: dict[str, Any]) -> tuple[float, int]:
    frame = candles.rename(columns=str.capitalize)
    attrs = {
        "targets": targets,
        "next_open": candles.open.to_numpy(),
        "entry_order": case.get("entry_order", "market"),
        "offset_pct": case.get("entry_offset_pct", 0.0),
        "valid_bars": case.get("entry_valid_bars", 1),
        "stop_loss_pct": case.get("stop_loss_pct"),
        "take_profit_pct": case.get("take_profit_pct"),
        "trailing_stop_pct": case.get("trailing_stop_pct"),
    }
    strategy = type("ReplayCase", (Replay,), attrs)
    bt = Backtest(
        frame,
        strategy,
        cash=CAPITAL,
        commission=FEE,
        trade_on_close=case.get("entry_order") == "close",
        exclusive_orders=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return float(stats["Equity Final [$]"]), int(stats["# Trades"])


def ours(
    candles: pd.DataFrame, targets: np.ndarray, case: dict[str, Any]
) -> tuple[float, int, int]:
    config = BacktestConfig(
        initial_capital=CAPITAL,
        fee_rate=FEE,
        sizing="fixed_quantity",
        fixed_quantity=float(UNITS),
        timeframe="1m",
        **case,
    )
    result = run_positions(candles, targets, config)
    by_level = int((~result.trades.exit_reason.isin(["signal", "end"])).sum())
    return float(result.equity.iloc[-1]), len(result.trades), by_level


CASES: list[tuple[str, bool, dict[str, Any]]] = [
    ("market, long only", False, {}),
    ("market, long/short", True, {}),
    ("close (trade_on_close)", True, {"entry_order": "close"}),
    ("limit entries", True, {"entry_order": "limit", "entry_offset_pct": 0.05}),
    (
        "limit entries, valid 5 bars",
        True,
        {"entry_order": "limit", "entry_offset_pct": 0.1, "entry_valid_bars": 5},
    ),
    ("stop entries", True, {"entry_order": "stop", "entry_offset_pct": 0.05}),
    (
        "stop entries, valid 5 bars",
        True,
        {"entry_order": "stop", "entry_offset_pct": 0.1, "entry_valid_bars": 5},
    ),
    ("stop-loss 0.3%", True, {"stop_loss_pct": 0.3}),
    ("take-profit 0.3%", True, {"take_profit_pct": 0.3}),
    ("stop-loss and take-profit", True, {"stop_loss_pct": 0.2, "take_profit_pct": 0.4}),
    ("close + stop-loss", True, {"entry_order": "close", "stop_loss_pct": 0.3}),
    ("trailing stop 0.3%", True, {"trailing_stop_pct": 0.3}),
]


def main() -> None:
    candles = random_walk(BARS)
    print(f"{BARS:,} 1-minute bars, {UNITS} units a trade, fee {FEE:.1%} a fill\n")
    header = (
        f"{'case':<30} {'ours':>14} {'theirs':>14} {'rel diff':>10} {'trades':>13} "
        f"{'level exits':>11}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, allow_short, case in CASES:
        targets = mean_reversion_targets(candles, allow_short)
        mine, my_trades, by_level = ours(candles, targets, {"allow_short": allow_short, **case})
        their, their_trades = theirs(candles, targets, case)
        rel = abs(mine - their) / abs(their)
        worst = max(worst, rel)
        flag = "" if rel <= TOLERANCE and my_trades == their_trades else "  <-- differs"
        print(
            f"{name:<30} {mine:>14.6f} {their:>14.6f} {rel:>10.1e} "
            f"{my_trades:>6}/{their_trades:<6} {by_level:>11}{flag}"
        )
    print(f"\nworst relative difference: {worst:.1e} (target {TOLERANCE:.0e})")


if __name__ == "__main__":
    main()
