"""Benchmark: Tradelab's engine against vectorbt and backtesting.py on one workload.

Run it in its own virtualenv (never the app's), from the repository root:

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -r bench/requirements.txt
    /tmp/benchvenv/bin/python bench/engine.py            # add --quick to skip slow parts

Workload: a seeded geometric random walk of 1-minute bars; sma_cross 10/50, long-only,
0.1% fee on every fill, 10,000 capital, signals on a close filled at the next open. All
three engines get identical rules (see `backtests.engine`): vectorbt through signals
shifted one bar and priced at the open, backtesting.py through its default next-open
fills with fractional units. Prints wall times, ratios, our peak memory growth and whether
trade counts and final equity agree.

Also times our order-by-order path (the one runs take when a quantity step, a fee per fill,
another sizing mode or fractional targets are set) on the same workload, forced by a
minimum notional of 1e-300 that skips nothing, against our vectorised path. (A quantity
step would round this workload's quantities away: its fees shrink the account ~1e12-fold.)

Portfolio section (after the table; `--portfolio-only` runs just it, `--skip-portfolio`
leaves it out): 20 seeded random walks of 100,000 1-minute bars. Every hour each bar's
close ranks the instruments by their trailing one-day return, and the best five get a
target weight of 0.2 each until the next hour's ranking; 0.1% fee, 2 bps slippage, 10,000
capital. Our run_portfolio gets the weights as decided at each close (it rebalances at the
next open whenever they change); vectorbt gets `Portfolio.from_orders` with the same
weights as target percents on those fill bars and NaN (no order) on every other bar,
priced at the open, cash shared, sells first (call_seq="auto").
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bars would garble the table

from backtests.engine import BacktestConfig, run_backtest, run_sweep
from backtests.engine.portfolio import run_portfolio
from strategies.library.base import StrategyRef

FEE = 0.001
CAPITAL = 10_000.0
FAST, SLOW = 10, 50
GRID = [(f, s) for f in range(5, 46, 5) for s in range(20, 181, 20) if f < s]


def random_walk(n: int, seed: int = 42) -> pd.DataFrame:
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


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


# --- Tradelab -----------------------------------------------------------------------------

CONFIG = BacktestConfig(initial_capital=CAPITAL, fee_rate=FEE, timeframe="1m")
ORDERS = BacktestConfig(initial_capital=CAPITAL, fee_rate=FEE, timeframe="1m", min_notional=1e-300)


def ours_order_by_order(df: pd.DataFrame, repeat: int) -> dict[str, Any]:
    ref = StrategyRef("sma_cross", {"fast": FAST, "slow": SLOW})
    run_backtest(df.iloc[:5_000], ref, ORDERS)
    seconds, result = best_of(lambda: run_backtest(df, ref, ORDERS), repeat)
    return {
        "seconds": seconds,
        "trades": int(result.metrics["num_trades"]),
        "final": float(result.metrics["final_equity"]),
    }


def ours_single(df: pd.DataFrame, repeat: int) -> dict[str, Any]:
    ref = StrategyRef("sma_cross", {"fast": FAST, "slow": SLOW})
    run_backtest(df.iloc[:5_000], ref, CONFIG)  # import and first-call costs
    seconds, result = best_of(lambda: run_backtest(df, ref, CONFIG), repeat)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = run_backtest(df, ref, CONFIG)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return {
        "seconds": seconds,
        "trades": int(result.metrics["num_trades"]),
        "open": int(result.metrics["open_trades"]),
        "final": float(result.metrics["final_equity"]),
        "peak_mb": peak / 2**20,
    }


def ours_grid(df: pd.DataFrame, repeat: int) -> dict[str, Any]:
    grid = [{"fast": f, "slow": s} for f, s in GRID]
    seconds, table = best_of(lambda: run_sweep(df, "sma_cross", grid, CONFIG), repeat)
    return {
        "seconds": seconds,
        "trades": table["num_trades"].to_numpy(),
        "final": table["final_equity"].to_numpy(dtype=float),
    }


# --- vectorbt -----------------------------------------------------------------------------


def vbt_run(
    df: pd.DataFrame, pairs: list[tuple[int, int]], with_stats: bool, capital: float = CAPITAL
) -> dict[str, Any]:
    import vectorbt as vbt

    # Same bars on a plain RangeIndex (freq is given below): with a tz-aware DatetimeIndex,
    # vectorbt 1.2 under pandas 3 spends seconds in index handling, which would flatter us.
    df = df.reset_index(drop=True)
    close = df["close"]
    fast = vbt.MA.run(close, [f for f, _ in pairs], short_name="fast")
    slow = vbt.MA.run(close, [s for _, s in pairs], short_name="slow")
    entries = fast.ma_crossed_above(slow.ma.values)
    exits = fast.ma_crossed_below(slow.ma.values)
    # A signal on bar t's close fills at bar t+1's open: shift the signals, price at open.
    entries = entries.vbt.fshift(1, fill_value=False)
    exits = exits.vbt.fshift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        price=df["open"],
        size=np.inf,
        fees=FEE,
        init_cash=capital,
        direction="longonly",
        freq="1min",
    )
    final = np.atleast_1d(np.asarray(pf.final_value(), dtype=float))
    trades = np.atleast_1d(np.asarray(pf.trades.closed.count()))
    if with_stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(pairs) == 1:
                pf.stats()
            else:
                pf.stats(agg_func=None)
    return {"final": final, "trades": trades}


def vbt_timed(df: pd.DataFrame, pairs: list[tuple[int, int]], repeat: int) -> dict[str, Any]:
    vbt_run(df.iloc[:2_000], pairs, with_stats=True)  # JIT compilation, then steady state
    core, result = best_of(lambda: vbt_run(df, pairs, with_stats=False), repeat)
    full, _ = best_of(lambda: vbt_run(df, pairs, with_stats=True), repeat)
    return {"seconds_core": core, "seconds": full, **result}


# --- backtesting.py -----------------------------------------------------------------------


def bt_run(df: pd.DataFrame, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        fast = FAST
        slow = SLOW

        def init(self) -> None:
            self.ma_fast = self.I(sma, self.data.Close, self.fast)
            self.ma_slow = self.I(sma, self.data.Close, self.slow)

        def next(self) -> None:
            if crossover(self.ma_fast, self.ma_slow):
                # Just under 1: backtesting.py reads a size of exactly 1 as "one unit".
                self.buy(size=1 - 1e-12)
            elif crossover(self.ma_slow, self.ma_fast):
                self.position.close()

    data = df.rename(columns=str.capitalize)
    # Fees compound equity down by orders of magnitude over thousands of trades, so the
    # tradable unit must be tiny for whole-unit sizing to stay within 1e-6 of exact.
    bt = FractionalBacktest(
        data, SmaCross, cash=CAPITAL, commission=FEE, fractional_unit=1e-30, finalize_trades=False
    )
    finals, counts = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fast, slow in pairs:
            stats = bt.run(fast=fast, slow=slow)
            finals.append(float(stats["Equity Final [$]"]))
            counts.append(int(stats["# Trades"]))
    return {"final": np.array(finals), "trades": np.array(counts)}


def bt_timed(df: pd.DataFrame, pairs: list[tuple[int, int]]) -> dict[str, Any]:
    seconds, result = best_of(lambda: bt_run(df, pairs), 1)
    return {"seconds": seconds, **result}


# --- portfolio ----------------------------------------------------------------------------

PORTFOLIO_INSTRUMENTS = 20
PORTFOLIO_BARS = 100_000
PORTFOLIO_TOP = 5  # instruments held at a time
PORTFOLIO_EVERY = 60  # bars between rankings
PORTFOLIO_LOOKBACK = 1_440  # bars of trailing return ranked on
PORTFOLIO_SLIPPAGE_BPS = 2.0
PORTFOLIO_CONFIG = BacktestConfig(
    initial_capital=CAPITAL, fee_rate=FEE, slippage_bps=PORTFOLIO_SLIPPAGE_BPS, timeframe="1m"
)


def portfolio_workload(n: int, m: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """m seeded random walks and the hourly top-five rotation's weights (see the docstring)."""
    candles = {f"W{i:02d}": random_walk(n, seed=1_000 + i) for i in range(m)}
    close = np.column_stack([df["close"].to_numpy() for df in candles.values()])
    trailing = np.full_like(close, np.nan)
    trailing[PORTFOLIO_LOOKBACK:] = close[PORTFOLIO_LOOKBACK:] / close[:-PORTFOLIO_LOOKBACK]
    weights = np.full_like(close, np.nan)
    ranked_at = np.arange(PORTFOLIO_LOOKBACK, n, PORTFOLIO_EVERY)
    best = np.argsort(-trailing[ranked_at], axis=1, kind="stable")[:, :PORTFOLIO_TOP]
    weights[ranked_at] = 0.0
    weights[ranked_at[:, None], best] = 1.0 / PORTFOLIO_TOP
    # Held until the next ranking; nothing before the first.
    frame = pd.DataFrame(weights, index=candles["W00"].index, columns=list(candles))
    return candles, frame.ffill().fillna(0.0)


