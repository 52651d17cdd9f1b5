"""Daily rollups of closed trades, so the trade summary reads days instead of every trade.

Two tables, both keyed by the UTC day a trade closed (its `exit_time`):

- `TradeRollup`, per series (owner, strategy, instrument): counts and sums, best and worst;
- `TradeStreakRollup`, per owner: the streaks of the owner's trades of all series together.

Consecutive-win/loss streaks do not add up like sums do, so each day keeps a streak summary
(`Streaks`: its first run, its last run, its longest win and loss runs, its length) that
merges with the next day's as a monoid. That merge is exact only over buckets that are
contiguous in (exit_time, id) order, which days of one series, or of one owner, are.

The services keep both tables current in the transaction that closes a trade; a trade that
closes out of order (its exit sorts before what the day already holds) makes its day be
recomputed from the trades. `trade_rollups_rebuild` recomputes everything. Where these
locks come in a ledger write's lock order is written down in trading/ingest.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from django.db import transaction
from django.db.models import Q

from persistence.bulk import bulk_update_rows
from persistence.events import lock_names
from trading.accounting import PRECISION
from trading.models import Trade, TradeRollup, TradeStatus, TradeStreakRollup

ZERO = Decimal(0)
WIN, LOSS, EVEN = 1, -1, 0

SeriesKey = tuple[int, int | None, int, date]  # owner, strategy, instrument, day
OwnerKey = tuple[int, date]


def outcome(net: Decimal) -> int:
    """A trade wins when its net PnL is positive; a break-even trade breaks both streaks."""
    return WIN if net > 0 else LOSS if net < 0 else EVEN


def exit_day(exit_time: datetime) -> date:
    return exit_time.astimezone(UTC).date()


@dataclass(slots=True)
class Streaks:
    """Runs of outcomes over a stretch of trades in exit order; `merge` is associative."""

    trades: int = 0
    first_outcome: int = EVEN
    first_run: int = 0
    last_outcome: int = EVEN
    last_run: int = 0
    max_win_run: int = 0
    max_loss_run: int = 0

    def add(self, result: int) -> None:
        """Append one trade at the end."""
        if self.trades == 0:
            self.first_outcome, self.first_run = result, 1
            self.last_outcome, self.last_run = result, 1
        else:
            if self.first_run == self.trades and result == self.first_outcome:
                self.first_run += 1
            if result == self.last_outcome:
                self.last_run += 1
            else:
                self.last_outcome, self.last_run = result, 1
        self.trades += 1
        if result == WIN and self.last_run > self.max_win_run:
            self.max_win_run = self.last_run
        elif result == LOSS and self.last_run > self.max_loss_run:
            self.max_loss_run = self.last_run

    def merge(self, later: Streaks) -> Streaks:
        """These trades followed by `later`'s."""
        if not self.trades:
            return Streaks(*_streak_fields(later))
        if not later.trades:
            return Streaks(*_streak_fields(self))
        joined = self.last_outcome == later.first_outcome
        bridge = self.last_run + later.first_run if joined else 0
        first_run = self.first_run
        if joined and self.first_run == self.trades:
            first_run += later.first_run
        last_run = later.last_run
        if joined and later.last_run == later.trades:
            last_run += self.last_run
        return Streaks(
            trades=self.trades + later.trades,
            first_outcome=self.first_outcome,
            first_run=first_run,
            last_outcome=later.last_outcome,
            last_run=last_run,
            max_win_run=max(
                self.max_win_run, later.max_win_run, bridge if self.last_outcome == WIN else 0
            ),
            max_loss_run=max(
                self.max_loss_run, later.max_loss_run, bridge if self.last_outcome == LOSS else 0
            ),
        )


STREAK_FIELDS = (
    "trades",
    "first_outcome",
    "first_run",
    "last_outcome",
    "last_run",
    "max_win_run",
    "max_loss_run",
)
ORDER_FIELDS = ("last_exit_time", "last_trade_id")
MONEY_FIELDS = ("gross_pnl", "fees", "net_pnl", "gross_profit", "gross_loss")


