"""One time window of a finished run, shaped for the run page's zoomable chart.

The candles of the window are merged server-side into at most `max_bars` drawn candles
(buckets of k consecutive bars: open of the first, highest high, lowest low, close of the
last, time of the first), so a million-bar run is explored from the whole range down to
single bars by asking for narrower windows. With them come the strategy's own indicator
lines on the same buckets, every trade with an entry or exit in the window, and the equity,
drawdown and buy-and-hold curves of the window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db.models import Q

from backtests import selectors
from backtests.models import BacktestRun
from marketdata.selectors import candle_list, candles_window
from strategies.library.base import OSCILLATOR_PREFIX
from strategies.library.registry import get_kind

DEFAULT_MAX_BARS = 1500
MAX_BARS_CAP = 5000
# Trades sent for one window at most; a run has this many in a window only when the window
# is wide, and zooming in shows the rest.
MAX_TRADES = 20_000
# Indicators are computed over this many times the kind's warm-up before the window, so
# lines that remember further back (EMA, Wilder's RSI) have converged to the run's values.
LOOKBACK_WARMUPS = 10
# Runs whose equity curves this process keeps, newest used last: a params hash names one
# result for good, so a kept curve is never stale.
EQUITY_FRAMES_KEPT = 2
_equity_frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
_equity_lock = threading.Lock()
TRADE_FIELDS = (
    "id",
    "direction",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "pnl",
    "pnl_pct",
    "exit_reason",
    "is_open",
)


@dataclass(frozen=True)
class Window:
    """The half-open time range [start, end) a chart asked for, inside the run's range."""

    start: datetime
    end: datetime


def window_of(run: BacktestRun, start: datetime | None, end: datetime | None) -> Window:
    """[start, end] as asked (both inclusive, open ends meaning the run's own), clipped to
    the run's range; `end` becomes exclusive one microsecond later. It may come out empty
    when the request lies outside the run."""
    # Clipped before any arithmetic: a datetime near year 9999 may not be moved further.
    lo = run.start if start is None or start <= run.start else min(start, run.end)
    hi = run.end if end is None or end >= run.end else end + timedelta(microseconds=1)
    return Window(start=lo, end=max(lo, hi))


