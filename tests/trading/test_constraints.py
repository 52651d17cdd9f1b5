"""Order constraints hold in the database even when Python-side validation is bypassed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests.factories import OrderFactory
from trading.models import Order

pytestmark = pytest.mark.django_db


def test_database_rejects_a_negative_order_quantity(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, quantity=Decimal("-1"))
    assert Order.objects.count() == 0


def test_database_rejects_a_zero_order_quantity(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, quantity=Decimal("0"))


def test_second_order_with_same_owner_and_client_order_id_is_rejected(user):
    OrderFactory(owner=user, client_order_id="bot-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, client_order_id="bot-1")
    assert Order.objects.filter(client_order_id="bot-1").count() == 1


def test_same_client_order_id_is_allowed_for_different_owners(user, other_user):
    OrderFactory(owner=user, client_order_id="bot-1")
    OrderFactory(owner=other_user, client_order_id="bot-1")
    assert Order.objects.filter(client_order_id="bot-1").count() == 2


def test_database_rejects_an_unknown_order_status(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, status="lost")


def test_limit_order_without_a_price_is_rejected(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, order_type="limit", limit_price=None)


def test_filled_quantity_cannot_exceed_quantity(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(owner=user, quantity=Decimal("1"), filled_quantity=Decimal("1.5"))


def test_order_money_fields_are_decimals_after_a_round_trip(user):
    order = OrderFactory(owner=user, quantity=Decimal("12345.6789"), limit_price=None)
    order.refresh_from_db()
    assert order.quantity == Decimal("12345.6789")
    assert isinstance(order.quantity, Decimal)


@pytest.mark.postgres_only
def test_postgres_keeps_all_eighteen_decimal_places(user):
    # SQLite stores NUMERIC as a 64-bit float (15 significant digits); PostgreSQL, the
    # system of record, must keep every digit.
    order = OrderFactory(owner=user, quantity=Decimal("123456.123456789012345678"))
    order.refresh_from_db()
    assert order.quantity == Decimal("123456.123456789012345678")
