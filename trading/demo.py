"""Demo ledger for `seed_demo`: orders and fills recorded through the services, so the demo
has events, snapshots-ready streams, positions and round-trip trades like real traffic."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from marketdata.models import Candle, Instrument
from trading.models import Order
from trading.services import fill_record, order_cancel, order_submit

# Demo fills pay a taker fee of 0.1% of their notional.
FEE_RATE = Decimal("0.001")


def _last_close(instrument: Instrument) -> Decimal:
    candle = Candle.objects.filter(instrument=instrument).order_by("-ts").first()
    price = Decimal(str(candle.close)) if candle else Decimal("100")
    return price.quantize(instrument.price_tick)


def _on_step(quantity: Decimal, step: Decimal) -> Decimal:
    return max(step, (quantity / step).to_integral_value(rounding=ROUND_DOWN) * step)


def _price(base: Decimal, factor: str, tick: Decimal) -> Decimal:
    return max(tick, (base * Decimal(factor) / tick).to_integral_value() * tick)


@transaction.atomic
def seed_demo_ledger(*, user: User, instruments: Sequence[Instrument]) -> None:
    """Per instrument: a closed round trip, an open long that was partly sold, a resting
    limit order and a cancelled one."""
    now = timezone.now()
    for number, instrument in enumerate(instruments, start=1):
        close, tick, step = _last_close(instrument), instrument.price_tick, instrument.quantity_step
        symbol = instrument.symbol.lower()
        size = _on_step(Decimal("0.5") * number, step)

        def filled(
            key: str,
            side: str,
            quantity: Decimal,
            price: Decimal,
            hours_ago: int,
            symbol: str = symbol,
            instrument: Instrument = instrument,
        ) -> Order:
            order = order_submit(
                owner=user,
                instrument=instrument,
                side=side,
                quantity=quantity,
                client_order_id=f"demo-{symbol}-{key}",
                source=Order.Source.MANUAL,
            ).order
            fill_record(
                order=order,
                venue_trade_id=f"demo-fill-{symbol}-{key}",
                quantity=quantity,
                price=price,
                fee=(quantity * price * FEE_RATE).quantize(Decimal("0.00000001")),
                ts=now - timedelta(hours=hours_ago),
            )
            return order

        # A closed round trip with a profit, then an open long that was partly sold.
        filled("1", "buy", size, _price(close, "0.95", tick), 48)
        filled("2", "sell", size, _price(close, "0.98", tick), 36)
        filled("3", "buy", size * 2, _price(close, "0.99", tick), 24)
        filled("4", "sell", size, _price(close, "1.01", tick), 12)
        order_submit(
            owner=user,
            instrument=instrument,
            side="buy",
            quantity=size,
            order_type=Order.Type.LIMIT,
            limit_price=_price(close, "0.9", tick),
            client_order_id=f"demo-{symbol}-resting",
            source=Order.Source.MANUAL,
        )
        stale = order_submit(
            owner=user,
            instrument=instrument,
            side="sell",
            quantity=size,
            order_type=Order.Type.LIMIT,
            limit_price=_price(close, "1.2", tick),
            client_order_id=f"demo-{symbol}-cancelled",
            source=Order.Source.MANUAL,
        ).order
        order_cancel(order=stale, reason="demo")
