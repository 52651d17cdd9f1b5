"""Reads for backtest runs, their trades, equity curves and sweeps, scoped to what the
caller may see; and the thinning that keeps a curve small enough to draw or export."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from django.db.models import Count, Q, QuerySet

from accounts.models import User
from backtests.models import BacktestRun, BacktestTrade, RunStatus, Sweep
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load
from strategies.selectors import strategy_get

# The artifact a succeeded run's equity and drawdown curves are saved as, per params hash.
EQUITY_ARTIFACT = "equity.parquet"


def backtest_list(*, user: User) -> QuerySet[BacktestRun]:
    """Runs `user` may see: their own, or every run for staff."""
    runs = BacktestRun.objects.select_related("instrument", "strategy", "owner")
    return runs if user.is_staff else runs.filter(owner=user)


def backtest_get(*, user: User, run_id: int) -> BacktestRun | None:
    return backtest_list(user=user).filter(pk=run_id).first()


def strategy_runs(*, user: User, strategy_id: int) -> QuerySet[BacktestRun] | None:
    """`user`'s runs of one of their own strategies, newest first; None when the strategy is
    not theirs (or does not exist), staff included, as the strategy API scopes them."""
    strategy = strategy_get(user=user, strategy_id=strategy_id)
    if strategy is None:
        return None
    return (
        BacktestRun.objects.select_related("instrument", "strategy", "owner")
        .filter(strategy=strategy, owner=user)
        .order_by("-created_at", "-id")
    )


def backtest_trades(*, run: BacktestRun) -> QuerySet[BacktestTrade]:
    """The run's trades; a cache hit shows those of the run that computed the result."""
    source_id = run.shared_from_id if run.cache_hit and run.shared_from_id else run.pk
    return BacktestTrade.objects.filter(run_id=source_id).order_by("entry_time", "id")


TRADE_EXPORT_COLUMNS = [
    "direction",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "quantity",
    "pnl",
    "pnl_pct",
    "fees",
    "duration_seconds",
    "exit_reason",
    "is_open",
]


def trade_frame(run: BacktestRun) -> pd.DataFrame:
    rows = list(backtest_trades(run=run).values_list(*TRADE_EXPORT_COLUMNS))
    return pd.DataFrame(rows, columns=TRADE_EXPORT_COLUMNS)


def result_run(run: BacktestRun) -> BacktestRun:
    """The run whose trades a run shows: itself, or the run its cache hit shares."""
    return run.shared_from if run.cache_hit and run.shared_from is not None else run


def curve_frame(*, params_hash: str, name: str) -> pd.DataFrame:
    """The equity and drawdown curves stored as `name` for `params_hash`, indexed by bar
    time; empty when none is stored (yet)."""
    artifact = artifact_for_hash(params_hash=params_hash, name=name)
    if artifact is None:
        return pd.DataFrame({"equity": [], "drawdown": []})
    return pd.read_parquet(io.BytesIO(artifact_load(artifact=artifact)))


def equity_frame(run: BacktestRun) -> pd.DataFrame:
    """The run's equity and drawdown curves, indexed by bar time; empty until it succeeds.

    A cache hit has the params hash of the run that computed it, so it finds that curve.
    """
    return curve_frame(params_hash=run.params_hash, name=EQUITY_ARTIFACT)


def equity_parquet_file(run: BacktestRun) -> bytes:
    """The run's equity and drawdown curves as a parquet file: the stored artifact's bytes as
    they are, never decoded and encoded again; an empty curve's file until it succeeds."""
    artifact = artifact_for_hash(params_hash=run.params_hash, name=EQUITY_ARTIFACT)
    if artifact is not None:
        return artifact_load(artifact=artifact)
    buffer = io.BytesIO()
    pd.DataFrame({"equity": [], "drawdown": []}).to_parquet(buffer)
    return buffer.getvalue()


def curve_thin(frame: pd.DataFrame, *, max_points: int) -> pd.DataFrame:
    """At most `max_points` evenly spaced rows of a curve, for a chart or a sheet.

    The first and last rows are always kept, so a thinned curve still starts and ends on
    the true values (the final equity above all).
    """
    if len(frame) <= max_points:
        return frame
    if max_points < 2:
        return frame.iloc[len(frame) - max(max_points, 0) :]
    keep = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[keep]


def sweep_list(*, user: User) -> QuerySet[Sweep]:
    sweeps = Sweep.objects.select_related("instrument", "strategy", "owner")
    return sweeps if user.is_staff else sweeps.filter(owner=user)


def sweep_get(*, user: User, sweep_id: int) -> Sweep | None:
    return sweep_list(user=user).filter(pk=sweep_id).first()


def run_stats() -> dict[str, Any]:
    """How often submits were answered from the cache, and what is running now."""
    counts = BacktestRun.objects.aggregate(
        total=Count("id"),
        cache_hits=Count("id", filter=Q(cache_hit=True)),
        running=Count("id", filter=Q(status=RunStatus.RUNNING)),
        queued=Count("id", filter=Q(status=RunStatus.QUEUED)),
    )
    total = counts["total"]
    return {
        **counts,
        "cache_hit_rate": round(counts["cache_hits"] / total, 4) if total else None,
    }
