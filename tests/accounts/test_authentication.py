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


# --- Throttling behind proxies ------------------------------------------------------------


@pytest.fixture
def two_anonymous_requests_a_minute(monkeypatch):  # type: ignore[no-untyped-def]
    from django.core.cache import cache
    from rest_framework.throttling import AnonRateThrottle

    # DRF's throttles read their rates once, at import: patch the class, not the settings.
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "2/minute"})
    cache.clear()  # the counts live in the cache, which outlives a test
    yield
    cache.clear()


def _token_attempt(**headers):  # type: ignore[no-untyped-def]
    # An empty body is refused (400) without checking any password, but it still counts.
    return APIClient().post("/api/v1/auth/token/", {}, format="json", **headers)


def test_a_forged_x_forwarded_for_gets_no_fresh_token_bucket(two_anonymous_requests_a_minute):
    assert [_token_attempt().status_code for _ in range(3)] == [400, 400, 429]
    for forged in ("203.0.113.7", "198.51.100.1, 203.0.113.9"):
        assert _token_attempt(HTTP_X_FORWARDED_FOR=forged).status_code == 429


def test_behind_one_proxy_the_address_it_forwards_is_the_client(
    two_anonymous_requests_a_minute, settings
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    assert [_token_attempt(**client).status_code for _ in range(3)] == [400, 400, 429]
    # Whatever the client put in front, the address our proxy appended is what counts.
    spoofed = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7"}
    assert _token_attempt(**spoofed).status_code == 429
    assert _token_attempt(HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 400


# --- Tokens signed with our key but naming no user ----------------------------------------


@pytest.mark.parametrize(
    "user_id",
    ["abc", ["1"], {"id": 1}, 2**64, -(2**70), 1.5, True, "", None, "1 OR 1=1"],
    ids=repr,
)
def test_a_signed_token_whose_user_id_is_not_a_user_id_is_a_401(user, user_id):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(user)
    token["user_id"] = user_id
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = client.get("/api/v1/orders/")
    assert response.status_code == 401, response.content


def test_a_signed_token_of_a_user_that_does_not_exist_is_a_401(user):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(user)
    token["user_id"] = user.pk + 1000
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/orders/").status_code == 401


def test_a_refresh_token_whose_user_id_is_not_a_user_id_is_a_401(user):
    from rest_framework_simplejwt.tokens import RefreshToken

    for user_id in ("abc", ["1"], 2**64):
        token = RefreshToken.for_user(user)
        token["user_id"] = user_id
        response = APIClient().post(
            "/api/v1/auth/token/refresh/", {"refresh": str(token)}, format="json"
        )
        assert response.status_code == 401, (user_id, response.content)


def test_a_refresh_token_of_a_deleted_user_is_a_401(user):
    from rest_framework_simplejwt.tokens import RefreshToken

    token = str(RefreshToken.for_user(user))
    user.delete()
    response = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": token}, format="json")
    assert response.status_code == 401, response.content


def test_a_refresh_token_still_refreshes(user):
    from rest_framework_simplejwt.tokens import RefreshToken

    token = str(RefreshToken.for_user(user))
    response = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": token}, format="json")
    assert response.status_code == 200 and response.json()["access"]
