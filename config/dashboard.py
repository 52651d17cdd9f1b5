"""What the back-office index shows above the tables: open positions, realised PnL today and
this month, the backtests and sweeps in progress, the latest fills and the result cache.

config is the top layer, so this reads every app's models and selectors. Each block costs a
few queries whose size does not grow with the tables (index lookups, a month of daily
rollups, aggregates computed by the database), and is only computed for staff who may view
the table it summarises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from backtests.models import BacktestRun, RunStatus, Sweep
from backtests.selectors import run_stats
from marketdata.models import Candle
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.selectors import cache_stats
from trading.models import Fill, Position, Trade, TradeRollup

ZERO = Decimal(0)
POSITIONS_SHOWN = 20
JOBS_SHOWN = 10
FILLS_SHOWN = 10
ACTIVE = (RunStatus.RUNNING, RunStatus.QUEUED)


def _may_view(user: User, model: type[Any]) -> bool:
    # The admin's rule: the change permission includes the right to look.
    opts = model._meta
    return user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
        f"{opts.app_label}.change_{opts.model_name}"
    )


# --- Open positions ------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenPosition:
    position: Position
    mark_price: Decimal | None

    @property
    def side(self) -> str:
        return "long" if self.position.quantity > 0 else "short"

    @property
    def unrealised_pnl(self) -> Decimal | None:
        if self.mark_price is None:
            return None
        pnl = self.position.quantity * (self.mark_price - self.position.avg_entry_price)
        return pnl.quantize(Decimal("0.01"))


@dataclass(frozen=True)
class OpenPositions:
    rows: list[OpenPosition]
    total: int


def _latest_close(timeframe: str) -> Subquery:
    return Subquery(
        Candle.objects.filter(instrument=OuterRef("instrument_id"), timeframe=timeframe)
        .order_by("-ts")
        .values("close")[:1]
    )


def open_positions(*, limit: int = POSITIONS_SHOWN) -> OpenPositions:
    """Open positions, largest first by entry notional, each marked at the latest close of
    its instrument's finest stored timeframe (one index probe per timeframe, stopping at the
    first that has bars); no bars at all means no mark and no unrealised PnL."""
    # Only open rows: both partial unique indexes on open positions (with and without a
    # strategy) cover this filter, so it never reads the closed history.
    opened = Position.objects.filter(
        Q(strategy__isnull=False) | Q(strategy__isnull=True), status=Position.Status.OPEN
    )
    marks = Coalesce(*(_latest_close(tf) for tf in TIMEFRAME_SECONDS))
    rows = (
        opened.select_related("instrument", "strategy", "owner")
        .annotate(mark=marks)
        .order_by("instrument__symbol", "owner_id", "strategy_id")[:limit]
    )
    return OpenPositions(
        rows=[
            OpenPosition(row, Decimal(repr(row.mark)) if row.mark is not None else None)  # type: ignore[attr-defined]
            for row in rows
        ],
        total=opened.count(),
    )


# --- Realised PnL --------------------------------------------------------------------------


@dataclass(frozen=True)
class PnlDay:
    day: date
    net_pnl: Decimal
    trades: int


@dataclass(frozen=True)
class RealisedPnl:
    today: Decimal
    month: Decimal
    trades_today: int
    trades_month: int
    month_start: date
    # Every day of the month so far, with no trades as zero: what the bar chart draws.
    days: list[PnlDay]


def realised_pnl(*, now: datetime | None = None) -> RealisedPnl:
    """Net PnL (after fees) of the trades closed today and this month, UTC days.

    From the daily trade rollups the services keep with the trades: at most a month of
    days, summed over owners and series by the database. A position's partial exits count
    on the day its trade closes, as the trade summary counts them.
    """
    today = (now or timezone.now()).astimezone(UTC).date()
    month_start = today.replace(day=1)
    per_day = {
        row["day"]: PnlDay(row["day"], row["net_pnl"], int(row["trades"]))
        for row in TradeRollup.objects.filter(day__gte=month_start, day__lte=today)
        .values("day")
        .annotate(net_pnl=Sum("net_pnl"), trades=Sum("trades"))
        .order_by("day")
    }
    days = [
        per_day.get(day) or PnlDay(day, ZERO, 0)
        for day in (
            month_start + timedelta(days=offset) for offset in range((today - month_start).days + 1)
        )
    ]
    return RealisedPnl(
        today=days[-1].net_pnl,
        month=sum((d.net_pnl for d in days), ZERO),
        trades_today=days[-1].trades,
        trades_month=sum(d.trades for d in days),
        month_start=month_start,
        days=days,
    )


def pnl_chart_data(pnl: RealisedPnl) -> dict[str, list[str]]:
    """The month's daily bars for the page's chart: days as ISO dates, PnL as exact strings."""
    return {
        "days": [d.day.isoformat() for d in pnl.days],
        "net_pnl": [format(d.net_pnl, "f") for d in pnl.days],
    }


# --- Jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveJobs:
    rows: list[Any]
    running: int
    queued: int


def _active(jobs: QuerySet[Any], limit: int) -> ActiveJobs:
    active = jobs.filter(status__in=ACTIVE)
    counts = active.order_by().aggregate(
        running=Count("id", filter=Q(status=RunStatus.RUNNING)),
        queued=Count("id", filter=Q(status=RunStatus.QUEUED)),
    )
    # Running first, then the queue in the order it was submitted.
    rows = active.select_related("strategy", "instrument", "owner").order_by(
        "-status", "created_at", "id"
    )[:limit]
    return ActiveJobs(rows=list(rows), running=counts["running"], queued=counts["queued"])


def active_runs(*, limit: int = JOBS_SHOWN) -> ActiveJobs:
    return _active(BacktestRun.objects.all(), limit)


def active_sweeps(*, limit: int = JOBS_SHOWN) -> ActiveJobs:
    return _active(Sweep.objects.all(), limit)


# --- Fills and the cache -------------------------------------------------------------------


def recent_fills(*, limit: int = FILLS_SHOWN) -> list[Fill]:
    """The fills recorded last. By id, the primary key's order: the fill time has no index
    of its own across owners, and sorting every fill by it would read the whole table."""
    return list(
        Fill.objects.select_related("order", "order__instrument", "owner").order_by("-id")[:limit]
    )


@dataclass(frozen=True)
class CacheRates:
    hit_rate: float | None  # hits / (hits + entries) over the stored results
    hits: int
    entries: int
    runs_answered_rate: float | None  # share of submitted runs answered from the cache
    runs_answered: int
    runs: int


def cache_rates() -> CacheRates:
    """What CacheStatsView reports: the cache's own hit rate and the submits it answered."""
    cache, runs = cache_stats(), run_stats()
    return CacheRates(
        hit_rate=cache["hit_rate"],
        hits=cache["hits"],
        entries=cache["entries"],
        runs_answered_rate=runs["cache_hit_rate"],
        runs_answered=runs["cache_hits"],
        runs=runs["total"],
    )


# --- The page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    positions: OpenPositions | None = None
    pnl: RealisedPnl | None = None
    pnl_chart: dict[str, list[str]] | None = None
    runs: ActiveJobs | None = None
    sweeps: ActiveJobs | None = None
    fills: list[Fill] | None = None
    cache: CacheRates | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


def dashboard(*, user: User) -> Dashboard:
    """The blocks `user` may see, each computed only when they may see it."""
    # The rollups are an internal table, but what they sum is the trades.
    pnl = realised_pnl() if _may_view(user, Trade) else None
    return Dashboard(
        positions=open_positions() if _may_view(user, Position) else None,
        pnl=pnl,
        pnl_chart=pnl_chart_data(pnl) if pnl is not None else None,
        runs=active_runs() if _may_view(user, BacktestRun) else None,
        sweeps=active_sweeps() if _may_view(user, Sweep) else None,
        fills=recent_fills() if _may_view(user, Fill) else None,
        cache=cache_rates() if _may_view(user, BacktestRun) else None,
    )