def ours_portfolio(
    candles: dict[str, pd.DataFrame], weights: pd.DataFrame, repeat: int
) -> dict[str, Any]:
    small = {name: df.iloc[:5_000] for name, df in candles.items()}
    run_portfolio(small, weights.iloc[:5_000], PORTFOLIO_CONFIG)  # first-call costs
    seconds, result = best_of(lambda: run_portfolio(candles, weights, PORTFOLIO_CONFIG), repeat)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = run_portfolio(candles, weights, PORTFOLIO_CONFIG)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return {
        "seconds": seconds,
        "final": float(result.equity.iloc[-1]),
        "rebalances": len(result.rebalances),
        "trades": len(result.trades),
        "peak_mb": peak / 2**20,
    }


def vbt_portfolio_run(
    close: pd.DataFrame, open_: pd.DataFrame, size: pd.DataFrame, with_stats: bool
) -> float:
    import vectorbt as vbt

    pf = vbt.Portfolio.from_orders(
        close=close,
        price=open_,
        size=size,
        size_type="targetpercent",
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        fees=FEE,
        slippage=PORTFOLIO_SLIPPAGE_BPS / 10_000,
        init_cash=CAPITAL,
        freq="1min",
    )
    final = float(np.asarray(pf.final_value()))
    if with_stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf.stats()
    return final


