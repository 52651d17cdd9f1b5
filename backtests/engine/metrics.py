"""Performance metrics: the one place where each metric is defined and computed.

METRIC_DEFINITIONS is the written definition of every key `compute_metrics` returns, in
display order. Conventions that apply throughout:

- Bar returns are r[t] = equity[t] / equity[t-1] - 1 for t >= 1 (equity at bar closes);
  after a wipe-out (equity 0) a bar's return counts as 0.
- Annualisation uses P = bars per year of the config's timeframe on its calendar
  (`marketdata.timeframes.periods_per_year`): on "24/7", 365 days of bars (1d: 365, 1h:
  8,760, 1w: 52.14); on "exchange", trading_days_per_year sessions (1d: 252 by default,
  1w: 52, intraday: 252 * bars per session, configured as bars_per_day or inferred as the
  median number of bars per UTC day); 1M is 12 on both.
- Calendar time (cagr_pct) uses 365-day years.
- Percentages are in percent (12.5 means 12.5%); durations are in seconds.
- Trade statistics use closed trades only; a position still open at the end counts in
  equity, exposure and commissions but not in trade counts or trade statistics.
- A value that is undefined for the data (e.g. Sharpe with zero volatility, win rate with
  no trades) is None, never NaN or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.config import BacktestConfig
from backtests.engine.simulate import EXIT_LIQUIDATION, Simulation, Trades
from marketdata.timeframes import (
    CALENDAR_EXCHANGE,
    SECONDS_PER_YEAR,
    is_intraday,
    periods_per_year,
)

MetricValue = float | int | str | None

METRIC_DEFINITIONS: dict[str, str] = {
    "start": "Open time of the first bar, ISO 8601 UTC.",
    "end": "Open time of the last bar, ISO 8601 UTC.",
    "duration_s": "end - start, in seconds.",
    "bars": "Number of candles in the backtest.",
    "exposure_pct": "Share of bars at whose close a position was open, in %.",
    "initial_capital": "Starting cash.",
    "final_equity": "Equity at the last close (an open position is marked to that close).",
    "peak_equity": "Highest equity at any bar close.",
    "min_equity": "Lowest equity at any bar close.",
    "profit": "final_equity - initial_capital, in quote currency.",
    "commissions": "Sum of all fees paid, including the entry fee of a still-open position.",
    "return_pct": "(final_equity / initial_capital - 1) * 100.",
    "buy_hold_return_pct": "(last close / first close - 1) * 100: holding the asset, no fees.",
    "annualized_return_pct": (
        "Compound growth per year of bars on the calendar: "
        "((final/initial)^(P/(bars-1)) - 1) * 100, the bars-1 bar returns counting as "
        "(bars-1)/P years. It equals cagr_pct on gapless 24/7 bars; on an exchange calendar "
        "it counts sessions (252 a year) where cagr_pct counts calendar days, and missing "
        "bars shorten its year count but not cagr_pct's."
    ),
    "cagr_pct": (
        "Compound annual growth over calendar time: "
        "((final/initial)^(365 days / (end - start)) - 1) * 100."
    ),
    "annualized_volatility_pct": "Sample std of bar returns * sqrt(P) * 100.",
    "sharpe": (
        "mean(bar returns) / std(bar returns, ddof=1) * sqrt(P); risk-free rate 0. "
        "None for a wiped-out account (equity reached 0)."
    ),
    "sortino": (
        "mean(bar returns) / sqrt(mean(min(r, 0)^2)) * sqrt(P); downside deviation about 0. "
        "None for a wiped-out account."
    ),
    "calmar": "(cagr_pct / 100) / |max_drawdown_pct / 100|.",
    "alpha_pct": (
        "Annualised Jensen's alpha against buy & hold bar returns m: "
        "(mean(r) - beta * mean(m)) * P * 100. None for a wiped-out account."
    ),
    "beta": "cov(r, m) / var(m), with m the close-to-close returns of the asset.",
    "max_drawdown_pct": (
        "Most negative (equity / running peak - 1) * 100; 0 without drawdown, -100 at worst "
        "(equity never goes below zero)."
    ),
    "avg_drawdown_pct": (
        "Mean over drawdown periods of each period's deepest drawdown, in %; 0 without any. "
        "A drawdown period is a maximal run of bars below the running peak."
    ),
    "max_drawdown_duration_s": (
        "Longest drawdown period, from the peak bar to the bar that regains it "
        "(or to the last bar if never regained), in seconds."
    ),
    "avg_drawdown_duration_s": "Mean duration of drawdown periods, in seconds.",
    "num_trades": "Number of closed trades.",
    "orders_skipped": (
        "Orders not placed: their quantity rounded down to nothing at quantity_step, or "
        "their notional was below min_notional."
    ),
    "liquidated": (
        "1 if a position was liquidated (the account could not cover a further loss), "
        "after which nothing trades; else 0."
    ),
    "open_trades": "1 if a position is still open at the last bar, else 0.",
    "long_trades": "Closed long trades.",
    "short_trades": "Closed short trades.",
    "win_rate_pct": "Closed trades with pnl > 0, as % of closed trades.",
    "best_trade_pct": "Highest trade pnl_pct (net of fees, % of entry notional).",
    "worst_trade_pct": "Lowest trade pnl_pct.",
    "avg_trade_pct": "Arithmetic mean of trade pnl_pct.",
    "max_trade_duration_s": "Longest closed trade, exit_time - entry_time, in seconds.",
    "avg_trade_duration_s": "Mean closed-trade duration, in seconds.",
    "avg_winner_duration_s": "Mean duration of winning trades, in seconds.",
    "avg_loser_duration_s": "Mean duration of losing trades, in seconds.",
    "profit_factor": (
        "Sum of winning pnl / |sum of losing pnl|; None when there are no losing trades."
    ),
    "expectancy": "Mean pnl per closed trade, in quote currency.",
    "expectancy_ratio": (
        "(1 + avg win / avg |loss|) * win rate - 1, from pnl_pct (freqtrade's ratio); "
        "None without losing trades."
    ),
    "sqn": "sqrt(n) * mean(pnl_pct) / std(pnl_pct, ddof=1) (System Quality Number).",
    "kelly": (
        "W - (1 - W) / (avg winning pnl_pct / avg |losing pnl_pct|), W the win rate as a "
        "fraction; W when there are no losers, None when there are no winners."
    ),
    "max_consecutive_wins": "Longest run of consecutive closed trades with pnl > 0.",
    "max_consecutive_losses": "Longest run of consecutive closed trades with pnl < 0.",
    "best_day_pct": (
        "Highest daily return, in %. A day's return compares equity at its last bar close "
        "(UTC calendar day) with the previous day's; the first day with initial capital."
    ),
    "worst_day_pct": "Lowest daily return, in %.",
    "winning_days": "Days with a positive daily return.",
    "drawn_days": "Days with a daily return of exactly 0.",
    "losing_days": "Days with a negative daily return.",
}

HEADLINE_METRICS: list[str] = [
    "return_pct",
    "cagr_pct",
    "sharpe",
    "max_drawdown_pct",
    "win_rate_pct",
    "num_trades",
    "profit_factor",
    "final_equity",
]

_NS_PER_S = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_S


def _num(value: Any) -> float | None:
    """A finite float or None: the JSON-safe form of every float metric."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _compound_pct(growth: float, per_year: float) -> float | None:
    """(growth ** per_year - 1) * 100, or None when it is too large for a float."""
    try:
        return _num((growth**per_year - 1.0) * 100.0)
    except OverflowError:
        return None


