"""factory_boy factories for the domain models, shared by every test package."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory

from accounts.models import User
from marketdata.models import Candle, Instrument
from strategies.models import Strategy
from trading.models import Order


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


class InstrumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument
        django_get_or_create = ("symbol",)

    symbol = factory.Sequence(lambda n: f"SYM{n}USDT")
    base = factory.LazyAttribute(lambda i: i.symbol.removesuffix("USDT"))
    quote = "USDT"
    price_tick = Decimal("0.01")
    quantity_step = Decimal("0.0001")


class StrategyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Strategy

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"strategy {n}")
    kind = "sma_cross"
    parameters = factory.LazyFunction(lambda: {"fast": 10, "slow": 50})
    instrument = factory.SubFactory(InstrumentFactory)
    timeframe = "1h"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    owner = factory.SubFactory(UserFactory)
    instrument = factory.SubFactory(InstrumentFactory)
    side = "buy"
    order_type = "market"
    quantity = Decimal("1")
    client_order_id = factory.Sequence(lambda n: f"cid-{n}")


class CandleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Candle

    instrument = factory.SubFactory(InstrumentFactory)
    timeframe = "1h"
    ts = factory.Sequence(lambda n: datetime(2024, 1, 1, n % 24, tzinfo=UTC))
    open = 100.0
    high = 101.0
    low = 99.0
    close = 100.5
    volume = 10.0
