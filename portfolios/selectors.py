"""Reads for portfolio runs, scoped to their owner: the runs, their instruments, trades and
equity curves (a cache hit reads those of the run that computed its result)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.db.models import Prefetch, QuerySet

from accounts.models import User
from backtests.selectors import curve_frame
from portfolios.models import PortfolioInstrument, PortfolioRun, PortfolioTrade
from portfolios.services import EQUITY_ARTIFACT


def portfolio_list(*, user: User) -> QuerySet[PortfolioRun]:
    """`user`'s own runs, newest first, with their instruments in order."""
    return (
        PortfolioRun.objects.filter(owner=user)
        .select_related("owner")
        .prefetch_related(Prefetch("members", queryset=members()))
        .order_by("-created_at", "-id")
    )


def members() -> QuerySet[PortfolioInstrument]:
    """A run's members in order, each with its instrument (for a Prefetch of "members")."""
    return PortfolioInstrument.objects.select_related("instrument").order_by("position")


def portfolio_get(*, user: User, run_id: int) -> PortfolioRun | None:
    return portfolio_list(user=user).filter(pk=run_id).first()


def result_run_id(run: PortfolioRun) -> int:
    """The id of the run whose trades a run shows: its own, or that of the run its cache hit
    shares (read from the row, without loading that run)."""
    return run.shared_from_id if run.cache_hit and run.shared_from_id is not None else run.pk


def instrument_symbols(run: PortfolioRun) -> list[str]:
    """The run's symbols in its order (uses the prefetch of portfolio_list when there)."""
    members = sorted(run.members.all(), key=lambda m: m.position)
    return [member.instrument.symbol for member in members]


def portfolio_trades(*, run: PortfolioRun) -> QuerySet[PortfolioTrade]:
    return (
        PortfolioTrade.objects.filter(run_id=result_run_id(run))
        .select_related("instrument")
        .order_by("entry_time", "id")
    )


def per_instrument_rows(run: PortfolioRun) -> list[dict[str, Any]]:
    """One row per instrument (contribution, mean exposure, turnover, missing bars, trade
    statistics) as the engine computed them; empty until the run has succeeded."""
    rows = run.metrics.get("per_instrument") if isinstance(run.metrics, dict) else None
    return list(rows) if isinstance(rows, list) else []


def headline_metrics(run: PortfolioRun) -> dict[str, Any]:
    """The run's metrics without the per-instrument rows."""
    if not isinstance(run.metrics, dict):
        return {}
    return {k: v for k, v in run.metrics.items() if k != "per_instrument"}


def equity_frame(run: PortfolioRun) -> pd.DataFrame:
    """The run's equity and drawdown curves, indexed by bar time; empty until it succeeds."""
    return curve_frame(params_hash=run.params_hash, name=EQUITY_ARTIFACT)
