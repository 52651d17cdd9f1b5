"""`/health`, `seed_demo`, and the migrations being in step with the models."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import User
from strategies.models import Strategy
from trading.models import Candle, Fill, Instrument, Order, Position

pytestmark = pytest.mark.django_db


def test_health_reports_the_database_and_answers_200(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {
        "ok": True,
        "detail": connection.vendor,
        "ms": body["checks"]["database"]["ms"],
    }


def test_health_answers_503_with_the_reason_when_the_database_is_down(client, monkeypatch):
    from config import health

    def broken() -> str:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(health, "_check_database", broken)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["error"] == "ConnectionError: connection refused"


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


def test_models_and_migrations_are_in_step():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
