"""Ledger fixtures: an instrument with a coarse grid, and helpers that go through services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection

from trading.models import Position
from trading.services import fill_record, order_submit

_ids = count(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres_only") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


def submit(owner, instrument, side, quantity, **extra):  # type: ignore[no-untyped-def]
    """Submit an order through the service with a fresh client_order_id."""
    extra.setdefault("client_order_id", f"c-{next(_ids)}")
    return order_submit(
        owner=owner, instrument=instrument, side=side, quantity=Decimal(quantity), **extra
    ).order


def fill(order, quantity, price, fee="0", *, venue_trade_id=None, minutes=0):  # type: ignore[no-untyped-def]
    recorded, _ = fill_record(
        order=order,
        venue_trade_id=venue_trade_id or f"v-{next(_ids)}",
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(fee),
        ts=T0 + timedelta(minutes=minutes) + timedelta(seconds=next(_ids) % 3600),
    )
    return recorded


def trade(owner, instrument, side, quantity, price, fee="0", **extra):  # type: ignore[no-untyped-def]
    """Submit a market order and fill it completely at one price."""
    order = submit(owner, instrument, side, quantity, **extra)
    fill(order, quantity, price, fee)
    order.refresh_from_db()
    return order


def open_position(owner, instrument) -> Position:  # type: ignore[no-untyped-def]
    return Position.objects.get(owner=owner, instrument=instrument, status="open")
