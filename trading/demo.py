"""Demo ledger rows for `seed_demo`: a few orders, their fills, and the positions they make."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from trading.models import Candle, Fill, Instrument, Order, Position


def _last_close(instrument: Instrument) -> Decimal:
    candle = Candle.objects.filter(instrument=instrument).order_by("-ts").first()
    price = Decimal(str(candle.close)) if candle else Decimal("100")
    return price.quantize(instrument.price_tick)


@transaction.atomic
def seed_demo_ledger(*, user: User, instruments: Sequence[Instrument]) -> None:
    """One filled buy per instrument, leaving an open long position on each."""
    now = timezone.now()
    for number, instrument in enumerate(instruments, start=1):
        price = _last_close(instrument)
        quantity = Decimal("0.5") * number
        order = Order.objects.create(
            owner=user,
            instrument=instrument,
            side="buy",
            order_type="market",
            quantity=quantity,
            client_order_id=f"demo-{instrument.symbol.lower()}-1",
            status=Order.Status.FILLED,
            filled_quantity=quantity,
            avg_fill_price=price,
            source=Order.Source.MANUAL,
        )
        fee = (quantity * price * Decimal("0.001")).quantize(Decimal("0.00000001"))
        Fill.objects.create(
            order=order,
            owner=user,
            venue_trade_id=f"demo-fill-{instrument.symbol.lower()}-1",
            quantity=quantity,
            price=price,
            fee=fee,
            ts=now - timedelta(hours=number),
        )
        Position.objects.create(
            owner=user,
            instrument=instrument,
            quantity=quantity,
            avg_entry_price=price,
            fees_paid=fee,
            opened_at=now - timedelta(hours=number),
        )
