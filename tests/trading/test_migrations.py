"""Data migrations of the ledger, run forwards over rows written before them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("trading", "0002_trade_rollups")]
AFTER = [("trading", "0003_order_filled_notional")]


@pytest.mark.django_db(transaction=True)
def test_orders_get_their_exact_filled_notional_from_their_fills():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    user = apps.get_model("accounts", "User").objects.create(username="m")
    instrument = apps.get_model("trading", "Instrument").objects.create(
        symbol="MIGUSDT",
        base="MIG",
        quote="USDT",
        price_tick=Decimal("0.01"),
        quantity_step=Decimal("0.001"),
    )
    Order = apps.get_model("trading", "Order")
    Fill = apps.get_model("trading", "Fill")
    filled, untouched = (
        Order.objects.create(
            owner=user,
            instrument=instrument,
            side="buy",
            quantity=Decimal("3"),
            client_order_id=cid,
            status="accepted",
        )
        for cid in ("filled", "untouched")
    )
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    for n, (quantity, price) in enumerate([("0.333", "100.01"), ("1.111", "99.99")]):
        Fill.objects.create(
            order=filled,
            owner=user,
            venue_trade_id=f"m{n}",
            quantity=Decimal(quantity),
            price=Decimal(price),
            ts=ts,
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    notional = dict(apps.get_model("trading", "Order").objects.values_list("pk", "filled_notional"))
    assert notional[filled.pk] == Decimal("0.333") * Decimal("100.01") + Decimal("1.111") * Decimal(
        "99.99"
    )
    assert notional[untouched.pk] == 0
    latest = MigrationExecutor(connection)  # reads what is applied now
    latest.migrate(latest.loader.graph.leaf_nodes())
