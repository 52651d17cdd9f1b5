"""Random ledgers: live rows, full replays and snapshot-plus-tail replays agree exactly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persistence.events import ledger_verify
from tests.factories import StrategyFactory, UserFactory
from tests.trading.conftest import T0
from trading.models import Fill, Order
from trading.selectors import position_replay, position_row_for
from trading.services import (
    FillInput,
    fill_record,
    fills_record,
    order_cancel,
    order_submit,
    position_drift,
    position_stream,
)

STEP = Decimal("0.001")
TICK = Decimal("0.01")

trades = st.tuples(
    st.just("trade"),
    st.sampled_from(["buy", "sell"]),
    st.integers(1, 3000),  # quantity in steps
    st.integers(5_000, 15_000),  # price in ticks
    st.integers(0, 500),  # fee in 1/10000
    st.integers(0, 1),  # strategy: none, or one
    st.integers(1, 3),  # parts the order is filled in
    st.booleans(),  # leave the last part unfilled
)
bulks = st.tuples(st.just("bulk"), st.lists(trades, min_size=1, max_size=4))
cancels = st.tuples(st.just("cancel"), st.integers(0, 30))
checks = st.tuples(st.just("check"))
operations = st.lists(
    st.one_of(trades, trades, trades, bulks, cancels, checks), min_size=3, max_size=25
)


def _parts(op: tuple, order: Order, minute: int) -> list[FillInput]:  # type: ignore[type-arg]
    _, _, units, price_ticks, fee, _, parts, leave_open = op
    sizes = [units // parts] * parts
    sizes[-1] += units - sum(sizes)
    if leave_open and parts > 1:
        sizes = sizes[:-1]
    return [
        FillInput(
            order_id=order.pk,
            venue_trade_id=f"v{minute}-{i}",
            quantity=size * STEP,
            # Later parts fill a little worse, so prices within an order differ.
            price=(price_ticks + i) * TICK,
            ts=T0 + timedelta(minutes=minute, seconds=i),
            fee=Decimal(fee) / 10000,
        )
        for i, size in enumerate(sizes)
        if size > 0
    ]


def _assert_ledger_agrees(owner, instrument, strategies) -> None:  # type: ignore[no-untyped-def]
    for strategy in strategies:
        stream = position_stream(
            owner_id=owner.pk, strategy_id=strategy.pk if strategy else None, symbol="PROPUSDT"
        )
        full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
        tail = position_replay(stream=stream, instrument=instrument)
        assert tail.state == full.state
        if full.version == 0:
            continue
        row = position_row_for(
            owner_id=owner.pk,
            strategy_id=strategy.pk if strategy else None,
            instrument_id=instrument.pk,
        )
        assert position_drift(row, full.state) == {}

        # Independent of any rounding: realized PnL over every life is sells minus buys
        # plus the cost still held, and the quantity is buys minus sells.
        fills_of = Fill.objects.filter(
            owner=owner,
            order__strategy=strategy,
            order__instrument=instrument,
        ).select_related("order")
        buys = sum((f.quantity * f.price for f in fills_of if f.order.side == "buy"), Decimal(0))
        sells = sum((f.quantity * f.price for f in fills_of if f.order.side == "sell"), Decimal(0))
        net = sum((f.quantity if f.order.side == "buy" else -f.quantity for f in fills_of), 0)
        rows = owner.positions.filter(strategy=strategy, instrument=instrument)
        realized = sum((p.realized_pnl for p in rows), Decimal(0))
        fees = sum((p.fees_paid for p in rows), Decimal(0))
        held = full.state.cost_basis if full.state.is_open else 0
        sign = 1 if full.state.quantity >= 0 else -1
        assert full.state.quantity == net
        assert realized == sells - buys + sign * held
        assert fees == sum((f.fee for f in fills_of), Decimal(0))
    for order in Order.objects.filter(owner=owner):
        assert order.filled_quantity == sum((f.quantity for f in order.fills.all()), Decimal(0))


@pytest.mark.django_db
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, snapshot_every=st.integers(1, 5))
def test_live_positions_full_replay_and_snapshot_tail_agree(ops, snapshot_every, django_settings):
    from tests.factories import InstrumentFactory

    django_settings.LEDGER_SNAPSHOT_EVERY = snapshot_every
    with transaction.atomic():
        owner = UserFactory()
        instrument = InstrumentFactory(symbol="PROPUSDT", price_tick=TICK, quantity_step=STEP)
        strategies = [None, StrategyFactory(owner=owner, instrument=instrument)]
        orders: list[Order] = []

        def submit(op: tuple, key: str) -> Order:  # type: ignore[type-arg]
            order = order_submit(
                owner=owner,
                instrument=instrument,
                side=op[1],
                quantity=op[2] * STEP,
                client_order_id=key,
                strategy=strategies[op[5]],
            ).order
            orders.append(order)
            return order

        for minute, op in enumerate(ops, start=1):
            if op[0] == "trade":
                order = submit(op, f"c{minute}")
                for item in _parts(op, order, minute):
                    fill_record(
                        order=order,
                        venue_trade_id=item.venue_trade_id,
                        quantity=item.quantity,
                        price=item.price,
                        ts=item.ts,
                        fee=item.fee,
                    )
            elif op[0] == "bulk":
                batch = []
                for i, sub in enumerate(op[1]):
                    batch += _parts(sub, submit(sub, f"c{minute}-{i}"), minute * 100 + i)
                fills_record(owner=owner, fills=batch)
            elif op[0] == "cancel" and orders:
                order = orders[op[1] % len(orders)]
                order.refresh_from_db()
                if order.status in ("accepted", "partially_filled"):
                    order_cancel(order=order)
            elif op[0] == "check":
                _assert_ledger_agrees(owner, instrument, strategies)
        _assert_ledger_agrees(owner, instrument, strategies)
        assert ledger_verify().ok
        transaction.set_rollback(True)


@pytest.fixture
def django_settings(settings):  # type: ignore[no-untyped-def]
    return settings