def _streak_fields(streaks: Streaks) -> tuple[int, ...]:
    return tuple(getattr(streaks, name) for name in STREAK_FIELDS)


def streaks_fold(days: Iterable[Sequence[int]]) -> Streaks:
    """Merge per-day streak summaries (tuples in STREAK_FIELDS order), oldest day first."""
    total = Streaks()
    for fields in days:
        total = total.merge(Streaks(*fields))
    return total


@dataclass(slots=True)
class DayTotals:
    """One series' closed trades of one day: the sums and extremes the summary needs."""

    wins: int = 0
    losses: int = 0
    gross_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    net_pnl: Decimal = ZERO
    gross_profit: Decimal = ZERO
    gross_loss: Decimal = ZERO
    best: Decimal | None = None
    worst: Decimal | None = None

    def add(self, pnl: Decimal, fees: Decimal, net: Decimal) -> None:
        # Sums run at the accounting precision: the default 28 digits would round them.
        with localcontext(prec=PRECISION):
            self.gross_pnl += pnl
            self.fees += fees
            self.net_pnl += net
            if net > 0:
                self.wins += 1
                self.gross_profit += net
            elif net < 0:
                self.losses += 1
                self.gross_loss += net
        if self.best is None or net > self.best:
            self.best = net
        if self.worst is None or net < self.worst:
            self.worst = net


@dataclass(slots=True)
class _Bucket:
    streaks: Streaks
    totals: DayTotals | None
    last_exit_time: datetime | None
    last_trade_id: int


def _bucket_from_row(row: TradeRollup | TradeStreakRollup) -> _Bucket:
    streaks = Streaks(*(getattr(row, name) for name in STREAK_FIELDS))
    totals = None
    if isinstance(row, TradeRollup):
        totals = DayTotals(
            wins=row.wins,
            losses=row.losses,
            gross_pnl=row.gross_pnl,
            fees=row.fees,
            net_pnl=row.net_pnl,
            gross_profit=row.gross_profit,
            gross_loss=row.gross_loss,
            best=row.best,
            worst=row.worst,
        )
    return _Bucket(streaks, totals, row.last_exit_time, row.last_trade_id)


def _bucket_to_row(bucket: _Bucket, row: TradeRollup | TradeStreakRollup) -> None:
    for name in STREAK_FIELDS:
        setattr(row, name, getattr(bucket.streaks, name))
    if bucket.totals is not None:
        assert isinstance(row, TradeRollup)
        for name in ("wins", "losses", *MONEY_FIELDS, "best", "worst"):
            setattr(row, name, getattr(bucket.totals, name))
    row.last_exit_time = bucket.last_exit_time
    row.last_trade_id = bucket.last_trade_id


def _bucket_add(bucket: _Bucket, trade: _Closed) -> None:
    bucket.streaks.add(outcome(trade.net))
    if bucket.totals is not None:
        bucket.totals.add(trade.pnl, trade.fees, trade.net)
    bucket.last_exit_time, bucket.last_trade_id = trade.exit_time, trade.id


@dataclass(frozen=True, slots=True)
class _Closed:
    id: int
    owner_id: int
    strategy_id: int | None
    instrument_id: int
    exit_time: datetime
    pnl: Decimal
    fees: Decimal

    @property
    def net(self) -> Decimal:
        with localcontext(prec=PRECISION):
            return self.pnl - self.fees

    @property
    def order_key(self) -> tuple[datetime, int]:
        return (self.exit_time, self.id)


def _series_key(trade: _Closed) -> SeriesKey:
    return (trade.owner_id, trade.strategy_id, trade.instrument_id, exit_day(trade.exit_time))


def _series_q(key: SeriesKey) -> Q:
    owner_id, strategy_id, instrument_id, day = key
    strategy = Q(strategy__isnull=True) if strategy_id is None else Q(strategy_id=strategy_id)
    return Q(owner_id=owner_id, instrument_id=instrument_id, day=day) & strategy


def _row_series_key(row: TradeRollup) -> SeriesKey:
    return (row.owner_id, row.strategy_id, row.instrument_id, row.day)


