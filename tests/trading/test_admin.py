"""The ledger's admin actions ask for the permission to change what they act on."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts.models import User
from persistence.models import Event
from tests.factories import UserFactory
from tests.trading.conftest import fill, submit, trade
from trading.models import Order, Position

pytestmark = pytest.mark.django_db

ORDERS = "/admin/trading/order/"
POSITIONS = "/admin/trading/position/"


def staff_client(*codenames: str) -> Client:
    """A client logged in as staff (not a superuser) with exactly these trading permissions."""
    user: User = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="trading", codename__in=codenames)
    )
    assert user.user_permissions.count() == len(codenames)
    client = Client()
    client.force_login(user)
    return client


def offered_actions(client: Client, url: str) -> list[str]:
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["action_form"]  # None when no action is offered at all
    return [] if form is None else [value for value, _ in form.fields["action"].choices if value]


@pytest.mark.parametrize("action", ["cancel_orders", "reject_orders"])
def test_view_only_staff_cannot_cancel_or_reject_another_users_order(
    user, instrument, action
) -> None:  # type: ignore[no-untyped-def]
    order = submit(user, instrument, "buy", "1")
    events = Event.objects.count()
    client = staff_client("view_order")
    assert action not in offered_actions(client, ORDERS)

    client.post(ORDERS, {"action": action, "_selected_action": [order.pk]})

    assert Order.objects.get(pk=order.pk).status == order.status
    assert Event.objects.count() == events


@pytest.mark.parametrize(
    ("action", "status"), [("cancel_orders", "cancelled"), ("reject_orders", "rejected")]
)
def test_staff_allowed_to_change_orders_cancel_and_reject_them(
    user, instrument, action, status
) -> None:  # type: ignore[no-untyped-def]
    order = submit(user, instrument, "buy", "1")
    client = staff_client("view_order", "change_order")
    assert {"cancel_orders", "reject_orders"} <= set(offered_actions(client, ORDERS))

    client.post(ORDERS, {"action": action, "_selected_action": [order.pk]})

    assert Order.objects.get(pk=order.pk).status == status


def test_rebuild_from_ledger_needs_the_permission_to_change_positions(user, instrument) -> None:  # type: ignore[no-untyped-def]
    trade(user, instrument, "buy", "2", "100")
    Position.objects.update(quantity=Decimal("9"))  # drift the projection off the log
    position = Position.objects.get()
    post = {"action": "rebuild_from_ledger", "_selected_action": [position.pk]}

    viewer = staff_client("view_position")
    assert "rebuild_from_ledger" not in offered_actions(viewer, POSITIONS)
    viewer.post(POSITIONS, post)
    assert Position.objects.get().quantity == Decimal("9")

    repairer = staff_client("view_position", "change_position")
    assert "rebuild_from_ledger" in offered_actions(repairer, POSITIONS)
    repairer.post(POSITIONS, post)
    assert Position.objects.get().quantity == Decimal("2")


# --- List pages: amounts people can read, and columns that fit --------------------------

FILLS = "/admin/trading/fill/"
TRADES = "/admin/trading/trade/"


def column_names(client: Client, url: str) -> list[str]:
    page = client.get(url)
    assert page.status_code == 200
    return re.findall(r'<th scope="col" class="[^"]*\bcolumn-(\w+)', page.content.decode())


def test_order_and_fill_lists_show_amounts_without_padding_and_with_thousands(
    client, staff_user, user, instrument
) -> None:  # type: ignore[no-untyped-def]
    order = submit(user, instrument, "buy", "1234.5")
    fill(order, "1234.5", "20000.25", fee="1.5")
    client.force_login(staff_user)

    orders = client.get(ORDERS).content.decode()
    fills = client.get(FILLS).content.decode()

    assert '<td class="field-quantity">1,234.5</td>' in orders
    assert '<td class="field-filled_quantity">1,234.5</td>' in orders
    assert '<td class="field-avg_fill_price">20,000.25</td>' in orders
    assert '<td class="field-quantity">1,234.5</td>' in fills
    assert '<td class="field-price">20,000.25</td>' in fills
    assert '<td class="field-fee">1.5</td>' in fills
    for page in (orders, fills):
        cells = re.findall(r'<td class="field-[^"]*">([^<]*)</td>', page)
        assert cells and not [cell for cell in cells if cell.endswith("000")]


def test_ledger_lists_keep_few_columns_so_status_and_pnl_fit(
    client, staff_user, user, instrument
) -> None:  # type: ignore[no-untyped-def]
    trade(user, instrument, "buy", "1", "100")
    client.force_login(staff_user)
    assert column_names(client, ORDERS) == [
        "client_order_id",
        "owner",
        "instrument",
        "side",
        "quantity",
        "filled_quantity",
        "avg_fill_price",
        "status",
        "created_at",
        "auditlog_link",
    ]
    assert column_names(client, FILLS) == [
        "venue_trade_id",
        "order_id_text",
        "owner",
        "quantity",
        "price",
        "fee",
        "ts",
        "auditlog_link",
    ]
    assert column_names(client, TRADES) == [
        "instrument",
        "owner",
        "direction",
        "quantity",
        "entry_price",
        "exit_price",
        "net_pnl_text",
        "pnl_pct",
        "status",
        "exit_time",
        "auditlog_link",
    ]
