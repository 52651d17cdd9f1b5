"""API authentication: JWTs as bots use them, sessions with CSRF, and nobody else."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.trading.test_ledger_api import fill_payload, order_payload
from trading.models import Order

pytestmark = pytest.mark.django_db


def jwt_client(user) -> APIClient:  # type: ignore[no-untyped-def]
    """A client that logs in for a JWT and sends it, as a trading bot does."""
    client = APIClient()
    token = client.post(
        "/api/v1/auth/token/", {"username": user.username, "password": "pass-word-123"}
    ).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_jwt_authenticates_api_calls(user, instrument):
    client = jwt_client(user)
    assert client.post("/api/v1/orders/", order_payload(), format="json").status_code == 201


def test_changes_made_with_a_jwt_are_audited_with_their_actor(user, instrument):
    from auditlog.models import LogEntry

    client = jwt_client(user)
    order = client.post("/api/v1/orders/", order_payload(), format="json").json()
    fill = client.post(
        "/api/v1/fills/", fill_payload(Order.objects.get(pk=order["id"])), format="json"
    ).json()
    entries = LogEntry.objects.all()
    created = entries.get(
        content_type__model="order", object_pk=str(order["id"]), action=LogEntry.Action.CREATE
    )
    assert created.actor == user
    assert entries.get(content_type__model="fill", object_pk=str(fill["id"])).actor == user
    updated = entries.filter(content_type__model="order", action=LogEntry.Action.UPDATE)
    assert [entry.actor for entry in updated] == [user]


def test_the_schema_describes_jwt_authentication(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"


def test_session_post_without_csrf_token_is_403(user, instrument):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/orders/").status_code == 200
    assert client.post("/api/v1/orders/", order_payload(), format="json").status_code == 403
    assert not Order.objects.exists()


def test_anonymous_is_turned_away():
    assert APIClient().get("/api/v1/trades/").status_code == 401
