"""`seed_demo` builds a usable demo world once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from marketdata.models import Candle, Instrument
from strategies.models import Strategy
from trading.models import Fill, Order, Position

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_a_usable_demo_world_once():
    out = StringIO()
    call_command("seed_demo", "--if-empty", bars=300, stdout=out, stderr=StringIO())
    assert "demo / tradelab-demo" in out.getvalue()
    demo = User.objects.get(username="demo")
    assert demo.check_password("tradelab-demo") and demo.is_staff
    assert Instrument.objects.count() == 2
    assert Candle.objects.filter(timeframe="1h").count() == 600
    kinds = set(Strategy.objects.values_list("kind", flat=True))
    assert len(kinds) >= 4
    assert Strategy.objects.filter(kind="macd_cross", status="paused").exists()
    assert Order.objects.exists() and Fill.objects.exists() and Position.objects.exists()

    call_command("seed_demo", "--if-empty", stdout=StringIO(), stderr=StringIO())
    assert User.objects.count() == 1
    assert Candle.objects.count() == 600