def bucket_size(bars: int, max_bars: int) -> int:
    """Bars per drawn candle: the fewest that keep `bars` within `max_bars` candles."""
    return max(1, -(-bars // max(1, max_bars)))


def bucket_ohlc(candles: pd.DataFrame, size: int) -> pd.DataFrame:
    """Consecutive groups of `size` bars as one candle each (the last group may be short):
    open of the first bar, highest high, lowest low, close of the last, volume summed, at
    the first bar's time."""
    count = len(candles)
    if size <= 1 or count == 0:
        return candles[["open", "high", "low", "close", "volume"]]
    starts = np.arange(0, count, size)
    lasts = np.minimum(starts + size, count) - 1
    return pd.DataFrame(
        {
            "open": candles["open"].to_numpy()[starts],
            "high": np.maximum.reduceat(candles["high"].to_numpy(), starts),
            "low": np.minimum.reduceat(candles["low"].to_numpy(), starts),
            "close": candles["close"].to_numpy()[lasts],
            "volume": np.add.reduceat(candles["volume"].to_numpy(), starts),
        },
        index=candles.index[starts],
    )


def bucket_last(values: np.ndarray, size: int) -> np.ndarray:
    """Each bucket's last value, for lines drawn over merged candles."""
    if size <= 1:
        return values
    return values[np.minimum(np.arange(0, len(values), size) + size, len(values)) - 1]


def _iso(index: pd.DatetimeIndex) -> list[str]:
    return list(index.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"))


def _floats(values: Any) -> list[float | None]:
    """JSON numbers, with null where a line has no value (warm-up, missing close)."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()  # type: ignore[no-any-return]
    return [v if ok else None for v, ok in zip(array.tolist(), finite.tolist(), strict=True)]


def _overlays(
    run: BacktestRun, candles: pd.DataFrame, skip: int, size: int
) -> list[dict[str, Any]]:
    lines = get_kind(run.kind).overlays(candles, run.parameters) if len(candles) else {}
    out = []
    for name, values in lines.items():
        oscillates = name.startswith(OSCILLATOR_PREFIX)
        out.append(
            {
                "name": name.removeprefix(OSCILLATOR_PREFIX),
                "axis": "oscillator" if oscillates else "price",
                "values": _floats(bucket_last(values[skip:], size)),
            }
        )
    return out


def _trades(run: BacktestRun, window: Window) -> tuple[list[dict[str, Any]], bool]:
    inside = Q(entry_time__gte=window.start, entry_time__lt=window.end) | Q(
        exit_time__gte=window.start, exit_time__lt=window.end
    )
    rows = list(
        selectors.backtest_trades(run=selectors.result_run(run))
        .filter(inside)
        .values(*TRADE_FIELDS)[: MAX_TRADES + 1]
    )
    for row in rows:  # strict JSON has no NaN: a missing number is null
        for name in ("entry_price", "exit_price", "pnl", "pnl_pct"):
            value = row[name]
            if value is not None and not np.isfinite(value):
                row[name] = None
    return rows[:MAX_TRADES], len(rows) > MAX_TRADES


def _equity(run: BacktestRun) -> pd.DataFrame:
    """The run's stored curves, kept in the process for the next windows of the same run
    (a million bars' curves take a few hundred milliseconds to read); shared, not modified."""
    with _equity_lock:
        frame = _equity_frames.get(run.params_hash)
        if frame is not None:
            _equity_frames.move_to_end(run.params_hash)
            return frame
    frame = selectors.equity_frame(run)
    if not isinstance(frame.index, pd.DatetimeIndex):  # no stored curve (an empty frame)
        return pd.DataFrame({"equity": [], "drawdown": []}, index=pd.DatetimeIndex([], tz="UTC"))
    with _equity_lock:
        _equity_frames[run.params_hash] = frame
        while len(_equity_frames) > EQUITY_FRAMES_KEPT:
            _equity_frames.popitem(last=False)
    return frame


def _curves(run: BacktestRun, window: Window, closes: pd.Series, max_points: int) -> dict[str, Any]:
    frame = _equity(run)
    lo, hi = frame.index.searchsorted([pd.Timestamp(window.start), pd.Timestamp(window.end)])
    frame = frame.iloc[lo:hi]
    frame = selectors.curve_thin(frame, max_points=max_points)
    first_close = (
        candle_list(
            instrument_id=run.instrument_id, timeframe=run.timeframe, start=run.start, end=run.end
        )
        .values_list("close", flat=True)
        .first()
    )
    if first_close:
        hold = closes.reindex(frame.index) * float(run.initial_capital) / first_close
    else:
        hold = pd.Series(np.nan, index=frame.index)
    return {
        "ts": _iso(pd.DatetimeIndex(frame.index)),
        "equity": _floats(frame["equity"]),
        "drawdown_pct": _floats(frame["drawdown"] * 100.0),
        "buy_hold": _floats(hold),
    }


def chart_window(
    *,
    run: BacktestRun,
    start: datetime | None = None,
    end: datetime | None = None,
    max_bars: int = DEFAULT_MAX_BARS,
) -> dict[str, Any]:
    """The chart of `run` (succeeded) over [start, end], at most `max_bars` drawn candles."""
    max_bars = max(1, min(max_bars, MAX_BARS_CAP))
    window = window_of(run, start, end)
    kind = get_kind(run.kind)
    lookback = LOOKBACK_WARMUPS * kind.warmup_bars(kind.validate(run.parameters))
    candles, skip = candles_window(
        instrument_id=run.instrument_id,
        timeframe=run.timeframe,
        start=window.start,
        end=window.end,
        range_start=run.start,
        range_end=run.end,
        lookback=lookback,
    )
    shown = candles.iloc[skip:]
    size = bucket_size(len(shown), max_bars)
    drawn = bucket_ohlc(shown, size)
    trades, truncated = _trades(run, window)
    return {
        "run": run.pk,
        "timeframe": run.timeframe,
        "start": window.start,
        "end": window.end,
        "run_start": run.start,
        "run_end": run.end,
        "bars": len(shown),
        "bucket_bars": size,
        "candles": {
            "ts": _iso(pd.DatetimeIndex(drawn.index)),
            "open": _floats(drawn["open"]),
            "high": _floats(drawn["high"]),
            "low": _floats(drawn["low"]),
            "close": _floats(drawn["close"]),
            "volume": _floats(drawn["volume"]),
        },
        "overlays": _overlays(run, candles, skip, size),
        "trades": trades,
        "trades_truncated": truncated,
        "curves": _curves(run, window, shown["close"], max_bars),
    }
