"""What a finished run says beyond its metrics, and a sweep's results as a surface.

Calendar returns compounded from the equity curve, the spread of trade outcomes, the trades
broken down by exit reason and by holding time, and a sweep's metric over two of its
parameters. Pure pandas: frames and result rows in, plain JSON-ready data out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# Holding-time buckets, [lower, upper) in seconds.
DURATION_BUCKETS: list[tuple[str, float, float]] = [
    ("< 1 h", 0, 3_600),
    ("1\N{EN DASH}4 h", 3_600, 4 * 3_600),
    ("4\N{EN DASH}24 h", 4 * 3_600, 86_400),
    ("1\N{EN DASH}7 d", 86_400, 7 * 86_400),
    ("> 7 d", 7 * 86_400, math.inf),
]


def _number(value: Any) -> float | None:
    """A finite float, or None for NaN, infinities and missing values (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- Calendar returns ---------------------------------------------------------------------


def monthly_returns(equity: pd.Series, *, start_equity: float | None = None) -> dict[str, Any]:
    """Each calendar month's return in %, a row per year, and each year's compounded total.

    A month's return compares its last equity with the previous month's last (the first
    month with `start_equity`, else the curve's first value). Months inside the curve's
    span without a bar return 0; months outside it are None.
    """
    curve = equity.dropna().astype(float)
    if curve.empty:
        return {"years": [], "months": MONTHS, "returns": [], "year_totals": []}
    month_end = curve.resample("ME").last().ffill()
    previous = month_end.shift(1)
    previous.iloc[0] = curve.iloc[0] if start_equity is None else float(start_equity)
    growth = month_end / previous
    years = sorted({stamp.year for stamp in growth.index})
    table: dict[int, list[float | None]] = {year: [None] * 12 for year in years}
    for stamp, factor in growth.items():
        table[stamp.year][stamp.month - 1] = _number((factor - 1) * 100)  # type: ignore[attr-defined]
    # Compounded: the year's total is the product of its months' growth factors.
    totals = growth.groupby(growth.index.year).prod()  # type: ignore[attr-defined]
    return {
        "years": years,
        "months": MONTHS,
        "returns": [table[year] for year in years],
        "year_totals": [_number((totals[year] - 1) * 100) for year in years],
    }


# --- Trades -------------------------------------------------------------------------------


def closed_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Trades closed before the end: what the run's trade metrics count, and so do these."""
    if trades.empty:
        return trades
    return trades[~trades["is_open"].astype(bool)]


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at least `raw`."""
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def pnl_histogram(trades: pd.DataFrame, *, bins: int = 20) -> dict[str, Any]:
    """Closed trades' pnl % in bins of a round width with 0 on an edge, so that no bin mixes
    winners (pnl > 0) and losers; counted separately so a chart can colour them."""
    closed = closed_trades(trades)
    if closed.empty:
        return {"edges": [], "winners": [], "losers": [], "trades": 0}
    pct = closed["pnl_pct"].astype(float)
    won = closed["pnl"].astype(float) > 0
    low, high = min(float(pct.min()), 0.0), max(float(pct.max()), 0.0)
    width = _nice_step((high - low) / bins) if high > low else 1.0
    first, last = math.floor(low / width), math.ceil(high / width)
    edges = np.arange(first, max(last, first + 1) + 1) * width
    winners, _ = np.histogram(pct[won], bins=edges)
    losers, _ = np.histogram(pct[~won], bins=edges)
    return {
        "edges": [float(edge) for edge in edges],
        "winners": winners.tolist(),
        "losers": losers.tolist(),
        "trades": len(closed),
    }


def _trade_stats(group: pd.DataFrame) -> dict[str, Any]:
    count = len(group)
    if count == 0:
        return {
            "count": 0,
            "win_rate_pct": None,
            "total_pnl": 0.0,
            "avg_pnl": None,
            "avg_pnl_pct": None,
        }
    pnl = group["pnl"].astype(float)
    return {
        "count": count,
        "win_rate_pct": _number((pnl > 0).mean() * 100),
        "total_pnl": _number(pnl.sum()),
        "avg_pnl": _number(pnl.mean()),
        "avg_pnl_pct": _number(group["pnl_pct"].astype(float).mean()),
    }


def exit_reason_breakdown(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Per exit reason of the closed trades: count, win rate, total and average pnl; the
    most frequent reason first."""
    closed = closed_trades(trades)
    if closed.empty:
        return []
    rows = [
        {"reason": str(reason), **_trade_stats(group)}
        for reason, group in closed.groupby("exit_reason", sort=True)
    ]
    return sorted(rows, key=lambda row: -row["count"])


def duration_breakdown(trades: pd.DataFrame) -> list[dict[str, Any]]:
    """Per holding-time bucket (DURATION_BUCKETS) of the closed trades: count, win rate,
    total and average pnl. Every bucket is listed, empty ones with a count of 0."""
    closed = closed_trades(trades)
    empty = closed.iloc[0:0]
    if closed.empty:
        groups: dict[str, pd.DataFrame] = {}
    else:
        bucket = pd.cut(
            closed["duration_seconds"].astype(float),
            bins=[low for _, low, _ in DURATION_BUCKETS] + [math.inf],
            right=False,
            labels=[label for label, _, _ in DURATION_BUCKETS],
        )
        groups = {str(label): group for label, group in closed.groupby(bucket, observed=True)}
    return [
        {"bucket": label, **_trade_stats(groups.get(label, empty))}
        for label, _, _ in DURATION_BUCKETS
    ]


# --- Sweep surfaces -----------------------------------------------------------------------

AGGREGATES = ("max", "min", "mean", "median")
VALUE = "__value__"


@dataclass(frozen=True)
class AxisRule:
    """What a heatmap does with a varied parameter that is on neither axis: keep only the
    combinations where it equals `value` ("at"), or fold its values with an aggregate."""

    kind: str  # "at" or one of AGGREGATES
    value: Any = None


def sweep_surface(
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str,
    axes: Sequence[tuple[str, Sequence[Any]]],
    rules: Mapping[str, AxisRule],
    minimize: bool = False,
    best: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A sweep's `metric` over one or two parameters: `axes` is [(x, x values)] or with
    (y, y values) too; every other varied parameter follows its rule in `rules`.

    Aggregates fold in the order of `rules`. Each cell also names the combination it opens:
    the one combination there, or (when folded) the best of the combinations it covers. The
    best combination's cell is given when that combination is in view (not sliced away).
    Returns z as a row per y value (a flat list with one axis), None where nothing ran.
    """
    names = [name for name, _ in axes]
    frame = pd.DataFrame.from_records(
        [{**row["params"], VALUE: _number(row.get("metrics", {}).get(metric))} for row in rows]
    )
    for name in [*names, *rules, VALUE]:
        if name not in frame:
            frame[name] = None
    frame[VALUE] = frame[VALUE].astype(float)
    for name, rule in rules.items():
        if rule.kind == "at":
            frame = frame[frame[name] == rule.value]
    frame = frame.dropna(subset=[VALUE])

    folded = frame[[*names, *rules, VALUE]]
    for name, rule in rules.items():
        if rule.kind != "at":
            keep = [column for column in folded.columns if column not in (name, VALUE)]
            folded = folded.groupby(keep, dropna=False)[VALUE].agg(rule.kind).reset_index()
    values = folded.groupby(names, dropna=False)[VALUE].first() if len(folded) else pd.Series()
    counts = frame.groupby(names, dropna=False).size() if len(frame) else pd.Series()
    if len(frame):
        grouped = frame.groupby(names, dropna=False)[VALUE]
        chosen = grouped.idxmin() if minimize else grouped.idxmax()
    else:
        chosen = pd.Series()
    params_of = frame.drop(columns=[VALUE]).to_dict(orient="index") if len(frame) else {}

    def cell(key: Any) -> tuple[float | None, dict[str, Any] | None, int]:
        if key not in values.index:
            return None, None, 0
        combo = {k: _plain(v) for k, v in params_of[chosen[key]].items()}
        return _number(values[key]), combo, int(counts[key])

    x_values = list(axes[0][1])
    if len(axes) == 1:
        cells = [cell(x) for x in x_values]
        z: list[Any] = [value for value, _, _ in cells]
        combos: list[Any] = [combo for _, combo, _ in cells]
        covered: list[Any] = [count for _, _, count in cells]
    else:
        y_values = list(axes[1][1])
        grid = [[cell((x, y)) for x in x_values] for y in y_values]
        z = [[value for value, _, _ in line] for line in grid]
        combos = [[combo for _, combo, _ in line] for line in grid]
        covered = [[count for _, _, count in line] for line in grid]

    best_cell = None
    sliced_at_best = best is not None and all(
        best.get(name) == rule.value for name, rule in rules.items() if rule.kind == "at"
    )
    if best is not None and sliced_at_best and all(best.get(n) in v for n, v in axes):
        x_index = list(axes[0][1]).index(best[axes[0][0]])
        y_index = list(axes[1][1]).index(best[axes[1][0]]) if len(axes) > 1 else None
        best_cell = {
            "x_index": x_index,
            "y_index": y_index,
            "value": z[x_index] if y_index is None else z[y_index][x_index],
        }
    return {"z": z, "combos": combos, "counts": covered, "best": best_cell}


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, for JSON."""
    return value.item() if hasattr(value, "item") else value