def _any(qs: Sequence[Q]) -> Q:
    combined = Q(pk__in=[])
    for q in qs:
        combined |= q
    return combined


def trades_closed_record(trades: Iterable[Trade]) -> None:
    """Add trades that have just closed (saved, with ids) to both rollups.

    Runs inside the service's transaction, after the trade rows are written. Takes each
    owner's rollup lock, then the rows in key order (the lock order: trading/ingest.py).
    """
    closed = [
        _Closed(
            id=t.pk,
            owner_id=t.owner_id,
            strategy_id=t.strategy_id,
            instrument_id=t.instrument_id,
            exit_time=t.exit_time,
            pnl=t.pnl,
            fees=t.fees,
        )
        for t in trades
        if t.exit_time is not None
    ]
    if not closed:
        return
    closed.sort(key=lambda t: t.order_key)
    by_series: dict[SeriesKey, list[_Closed]] = {}
    by_owner: dict[OwnerKey, list[_Closed]] = {}
    for trade in closed:
        by_series.setdefault(_series_key(trade), []).append(trade)
        by_owner.setdefault((trade.owner_id, exit_day(trade.exit_time)), []).append(trade)
    with transaction.atomic(savepoint=False):  # an error rolls the caller back whole
        # An owner's streak rows are shared by all the owner's streams: the stream locks do
        # not order two writers of them, this lock does.
        lock_names(f"trade-rollups-{owner_id}" for owner_id in {t.owner_id for t in closed})
        _record_series(by_series)
        _record_owners(by_owner)


def _locked_series(keys: Sequence[SeriesKey]) -> dict[SeriesKey, TradeRollup]:
    rows = TradeRollup.objects.select_for_update().filter(_any([_series_q(k) for k in keys]))
    return {_row_series_key(r): r for r in rows.order_by("owner_id", "day", "id")}


def _record_series(by_series: dict[SeriesKey, list[_Closed]]) -> None:
    keys = sorted(by_series, key=lambda k: (k[0], k[3], k[1] or 0, k[2]))
    rows = _locked_series(keys)
    missing = [k for k in keys if k not in rows]
    if missing:
        TradeRollup.objects.bulk_create(
            [
                TradeRollup(owner_id=o, strategy_id=s, instrument_id=i, day=d)
                for o, s, i, d in missing
            ],
            ignore_conflicts=True,
        )
        rows.update(_locked_series(missing))
    stale: list[SeriesKey] = []
    for key in keys:
        row, trades = rows[key], by_series[key]
        if row.trades and (row.last_exit_time, row.last_trade_id) > trades[0].order_key:
            stale.append(key)
            continue
        bucket = _bucket_from_row(row)
        for trade in trades:
            _bucket_add(bucket, trade)
        _bucket_to_row(bucket, row)
    for key in stale:
        _bucket_to_row(_series_recomputed(key), rows[key])
    bulk_update_rows(
        [rows[k] for k in keys],
        [*STREAK_FIELDS, "wins", "losses", *MONEY_FIELDS, "best", "worst", *ORDER_FIELDS],
    )


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _closed_in(trades: Any, day: date) -> Any:
    start, end = _day_bounds(day)
    return (
        trades.filter(status=TradeStatus.CLOSED, exit_time__gte=start, exit_time__lt=end)
        .order_by("exit_time", "id")
        .values_list("id", "owner_id", "strategy_id", "instrument_id", "exit_time", "pnl", "fees")
    )


def _fold(rows: Iterable[tuple[Any, ...]], *, with_totals: bool) -> _Bucket:
    bucket = _Bucket(Streaks(), DayTotals() if with_totals else None, None, 0)
    for row in rows:
        _bucket_add(bucket, _Closed(*row))
    return bucket


def _series_recomputed(key: SeriesKey) -> _Bucket:
    owner_id, strategy_id, instrument_id, day = key
    trades = Trade.objects.filter(owner_id=owner_id, instrument_id=instrument_id)
    trades = (
        trades.filter(strategy__isnull=True)
        if strategy_id is None
        else trades.filter(strategy_id=strategy_id)
    )
    return _fold(_closed_in(trades, day), with_totals=True)


