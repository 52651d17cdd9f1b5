"""Concurrent writers on PostgreSQL: no lost update, no double count, a linear chain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from persistence.events import ledger_verify
from tests.trading.conftest import T0, submit, trade
from trading.models import Fill, Order, Position
from trading.services import FillInput, fill_record, fills_record, order_submit, position_replay

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
