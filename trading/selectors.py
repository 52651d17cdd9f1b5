"""Reads of the trading ledger, scoped to the caller (staff see everything), and replays of
its position streams.

Aggregates (the trade summary, the portfolio) are computed by the database: the rows never
come to Python, so a summary over a million trades costs one pass over an index or table.
A replay recomputes a position from its events, from the newest snapshot or from any point
in time, with the accounting the services use (`apply_fill`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any

from auditlog.models import LogEntry
from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DecimalField,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, TruncDate
from django.utils import timezone

from accounts.models import User
from marketdata.models import Candle, Instrument
from persistence.events import stream_tail
from persistence.models import Event
from strategies.models import Strategy
from trading.accounting import PRECISION, PositionState, apply_fill, instrument_scales
from trading.models import MONEY, Fill, Order, Position, Trade, TradeRollup, TradeStreakRollup
from trading.rollups import STREAK_FIELDS, streaks_fold
from trading.streams import POSITION_STREAM_PREFIX, position_stream

ZERO = Decimal(0)
_MONEY = DecimalField(**MONEY)


def _scoped(queryset: QuerySet[Any], user: User) -> QuerySet[Any]:
    return queryset if user.is_staff else queryset.filter(owner=user)


def order_list(*, user: User) -> QuerySet[Order]:
    return _scoped(Order.objects.select_related("instrument", "strategy"), user)


def fill_list(*, user: User) -> QuerySet[Fill]:
    return _scoped(Fill.objects.select_related("order", "order__instrument"), user)


def position_list(*, user: User) -> QuerySet[Position]:
    return _scoped(Position.objects.select_related("instrument", "strategy"), user)


# What a trade row shows (trading.api.TradeSerializer), for the ledger's biggest list: these
# columns and the symbol as an annotation, rather than three full instances (trade,
# instrument, strategy). The list reads them as dicts (.values()); a single trade as one
# Trade with only these columns loaded.
TRADE_ROW_FIELDS = (
    "id",
    "owner_id",
    "instrument_id",
    "strategy_id",
    "position_id",
    "direction",
    "status",
    "quantity",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "pnl",
    "pnl_pct",
    "fees",
    "exit_reason",
)


def trade_list(*, user: User) -> QuerySet[Trade]:
    """The caller's trades, annotated with `symbol`, loading only the columns a row shows."""
    trades = Trade.objects.annotate(symbol=F("instrument__symbol")).only(*TRADE_ROW_FIELDS)
    return _scoped(trades, user)


def event_list(*, user: User) -> QuerySet[Event]:
    """Events of the caller's order and position streams (stream names carry the ids)."""
    events = Event.objects.all()
    if user.is_staff:
        return events
    own_orders = Order.objects.filter(owner=user).annotate(
        stream=Concat(Value("order-"), Cast("id", CharField()), output_field=CharField())
    )
    return events.filter(
        Q(stream__startswith=f"position-{user.pk}-")
        | Q(stream__in=Subquery(own_orders.values("stream")))
    )


def audit_list() -> QuerySet[LogEntry]:
    return LogEntry.objects.select_related("actor", "content_type")


# --- Trade summary ------------------------------------------------------------------------


def _ratio(numerator: Decimal | None, denominator: Decimal | int | None) -> Decimal | None:
    if numerator is None or not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.00000001"))