def _locked_owners(keys: Sequence[OwnerKey]) -> dict[OwnerKey, TradeStreakRollup]:
    rows = TradeStreakRollup.objects.select_for_update().filter(
        _any([Q(owner_id=o, day=d) for o, d in keys])
    )
    return {(r.owner_id, r.day): r for r in rows.order_by("owner_id", "day")}


def _record_owners(by_owner: dict[OwnerKey, list[_Closed]]) -> None:
    keys = sorted(by_owner)
    rows = _locked_owners(keys)
    missing = [k for k in keys if k not in rows]
    if missing:
        # Concurrent writers of one owner may both find a day missing; the loser's insert
        # is ignored and it locks the winner's row.
        TradeStreakRollup.objects.bulk_create(
            [TradeStreakRollup(owner_id=o, day=d) for o, d in missing], ignore_conflicts=True
        )
        rows.update(_locked_owners(missing))
    for key in keys:
        row, trades = rows[key], by_owner[key]
        if row.trades and (row.last_exit_time, row.last_trade_id) > trades[0].order_key:
            owner_id, day = key
            bucket = _fold(
                _closed_in(Trade.objects.filter(owner_id=owner_id), day), with_totals=False
            )
        else:
            bucket = _bucket_from_row(row)
            for trade in trades:
                _bucket_add(bucket, trade)
        _bucket_to_row(bucket, row)
    bulk_update_rows([rows[k] for k in keys], [*STREAK_FIELDS, *ORDER_FIELDS])


@transaction.atomic
def trade_rollups_rebuild(*, owner_ids: Sequence[int] | None = None) -> tuple[int, int]:
    """Recompute both rollups from the closed trades; returns (series days, owner days).

    One pass over the closed trades in (owner, exit_time, id) order. Takes the same locks
    as a writer would not: run it when the ledger is quiet (a command, a deploy step).
    """
    series_rows = TradeRollup.objects.all()
    owner_rows = TradeStreakRollup.objects.all()
    trades = Trade.objects.filter(status=TradeStatus.CLOSED, exit_time__isnull=False)
    if owner_ids is not None:
        series_rows = series_rows.filter(owner_id__in=owner_ids)
        owner_rows = owner_rows.filter(owner_id__in=owner_ids)
        trades = trades.filter(owner_id__in=owner_ids)
    series_rows.delete()
    owner_rows.delete()
    series: dict[SeriesKey, _Bucket] = {}
    owners: dict[OwnerKey, _Bucket] = {}
    rows = trades.order_by("owner_id", "exit_time", "id").values_list(
        "id", "owner_id", "strategy_id", "instrument_id", "exit_time", "pnl", "fees"
    )
    for raw in rows.iterator(chunk_size=20_000):
        trade = _Closed(*raw)  # type: ignore[arg-type]  # exit_time is not null here
        day = exit_day(trade.exit_time)
        key = (trade.owner_id, trade.strategy_id, trade.instrument_id, day)
        bucket = series.get(key)
        if bucket is None:
            bucket = series[key] = _Bucket(Streaks(), DayTotals(), None, 0)
        _bucket_add(bucket, trade)
        owner_bucket = owners.get((trade.owner_id, day))
        if owner_bucket is None:
            owner_bucket = owners[(trade.owner_id, day)] = _Bucket(Streaks(), None, None, 0)
        _bucket_add(owner_bucket, trade)
    new_series = []
    for (owner_id, strategy_id, instrument_id, day), bucket in series.items():
        row = TradeRollup(
            owner_id=owner_id, strategy_id=strategy_id, instrument_id=instrument_id, day=day
        )
        _bucket_to_row(bucket, row)
        new_series.append(row)
    new_owners = []
    for (owner_id, day), bucket in owners.items():
        owner_row = TradeStreakRollup(owner_id=owner_id, day=day)
        _bucket_to_row(bucket, owner_row)
        new_owners.append(owner_row)
    TradeRollup.objects.bulk_create(new_series, batch_size=2000)
    TradeStreakRollup.objects.bulk_create(new_owners, batch_size=2000)
    return len(new_series), len(new_owners)