def _iso(ts_ns: int) -> str:
    return pd.Timestamp(int(ts_ns), tz="UTC").isoformat()


def _max_run(flags: np.ndarray) -> int:
    """Length of the longest run of True."""
    if not len(flags) or not flags.any():
        return 0
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.diff(padded)
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _drawdown_periods(drawdown: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (fraction) and duration (ns) of each maximal run of bars below the peak."""
    below = drawdown < 0.0
    if not below.any():
        return np.empty(0), np.empty(0, dtype=np.int64)
    flips = np.flatnonzero(below[1:] != below[:-1]) + 1
    # Bar 0 is its own peak, so it is never below it: flips alternate start, end, start...
    starts = flips[0::2]
    ends = np.concatenate((flips[1::2], [len(drawdown)])) if len(flips) % 2 else flips[1::2]
    depth = np.minimum.reduceat(drawdown, starts)
    n = len(drawdown)
    # starts >= 1 always: bar 0 is its own peak. Duration runs from the peak bar before the
    # period to the recovery bar (or the last bar when the peak was never regained).
    end_bar = np.minimum(ends, n - 1)
    duration = ts_ns[end_bar] - ts_ns[starts - 1]
    return depth, duration


def _trade_stats(trades: Trades, ts_ns: np.ndarray) -> dict[str, MetricValue]:
    closed = ~trades.is_open
    pnl = trades.pnl[closed]
    ret = trades.pnl_pct[closed]
    d = trades.direction[closed]
    dur = (ts_ns[trades.exit_bar[closed]] - ts_ns[trades.entry_bar[closed]]) / _NS_PER_S
    n = len(pnl)
    out: dict[str, MetricValue] = {
        "num_trades": n,
        "open_trades": int(trades.is_open.sum()),
        "long_trades": int((d > 0).sum()),
        "short_trades": int((d < 0).sum()),
    }
    wins = pnl > 0
    losses = pnl < 0
    if n == 0:
        out.update(
            {
                "win_rate_pct": None,
                "best_trade_pct": None,
                "worst_trade_pct": None,
                "avg_trade_pct": None,
                "max_trade_duration_s": None,
                "avg_trade_duration_s": None,
                "avg_winner_duration_s": None,
                "avg_loser_duration_s": None,
                "profit_factor": None,
                "expectancy": None,
                "expectancy_ratio": None,
                "sqn": None,
                "kelly": None,
                "max_consecutive_wins": 0,
                "max_consecutive_losses": 0,
            }
        )
        return out
    win_rate = float(wins.mean())
    gross_win = float(pnl[wins].sum())
    gross_loss = float(-pnl[losses].sum())
    avg_win = float(ret[wins].mean()) if wins.any() else None
    avg_loss = float(-ret[losses].mean()) if losses.any() else None
    if avg_loss is None or avg_loss == 0:
        expectancy_ratio = None
        kelly = win_rate if avg_win is not None else None
    elif avg_win is None:
        expectancy_ratio = -1.0  # no winners: (1 + 0) * 0 - 1
        kelly = None
    else:
        ratio = avg_win / avg_loss
        expectancy_ratio = (1.0 + ratio) * win_rate - 1.0
        # A win is a positive P&L; its return can still round to 0 (a tiny gain on a large
        # position), and then Kelly's ratio is no number.
        kelly = win_rate - (1.0 - win_rate) / ratio if ratio > 0 else None
    sqn = None
    if n >= 2:
        sd = float(ret.std(ddof=1))
        if sd > 0:
            sqn = math.sqrt(n) * float(ret.mean()) / sd
    out.update(
        {
            "win_rate_pct": win_rate * 100.0,
            "best_trade_pct": _num(ret.max()),
            "worst_trade_pct": _num(ret.min()),
            "avg_trade_pct": _num(ret.mean()),
            "max_trade_duration_s": _num(dur.max()),
            "avg_trade_duration_s": _num(dur.mean()),
            "avg_winner_duration_s": _num(dur[wins].mean()) if wins.any() else None,
            "avg_loser_duration_s": _num(dur[losses].mean()) if losses.any() else None,
            "profit_factor": gross_win / gross_loss if gross_loss > 0 else None,
            "expectancy": _num(pnl.mean()),
            "expectancy_ratio": _num(expectancy_ratio),
            "sqn": _num(sqn),
            "kelly": _num(kelly),
            "max_consecutive_wins": _max_run(wins),
            "max_consecutive_losses": _max_run(losses),
        }
    )
    return out


class BarContext:
    """Per-candle-set quantities every backtest on those candles shares (a sweep reuses it)."""

    def __init__(self, ts_ns: np.ndarray, close: np.ndarray) -> None:
        self.ts_ns = ts_ns
        self.close = close
        n = len(close)
        # Last bar of each UTC day, found by binary search on the day boundaries: far
        # cheaper than dividing every timestamp.
        first_day = int(ts_ns[0]) // _NS_PER_DAY
        last_day = int(ts_ns[-1]) // _NS_PER_DAY
        boundaries = np.arange(first_day + 1, last_day + 1, dtype=np.int64) * _NS_PER_DAY
        day_ends = np.searchsorted(ts_ns, boundaries, side="left") - 1
        self.day_ends = np.unique(np.concatenate((day_ends[day_ends >= 0], [n - 1])))
        # Bars per UTC day that has any: an exchange session's bar count is their median.
        self.bars_per_day = float(np.median(np.diff(self.day_ends, prepend=-1)))
        # Mean and sample variance of the asset's close-to-close returns.
        self.mean_m = 0.0
        self.var_m = 0.0
        if n >= 3:
            total = sum(float(m.sum()) for m in _returns_in_slices(close, 0.0))
            self.mean_m = total / (n - 1)
            squares = sum(_dot(m, m) for m in _returns_in_slices(close, self.mean_m))
            self.var_m = squares / (n - 2)


_SLICE = 65_536


def _returns_in_slices(values: np.ndarray, minus: float) -> Iterator[np.ndarray]:
    """values[t] / values[t-1] - 1 - minus, in cache-sized slices (no full-size temporary)."""
    n = len(values)
    for lo in range(1, n, _SLICE):
        hi = min(n, lo + _SLICE)
        r = values[lo:hi] / values[lo - 1 : hi - 1]
        r -= 1.0 + minus
        yield r


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum's own SIMD loop; BLAS dot may wake a thread pool for every call.
    return float(np.einsum("i,i->", a, b))


def _return_stats(equity: np.ndarray, context: BarContext) -> tuple[float, float, float, float]:
    """(mean, sample std, downside deviation, covariance with the asset) of bar returns."""
    n = len(equity)
    total = 0.0
    downside_sq = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in _returns_in_slices(equity, 0.0):
            if not np.isfinite(r).all():
                # Only a wiped-out account (equity 0) makes a return undefined; call it flat.
                r[~np.isfinite(r)] = 0.0
            total += float(r.sum())
            neg = np.minimum(r, 0.0)
            downside_sq += _dot(neg, neg)
        mean_r = total / (n - 1)
        squares = 0.0
        cross = 0.0
        slices = zip(
            _returns_in_slices(equity, mean_r),
            _returns_in_slices(context.close, context.mean_m),
            strict=True,
        )
        for r, m in slices:
            if not np.isfinite(r).all():
                r[~np.isfinite(r)] = -mean_r
            squares += _dot(r, r)
            cross += _dot(r, m)
    sd = math.sqrt(squares / (n - 2))
    downside = math.sqrt(downside_sq / (n - 1))
    return mean_r, sd, downside, cross / (n - 2)


def _daily_stats(equity: np.ndarray, context: BarContext, initial: float) -> dict[str, MetricValue]:
    closes = equity[context.day_ends]
    prev = np.concatenate(([initial], closes[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = closes / prev - 1.0
    daily = daily[np.isfinite(daily)]
    if not len(daily):
        return {
            "best_day_pct": None,
            "worst_day_pct": None,
            "winning_days": 0,
            "drawn_days": 0,
            "losing_days": 0,
        }
    return {
        "best_day_pct": _num(daily.max() * 100.0),
        "worst_day_pct": _num(daily.min() * 100.0),
        "winning_days": int((daily > 0).sum()),
        "drawn_days": int((daily == 0).sum()),
        "losing_days": int((daily < 0).sum()),
    }


def bars_per_year(config: BacktestConfig, context: BarContext) -> float | None:
    """P for `config`'s timeframe and calendar; None when the timeframe is unknown."""
    if config.timeframe is None:
        return None
    bars_per_day = config.bars_per_day
    if (
        bars_per_day is None
        and config.calendar == CALENDAR_EXCHANGE
        and is_intraday(config.timeframe)
    ):
        bars_per_day = context.bars_per_day
    return periods_per_year(
        config.timeframe,
        config.calendar,
        trading_days_per_year=config.trading_days_per_year,
        bars_per_day=bars_per_day,
    )


def compute_metrics(
    *,
    context: BarContext,
    sim: Simulation,
    drawdown: np.ndarray,
    config: BacktestConfig,
) -> dict[str, MetricValue]:
    """Every metric in METRIC_DEFINITIONS, JSON-safe, in that order."""
    ts_ns, close = context.ts_ns, context.close
    equity, trades = sim.equity, sim.trades
    n = len(equity)
    initial = float(config.initial_capital)
    final = float(equity[-1])
    per_year = bars_per_year(config, context)
    lowest = float(equity.min())
    wiped_out = lowest <= 0.0
    duration_ns = int(ts_ns[-1] - ts_ns[0])
    growth = final / initial

    m: dict[str, MetricValue] = {
        "start": _iso(ts_ns[0]),
        "end": _iso(ts_ns[-1]),
        "duration_s": duration_ns / _NS_PER_S,
        "bars": n,
        "exposure_pct": sim.exposure_bars / n * 100.0,
        "initial_capital": initial,
        "final_equity": _num(final),
        "peak_equity": _num(equity.max()),
        "min_equity": _num(lowest),
        "profit": _num(final - initial),
        "commissions": _num(trades.fees.sum()),
        "return_pct": _num((growth - 1.0) * 100.0),
        "buy_hold_return_pct": _num((close[-1] / close[0] - 1.0) * 100.0),
    }

    annualized = cagr = None
    if growth <= 0:
        # Wiped out: everything was lost, however fast.
        annualized = -100.0 if n >= 2 and per_year else None
        cagr = -100.0 if duration_ns > 0 else None
    else:
        if n >= 2 and per_year:
            annualized = _compound_pct(growth, per_year / (n - 1))
        if duration_ns > 0:
            cagr = _compound_pct(growth, SECONDS_PER_YEAR * _NS_PER_S / duration_ns)
    m["annualized_return_pct"] = annualized
    m["cagr_pct"] = cagr

    vol = sharpe = sortino = alpha = beta = None
    if n >= 3 and per_year:
        mean_r, sd, downside_dev, cov = _return_stats(equity, context)
        vol = sd * math.sqrt(per_year) * 100.0
        # A mean return says nothing about an account that reached zero: a doubling then a
        # wipe-out averages +50% a bar. Its risk-adjusted ratios are undefined.
        if sd > 0 and not wiped_out:
            sharpe = mean_r / sd * math.sqrt(per_year)
        if downside_dev > 0 and not wiped_out:
            sortino = mean_r / downside_dev * math.sqrt(per_year)
        if context.var_m > 0:
            beta = cov / context.var_m
            if not wiped_out:
                alpha = (mean_r - beta * context.mean_m) * per_year * 100.0
    m["annualized_volatility_pct"] = _num(vol)
    m["sharpe"] = _num(sharpe)
    m["sortino"] = _num(sortino)

    max_dd = float(drawdown.min()) if n else 0.0
    max_dd = min(max_dd, 0.0)
    m["calmar"] = _num(cagr / 100.0 / -max_dd) if (cagr is not None and max_dd < 0) else None
    m["alpha_pct"] = _num(alpha)
    m["beta"] = _num(beta)

    depth, dd_duration = _drawdown_periods(drawdown, ts_ns)
    m["max_drawdown_pct"] = max_dd * 100.0
    m["avg_drawdown_pct"] = _num(depth.mean() * 100.0) if len(depth) else 0.0
    m["max_drawdown_duration_s"] = _num(dd_duration.max() / _NS_PER_S) if len(dd_duration) else 0.0
    m["avg_drawdown_duration_s"] = _num(dd_duration.mean() / _NS_PER_S) if len(dd_duration) else 0.0

    m.update(_trade_stats(trades, ts_ns))
    m["orders_skipped"] = sim.orders_skipped
    m["liquidated"] = int(bool((trades.reason == EXIT_LIQUIDATION).any()))
    m.update(_daily_stats(equity, context, initial))
    return {key: m[key] for key in METRIC_DEFINITIONS}