def trade_summary(
    *,
    trades: QuerySet[Trade],
    user: User | None = None,
    filters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Statistics of the closed trades in `trades`; a trade wins when its net PnL is positive.

    With the caller and the TradeFilter's cleaned `filters`, the answer comes from the daily
    rollups where they can give it exactly (see `_summary_from_rollups`); otherwise, and
    always without them, from a scan of the trades.
    """
    if user is not None and filters is not None:
        summary = _summary_from_rollups(user=user, filters=filters)
        if summary is not None:
            return summary
    return _summary_scan(trades)


def _summary_scan(trades: QuerySet[Trade]) -> dict[str, Any]:
    closed = trades.filter(status=Trade.Status.CLOSED).annotate(net=F("pnl") - F("fees"))
    # Strip select_related and ordering: they only slow the aggregates down.
    closed = closed.select_related(None).order_by()
    win, loss = Q(net__gt=0), Q(net__lt=0)
    totals = closed.aggregate(
        trades=Count("id"),
        wins=Count("id", filter=win),
        losses=Count("id", filter=loss),
        gross_pnl=Sum("pnl"),
        fees=Sum("fees"),
        net_pnl=Sum("net"),
        gross_profit=Sum("net", filter=win),
        gross_loss=Sum("net", filter=loss),
        best_trade=Max("net"),
        worst_trade=Min("net"),
    )
    by_symbol = (
        closed.values(symbol=F("instrument__symbol"))
        .annotate(trades=Count("id"), wins=Count("id", filter=win), net_pnl=Sum("net"))
        .order_by("symbol")
    )
    by_strategy = (
        closed.values("strategy_id", strategy_name=F("strategy__name"))
        .annotate(trades=Count("id"), wins=Count("id", filter=win), net_pnl=Sum("net"))
        .order_by("strategy_id")
    )
    daily = (
        closed.annotate(day=TruncDate("exit_time"))
        .values("day")
        .annotate(trades=Count("id"), net_pnl=Sum("net"))
        .order_by("day")
    )
    return _summary(totals, by_symbol, by_strategy, daily, _streaks(closed))


def _summary(
    totals: dict[str, Any],
    by_symbol: Iterable[Any],
    by_strategy: Iterable[Any],
    daily: Iterable[Any],
    streaks: dict[int, int],
) -> dict[str, Any]:
    count, wins, losses = totals["trades"] or 0, totals["wins"] or 0, totals["losses"] or 0
    gross_loss = totals["gross_loss"]
    cumulative = ZERO
    daily_series = []
    for row in daily:
        cumulative += row["net_pnl"]
        daily_series.append({**row, "cumulative_pnl": cumulative})
    return {
        "trades": count,
        "wins": wins,
        "losses": losses,
        "win_rate": _ratio(Decimal(wins), count),
        "gross_pnl": totals["gross_pnl"] or ZERO,
        "fees": totals["fees"] or ZERO,
        "net_pnl": totals["net_pnl"] or ZERO,
        "gross_profit": totals["gross_profit"] or ZERO,
        "gross_loss": gross_loss or ZERO,
        "profit_factor": _ratio(totals["gross_profit"] or ZERO, -gross_loss if gross_loss else 0),
        "expectancy": _ratio(totals["net_pnl"], count),
        "average_win": _ratio(totals["gross_profit"], wins),
        "average_loss": _ratio(gross_loss, losses),
        "best_trade": totals["best_trade"],
        "worst_trade": totals["worst_trade"],
        "max_consecutive_wins": streaks.get(1, 0),
        "max_consecutive_losses": streaks.get(-1, 0),
        "by_symbol": list(by_symbol),
        "by_strategy": list(by_strategy),
        "daily": daily_series,
    }


def _streaks(closed: QuerySet[Trade]) -> dict[int, int]:
    """Longest runs of wins (1) and losses (-1) in exit order, by gaps-and-islands in SQL.

    A run breaks wherever the outcome changes; a break-even trade breaks both kinds.
    """
    base = closed.values("id", "exit_time", "net")  # type: ignore[misc]
    base_sql, params = base.query.sql_with_params()
    sql = f"""
        WITH outcomes AS (
            SELECT id, exit_time,
                   CASE WHEN net > 0 THEN 1 WHEN net < 0 THEN -1 ELSE 0 END AS outcome
            FROM ({base_sql}) AS base
        ), marked AS (
            SELECT id, exit_time, outcome,
                   CASE WHEN outcome = LAG(outcome) OVER (ORDER BY exit_time, id)
                        THEN 0 ELSE 1 END AS starts_run
            FROM outcomes
        ), runs AS (
            SELECT outcome,
                   SUM(starts_run) OVER (
                       ORDER BY exit_time, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS run
            FROM marked
        )
        SELECT outcome, MAX(length) FROM (
            SELECT outcome, run, COUNT(*) AS length FROM runs GROUP BY outcome, run
        ) AS lengths GROUP BY outcome
    """  # noqa: S608 - base_sql is Django's own compiled query, values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {int(outcome): int(length) for outcome, length in cursor.fetchall()}


def _summary_from_rollups(*, user: User, filters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The summary from the daily rollups, or None where they cannot give it exactly.

    They cannot, and the caller scans the trades instead, when:
    - a filter other than symbol, strategy and status is set: start/end select by
      entry_time, side and exit_reason by columns the rollups do not keep, while the
      rollups bucket by exit day;
    - status leaves closed trades out (there is nothing to summarise then);
    - the current time zone is not UTC: the scan's days would be local days;
    - the trades come from several streak domains: streaks run over trades in exit order,
      and runs of two owners (or, with a symbol or strategy filter, of two series) that
      interleave cannot be merged day by day.
    """
    if timezone.get_current_timezone_name() != "UTC":
        return None
    for name, value in filters.items():
        if name == "status":
            if value and Trade.Status.CLOSED not in value:
                return None
        elif name not in ("symbol", "strategy") and value not in (None, "", [], ()):
            return None
    rows = _scoped(TradeRollup.objects.all(), user)
    symbols = filters.get("symbol") or []  # ids (trading.filters.KeysFilter)
    strategies = filters.get("strategy") or []
    if symbols:
        rows = rows.filter(instrument_id__in=symbols)
    if strategies:
        rows = rows.filter(strategy_id__in=strategies)
    if symbols or strategies:
        domains = rows.order_by().values_list("owner_id", "strategy_id", "instrument_id")
        if len(domains.distinct()[:2]) > 1:
            return None
        streak_days = rows.order_by("day").values_list(*STREAK_FIELDS)
    else:
        owners = _scoped(TradeStreakRollup.objects.all(), user)
        if user.is_staff and len(owners.order_by().values("owner_id").distinct()[:2]) > 1:
            return None
        streak_days = owners.order_by("day").values_list(*STREAK_FIELDS)
    totals = rows.aggregate(
        trades=Sum("trades"),
        wins=Sum("wins"),
        losses=Sum("losses"),
        gross_pnl=Sum("gross_pnl"),
        fees=Sum("fees"),
        net_pnl=Sum("net_pnl"),
        gross_profit=Sum("gross_profit"),
        gross_loss=Sum("gross_loss"),
        best_trade=Max("best"),
        worst_trade=Min("worst"),
    )
    per_day = {"trades": Sum("trades"), "net_pnl": Sum("net_pnl")}
    by_symbol = (
        rows.values(symbol=F("instrument__symbol"))
        .annotate(**per_day, wins=Sum("wins"))
        .order_by("symbol")
    )
    by_strategy = (
        rows.values("strategy_id", strategy_name=F("strategy__name"))
        .annotate(**per_day, wins=Sum("wins"))
        .order_by("strategy_id")
    )
    daily = rows.values("day").annotate(**per_day).order_by("day")
    streaks = streaks_fold(streak_days)
    return _summary(
        totals,
        by_symbol,
        by_strategy,
        daily,
        {1: streaks.max_win_run, -1: streaks.max_loss_run},
    )


# --- Portfolio ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Holding:
    position: Position
    mark_price: Decimal | None

    @property
    def market_value(self) -> Decimal:
        return self.position.quantity * (self.mark_price or self.position.avg_entry_price)

    @property
    def unrealized_pnl(self) -> Decimal:
        if self.mark_price is None:
            return ZERO
        return self.position.quantity * (self.mark_price - self.position.avg_entry_price)


def _starting_cash() -> Decimal:
    return Decimal(str(getattr(settings, "LEDGER_STARTING_CASH", "0")))


def portfolio(*, user: User) -> dict[str, Any]:
    """Cash from every fill's cash flow; open positions marked at their latest candle close.

    Cash is the starting cash (LEDGER_STARTING_CASH) plus sell proceeds, minus buy costs and
    fees. A position with no candle is marked at its average entry price.
    """
    latest_close = (
        Candle.objects.filter(instrument=OuterRef("instrument_id"))
        .order_by("-ts")
        .values("close")[:1]
    )
    open_positions = (
        Position.objects.filter(owner=user, status=Position.Status.OPEN)
        .select_related("instrument", "strategy")
        .annotate(mark=Subquery(latest_close))
        .order_by("instrument__symbol", "strategy_id")
    )
    holdings = [
        Holding(p, Decimal(repr(p.mark)) if p.mark is not None else None)  # type: ignore[attr-defined]
        for p in open_positions
    ]
    notional = F("quantity") * F("price")
    flows = Fill.objects.filter(owner=user).aggregate(
        cash_flow=Coalesce(
            Sum(
                Case(
                    When(order__side="sell", then=notional),
                    default=-notional,
                    output_field=_MONEY,
                )
            ),
            Value(ZERO),
            output_field=_MONEY,
        ),
        fees=Coalesce(Sum("fee"), Value(ZERO), output_field=_MONEY),
    )
    realized = Position.objects.filter(owner=user).aggregate(
        realized=Coalesce(Sum("realized_pnl"), Value(ZERO), output_field=_MONEY)
    )["realized"]
    cash = _starting_cash() + flows["cash_flow"] - flows["fees"]
    market_value = sum((h.market_value for h in holdings), ZERO)
    return {
        "starting_cash": _starting_cash(),
        "cash": cash,
        "market_value": market_value,
        "equity": cash + market_value,
        "realized_pnl": realized,
        "unrealized_pnl": sum((h.unrealized_pnl for h in holdings), ZERO),
        "fees": flows["fees"],
        "gross_exposure": sum((abs(h.market_value) for h in holdings), ZERO),
        "net_exposure": market_value,
        "positions": holdings,
    }


def portfolio_history(*, user: User) -> list[dict[str, Any]]:
    """Daily realized equity: starting cash plus net PnL of trades closed up to each day."""
    daily = (
        Trade.objects.filter(owner=user, status=Trade.Status.CLOSED)
        .annotate(day=TruncDate("exit_time"))
        .values("day")
        .annotate(net_pnl=Sum(F("pnl") - F("fees")), trades=Count("id"))
        .order_by("day")
    )
    equity = _starting_cash()
    series: list[dict[str, Any]] = []
    for row in daily:
        equity += row["net_pnl"]
        day: date = row["day"]
        series.append(
            {"day": day, "net_pnl": row["net_pnl"], "trades": row["trades"], "equity": equity}
        )
    return series


# --- Position replays ---------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    stream: str
    state: PositionState
    version: int
    from_snapshot: int  # the snapshot's version, 0 for a replay from the first event
    events_applied: int


def position_replay(
    *,
    stream: str,
    instrument: Instrument,
    as_of: datetime | None = None,
    use_snapshot: bool = True,
) -> Replay:
    """A position stream's current life, recomputed from its fills.

    From the newest snapshot taken at or before `as_of` plus the events after it, or from
    the first event when `use_snapshot` is off. The recorded states inside the events are
    not read: the replay recomputes every fill.
    """
    tail = stream_tail(stream, as_of=as_of, use_snapshot=use_snapshot)
    snapshot = tail.snapshot_state
    state = PositionState.from_json(snapshot["position"]) if snapshot else PositionState()
    start = tail.snapshot_version
    scales = instrument_scales(instrument)
    version, applied = start, 0
    with localcontext(prec=PRECISION):  # once, rather than once per fill in apply_fill
        for version, data in tail.events:  # noqa: B007 - the last version is the replay's
            state = apply_fill(
                state,
                side=data["side"],
                quantity=Decimal(data["quantity"]),
                price=Decimal(data["price"]),
                fee=Decimal(data["fee"]),
                ts=datetime.fromisoformat(data["ts"]),
                scales=scales,
                exit_reason=data["exit_reason"],
            ).current
            applied += 1
    return Replay(
        stream=stream,
        state=state,
        version=version,
        from_snapshot=start,
        events_applied=applied,
    )


def position_as_of(
    *, owner: User, strategy: Strategy | None, instrument: Instrument, ts: datetime
) -> PositionState:
    """Time travel: the position as the ledger knew it at `ts` (by when events were recorded)."""
    stream = position_stream(
        owner_id=owner.pk,
        strategy_id=strategy.pk if strategy else None,
        symbol=instrument.symbol,
    )
    return position_replay(stream=stream, instrument=instrument, as_of=ts).state


def position_row_for(
    *, owner_id: int, strategy_id: int | None, instrument_id: int
) -> Position | None:
    """The row of a stream's newest life: the open one, else the last one closed."""
    rows = Position.objects.filter(owner_id=owner_id, instrument_id=instrument_id)
    rows = (
        rows.filter(strategy__isnull=True)
        if strategy_id is None
        else rows.filter(strategy_id=strategy_id)
    )
    return rows.order_by("-id").first()


def position_streams() -> list[str]:
    """Every position stream, by name."""
    return list(
        Event.objects.filter(stream__startswith=POSITION_STREAM_PREFIX, version=1)
        .order_by("stream")
        .values_list("stream", flat=True)
    )
