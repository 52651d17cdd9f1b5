"""`/health` reports the database, and the migrations are in step with the models."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

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


def test_models_and_migrations_are_in_step():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