def vbt_portfolio(
    candles: dict[str, pd.DataFrame], weights: pd.DataFrame, repeat: int
) -> dict[str, Any]:
    # The weights decided at bar t's close are vectorbt's target percents at bar t+1's open,
    # on the bars where they differ from the bar before's (a first bar with weights counts
    # as a change from holding nothing); NaN is no order.
    held = weights.to_numpy()
    held = np.vstack([np.zeros((1, held.shape[1])), held[:-1]])
    fill_bars = np.flatnonzero((held[1:] != held[:-1]).any(axis=1)) + 1
    size = np.full_like(held, np.nan)
    size[fill_bars] = held[fill_bars]
    # A plain RangeIndex, as for the single-instrument cases (see vbt_run).
    close = pd.DataFrame({k: df["close"].to_numpy() for k, df in candles.items()})
    open_ = pd.DataFrame({k: df["open"].to_numpy() for k, df in candles.items()})
    size_frame = pd.DataFrame(size, columns=close.columns)
    n = 5_000
    vbt_portfolio_run(close.iloc[:n], open_.iloc[:n], size_frame.iloc[:n], with_stats=True)
    core, final = best_of(lambda: vbt_portfolio_run(close, open_, size_frame, False), repeat)
    full, _ = best_of(lambda: vbt_portfolio_run(close, open_, size_frame, True), repeat)
    return {"seconds_core": core, "seconds": full, "final": final, "rebalances": len(fill_bars)}


