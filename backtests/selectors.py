"""Reads for backtest runs, their trades and sweeps, scoped to what the caller may see."""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.db.models import Count, Q, QuerySet

from accounts.models import User
from backtests.models import BacktestRun, BacktestTrade, RunStatus, Sweep


def backtest_list(*, user: User) -> QuerySet[BacktestRun]:
    """Runs `user` may see: their own, or every run for staff."""
    runs = BacktestRun.objects.select_related("instrument", "strategy", "owner")
    return runs if user.is_staff else runs.filter(owner=user)


def backtest_get(*, user: User, run_id: int) -> BacktestRun | None:
    return backtest_list(user=user).filter(pk=run_id).first()


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
