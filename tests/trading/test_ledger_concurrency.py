"""Concurrent writers on PostgreSQL: no lost update, no double count, a linear chain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from django.db import connection, transaction

from persistence.events import CHAIN_LOCK_KEY, ledger_verify, lock_streams
from tests.trading.conftest import T0, submit, trade
from trading import ingest
from trading.models import Fill, Order, Position, TradeRollup, TradeStreakRollup
from trading.rollups import STREAK_FIELDS, trade_rollups_rebuild
from trading.selectors import position_replay
from trading.services import (
    FillInput,
    fill_record,
    fills_record,
    order_submit,
    position_rebuild,
    position_stream,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]
D = Decimal


def run_together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Start every worker at the same instant; re-raise the first error."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(i: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_twenty_threads_filling_one_position_lose_no_update(user, instrument):
    trade(user, instrument, "buy", "100", "100")
    orders = [submit(user, instrument, "sell", "2") for _ in range(20)]

    def sell(i: int) -> Callable[[], None]:
        def work() -> None:
            for part in range(2):
                fill_record(
                    order=Order.objects.get(pk=orders[i].pk),
                    venue_trade_id=f"t{i}-{part}",
                    quantity=D("1"),
                    price=D(100 + i),
                    ts=T0,
                    fee=D("0.01"),
                )

        return work

    run_together([sell(i) for i in range(20)])
    position = Position.objects.get(owner=user, status="open")
    assert position.quantity == D("60")
    # Every sell realizes (price - 100) on an average cost of exactly 100.
    assert position.realized_pnl == sum(D(2 * i) for i in range(20))
    assert position.fees_paid == D("0.40")
    assert all(o.status == "filled" for o in Order.objects.filter(pk__in=[o.pk for o in orders]))
    replay = position_replay(stream=f"position-{user.pk}-manual-BTCUSDT", instrument=instrument)
    assert replay.state.quantity == position.quantity
    assert replay.state.realized_pnl == position.realized_pnl
    assert ledger_verify().ok


def test_concurrent_bulk_and_single_fills_across_positions(user, instrument):
    from tests.factories import InstrumentFactory

    other = InstrumentFactory(symbol="ETHUSDT", price_tick=D("0.01"), quantity_step=D("0.001"))
    orders = [submit(user, instrument if i % 2 else other, "buy", "10") for i in range(8)]

    def bulk(i: int) -> Callable[[], None]:
        def work() -> None:
            # Each batch touches two orders on two positions, in opposite orders per thread.
            a, b = orders[i], orders[(i + 3) % 8]
            items = [
                FillInput(a.pk, f"b{i}-a", D("1"), D("50"), T0),
                FillInput(b.pk, f"b{i}-b", D("1"), D("50"), T0),
            ]
            fills_record(owner=user, fills=items if i % 2 else items[::-1])

        return work

    run_together([bulk(i) for i in range(8)])
    assert Fill.objects.count() == 16
    quantities = dict(
        Position.objects.filter(owner=user).values_list("instrument__symbol", "quantity")
    )
    assert quantities == {"BTCUSDT": D("8"), "ETHUSDT": D("8")}
    assert ledger_verify().ok


def test_the_same_fill_posted_concurrently_is_counted_once(user, instrument):
    order = submit(user, instrument, "buy", "5")

    def post() -> bool:
        _, created = fill_record(
            order=Order.objects.get(pk=order.pk),
            venue_trade_id="dup-1",
            quantity=D("1"),
            price=D("100"),
            ts=T0,
        )
        return created

    created = run_together([post for _ in range(10)])
    assert created.count(True) == 1
    order.refresh_from_db()
    assert order.filled_quantity == D("1")
    assert Position.objects.get(owner=user).quantity == D("1")
    assert Fill.objects.count() == 1


def test_one_venue_trade_id_on_two_orders_at_once_is_counted_once(user, instrument):
    first, second = submit(user, instrument, "buy", "5"), submit(user, instrument, "buy", "5")

    def post(order: Order) -> Callable[[], Any]:
        return lambda: fills_record(
            owner=user, fills=[FillInput(order.pk, "same-id", D("1"), D("100"), T0)]
        )

    results = run_together([post(first), post(second)])
    assert sorted(len(r.recorded) for r in results) == [0, 1]
    assert Fill.objects.count() == 1
    assert Position.objects.get(owner=user).quantity == D("1")


def test_concurrent_replays_of_a_client_order_id_create_one_order(user, instrument):
    def post() -> int:
        return order_submit(
            owner=user, instrument=instrument, side="buy", quantity=D("1"), client_order_id="k"
        ).order.pk

    ids = run_together([post for _ in range(8)])
    assert len(set(ids)) == 1
    assert Order.objects.count() == 1


def _holds_chain_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND objsubid = 1 "
            "AND (classid::bigint << 32 | objid::bigint) = %s",
            [CHAIN_LOCK_KEY],
        )
        return bool(cursor.fetchone()[0])


def test_a_fill_takes_the_chain_lock_only_for_its_events(user, instrument):
    """Every ledger writer waits on the chain lock; a fill's projections, rollups and heads
    are written before it takes the lock, its snapshots (anchored to hashes) after."""
    held: dict[str, bool] = {}

    def spy(name: str) -> Any:
        real = getattr(ingest, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            held[name] = _holds_chain_lock()
            return real(*args, **kwargs)

        return patch.object(ingest, name, wrapper)

    trade(user, instrument, "buy", "1", "100")
    closing = submit(user, instrument, "sell", "1")
    names = ["projections_write", "trades_closed_record", "heads_write", "snapshots_due_store"]
    with spy(names[0]), spy(names[1]), spy(names[2]), spy(names[3]):
        fill_record(order=closing, venue_trade_id="close", quantity=D("1"), price=D("110"), ts=T0)
    assert held == {
        "projections_write": False,
        "trades_closed_record": False,
        "heads_write": False,
        "snapshots_due_store": True,
    }
    assert TradeStreakRollup.objects.get(owner=user).trades == 1
    assert ledger_verify().ok


def test_batches_of_one_owner_on_several_positions_keep_its_rollups_exact(user, instrument):
    """The owner's daily streak rows are shared by all its positions: batches that close
    trades on four positions at once queue on them, and the rollups equal a rebuild."""
    from tests.factories import InstrumentFactory

    instruments = [instrument] + [
        InstrumentFactory(symbol=f"X{i}USDT", price_tick=D("0.01"), quantity_step=D("0.001"))
        for i in range(3)
    ]
    books = [(submit(user, i, "buy", "5"), submit(user, i, "sell", "5")) for i in instruments]

    def bulk(n: int) -> Callable[[], None]:
        def work() -> None:
            buy, sell = books[n]
            items = []
            for k in range(5):
                at = T0 + timedelta(minutes=k, seconds=n)
                items.append(FillInput(buy.pk, f"{n}-b{k}", D("1"), D(100), at))
                # Wins and losses by position, so the owner's streaks depend on the order.
                price = D(100 + (1 if (n + k) % 3 else -1))
                items.append(FillInput(sell.pk, f"{n}-s{k}", D("1"), price, at))
            fills_record(owner=user, fills=items)

        return work

    run_together([bulk(n) for n in range(4)])
    fields = [f.name for f in TradeRollup._meta.fields if f.name != "id"]
    kept = sorted(TradeRollup.objects.values_list(*fields), key=str)
    kept_streaks = list(TradeStreakRollup.objects.values_list("owner_id", "day", *STREAK_FIELDS))
    assert kept_streaks[0][2] == 20  # every trade of the four positions
    trade_rollups_rebuild()
    assert sorted(TradeRollup.objects.values_list(*fields), key=str) == kept
    rebuilt = list(TradeStreakRollup.objects.values_list("owner_id", "day", *STREAK_FIELDS))
    assert rebuilt == kept_streaks
    assert ledger_verify().ok


def test_a_rebuild_waits_for_a_fill_in_flight_on_its_stream(user, instrument):
    """A repair read around a fill in flight would report it as drift, then undo it."""
    trade(user, instrument, "buy", "1", "100")
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol=instrument.symbol)
    in_flight, release, rebuilt = threading.Event(), threading.Event(), threading.Event()

    def fill_in_flight() -> None:
        try:
            with transaction.atomic():
                lock_streams([stream])  # what a fill of the stream holds until it commits
                in_flight.set()
                release.wait(10)
        finally:
            connection.close()

    def rebuild() -> None:
        try:
            position_rebuild(stream=stream, apply=True)
            rebuilt.set()
        finally:
            connection.close()

    holder, rebuilder = threading.Thread(target=fill_in_flight), threading.Thread(target=rebuild)
    holder.start()
    assert in_flight.wait(10)
    rebuilder.start()
    try:
        assert not rebuilt.wait(0.5)
    finally:
        release.set()
        holder.join()
    assert rebuilt.wait(10)
    rebuilder.join()