def portfolio_section(repeat: int) -> None:
    m, n = PORTFOLIO_INSTRUMENTS, PORTFOLIO_BARS
    candles, weights = portfolio_workload(n, m)
    ours = ours_portfolio(candles, weights, repeat)
    vbt = vbt_portfolio(candles, weights, repeat)
    diff = abs(ours["final"] - vbt["final"]) / abs(vbt["final"])
    print(
        f"\nportfolio: {m} instruments x {n:,} 1-minute bars, hourly top-{PORTFOLIO_TOP} "
        f"rotation by trailing {PORTFOLIO_LOOKBACK}-bar return, weights "
        f"{1 / PORTFOLIO_TOP:g} each; fee {FEE:.1%}, slippage {PORTFOLIO_SLIPPAGE_BPS:g} bps, "
        f"capital {CAPITAL:,.0f}"
    )
    print(
        f"  rebalances: ours {ours['rebalances']:,}, vectorbt fill bars {vbt['rebalances']:,}; "
        f"our trades (round trips per instrument) {ours['trades']:,}"
    )
    print(
        f"  ours {ours['seconds'] * 1e3:.1f} ms (run_portfolio incl. validation, alignment, "
        f"trades and every metric); peak memory growth {ours['peak_mb']:.1f} MB"
    )
    print(
        f"  vectorbt {vbt['seconds_core'] * 1e3:.1f} ms core (from_orders + final value), "
        f"{vbt['seconds'] * 1e3:.1f} ms with stats(), after JIT warm-up"
    )
    print(
        f"  ratio ours/vectorbt: {ours['seconds'] / vbt['seconds_core']:.3f}x core, "
        f"{ours['seconds'] / vbt['seconds']:.3f}x with stats (target <= 0.5x)"
    )
    verdict = "AGREE" if diff <= 1e-9 else "DIFFER"
    print(
        f"  final value: ours {ours['final']:.12g}, vectorbt {vbt['final']:.12g}, relative "
        f"difference {diff:.2e} ({verdict}; target <= 1e-9)",
        flush=True,
    )


# --- report -------------------------------------------------------------------------------


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def agreement(name: str, ours: dict[str, Any], other: dict[str, Any] | None) -> str:
    if other is None:
        return f"{name}: skipped"
    ours_trades = np.atleast_1d(ours["trades"])
    same_count = np.array_equal(ours_trades, np.atleast_1d(other["trades"]))
    diff = rel(np.atleast_1d(ours["final"]), other["final"])
    verdict = "AGREE" if same_count and diff <= 1e-6 else "DIFFER"
    return (
        f"{name}: {verdict} - closed trades equal: {same_count}; "
        f"max relative final-equity difference {diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip backtesting.py on 1M bars")
    parser.add_argument("--skip-bt-grid", action="store_true", help="skip backtesting.py grid")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-portfolio", action="store_true", help="skip the portfolio case")
    parser.add_argument("--portfolio-only", action="store_true", help="run only the portfolio case")
    args = parser.parse_args()

    import backtesting
    import vectorbt

    print(
        f"numpy {np.__version__}, pandas {pd.__version__}, vectorbt {vectorbt.__version__}, "
        f"backtesting.py {backtesting.__version__}"
    )
    print(
        f"workload: sma_cross {FAST}/{SLOW}, long-only, fee {FEE:.1%}, capital {CAPITAL:,.0f}, "
        "1-minute random walk, fill at next open\n"
    )
    if args.portfolio_only:
        portfolio_section(args.repeat)
        return

    rows = []
    notes = []
    for n in (100_000, 1_000_000):
        df = random_walk(n)
        ours = ours_single(df, args.repeat)
        vbt = vbt_timed(df, [(FAST, SLOW)], args.repeat)
        bt = None if (args.quick and n > 100_000) else bt_timed(df, [(FAST, SLOW)])
        rows.append(
            (
                f"single {n:>9,} bars",
                ours["seconds"],
                vbt["seconds_core"],
                vbt["seconds"],
                bt["seconds"] if bt else None,
                ours["peak_mb"],
            )
        )
        notes.append(
            f"single {n:,} bars: ours {ours['trades']} closed (+{ours['open']} open) trades, "
            f"final equity {ours['final']:.10g}; vectorbt {int(vbt['trades'][0])} / "
            f"{float(vbt['final'][0]):.10g}; backtesting.py "
            + (f"{int(bt['trades'][0])} / {float(bt['final'][0]):.10g}" if bt else "skipped")
        )
        notes.append("  " + agreement("vs vectorbt", ours, vbt))
        if not np.array_equal(np.atleast_1d(ours["trades"]), vbt["trades"]):
            # vectorbt compares amounts with abs_tol=1e-12 / rel_tol=1e-9 (vectorbt.utils.math_).
            # Fees shrink this account by ~1e-12, into that band; the strategy is scale-free,
            # so rerun vectorbt with a million times the capital and scale the result back.
            scaled = vbt_run(df, [(FAST, SLOW)], with_stats=False, capital=CAPITAL * 1e6)
            scaled["final"] = scaled["final"] / 1e6
            notes.append("  " + agreement("vs vectorbt with capital x1e6, rescaled", ours, scaled))
        notes.append("  " + agreement("vs backtesting.py", ours, bt))
        stepped = ours_order_by_order(df, args.repeat)
        notes.append(
            f"  ours order by order: {stepped['seconds'] * 1e3:.1f} ms, "
            f"{stepped['seconds'] / ours['seconds']:.2f}x our vectorised path; "
            + agreement("vs our vectorised path", stepped, ours)
        )

    df = random_walk(100_000)
    ours = ours_grid(df, max(1, args.repeat // 2))
    vbt = vbt_timed(df, GRID, max(1, args.repeat // 2))
    bt = None if args.skip_bt_grid else bt_timed(df, GRID)
    rows.append(
        (
            f"grid {len(GRID)} pairs, 100,000 bars",
            ours["seconds"],
            vbt["seconds_core"],
            vbt["seconds"],
            bt["seconds"] if bt else None,
            None,
        )
    )
    notes.append(f"grid: {len(GRID)} combinations")
    notes.append("  " + agreement("vs vectorbt", ours, vbt))
    notes.append("  " + agreement("vs backtesting.py", ours, bt))

    def fmt(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1e3:10.1f} ms"

    def ratio(a: float, b: float | None) -> str:
        return "-" if b is None else f"{a / b:.3f}x"

    print(
        f"{'case':32} {'ours':>13} {'vbt core':>13} {'vbt+stats':>13} {'bt.py':>13} "
        f"{'ours/vbt+stats':>15} {'ours/vbt core':>14} {'bt.py/ours':>11} {'peak MB':>8}"
    )
    for name, t_ours, t_core, t_full, t_bt, peak in rows:
        speedup = "-" if t_bt is None else f"{t_bt / t_ours:.0f}x"
        peak_s = "-" if peak is None else f"{peak:.1f}"
        print(
            f"{name:32} {fmt(t_ours):>13} {fmt(t_core):>13} {fmt(t_full):>13} {fmt(t_bt):>13} "
            f"{ratio(t_ours, t_full):>15} {ratio(t_ours, t_core):>14} {speedup:>11} {peak_s:>8}"
        )
    print()
    print("ours = run_backtest/run_sweep incl. validation, trades table and every metric;")
    print("vbt core = MA + crossovers + Portfolio.from_signals + final value and trade count;")
    print("vbt+stats = the same plus Portfolio.stats(); times are best of the repeats, vectorbt")
    print("after JIT warm-up; bt.py = one run (FractionalBacktest); peak MB = tracemalloc peak")
    print("growth during one run_backtest.\n")
    for line in notes:
        print(line, flush=True)
    if not args.skip_portfolio:
        portfolio_section(args.repeat)


if __name__ == "__main__":
    main()
