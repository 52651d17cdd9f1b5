"""`POST /api/v1/auth/register/`: sign-up for bots and scripts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User

pytestmark = pytest.mark.django_db

URL = "/api/v1/auth/register/"
GOOD_PASSWORD = "correct-horse-battery-42"


def payload(**overrides: str) -> dict[str, str]:
    return {
        "username": "alice",
        "email": "alice@example.com",
        "password": GOOD_PASSWORD,
    } | overrides


def test_sign_up_creates_an_ordinary_user_and_answers_a_working_jwt(registration_open):
    response = APIClient().post(URL, payload(), format="json")

    assert response.status_code == 201
    body = response.json()
    user = User.objects.get(username="alice")
    assert (body["id"], body["username"], body["email"]) == (user.pk, "alice", "alice@example.com")
    assert "password" not in body
    assert not user.is_staff and not user.is_superuser
    bot = APIClient()
    bot.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert bot.get("/api/v1/orders/").status_code == 200
    refreshed = APIClient().post("/api/v1/auth/token/refresh/", {"refresh": body["refresh"]})
    assert refreshed.status_code == 200


def test_the_new_user_can_log_in_for_a_token(registration_open):
    APIClient().post(URL, payload(), format="json")
    login = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": GOOD_PASSWORD}
    )
    assert login.status_code == 200
    assert "access" in login.json()


def test_a_password_the_validators_refuse_is_a_400_naming_password(registration_open):
    response = APIClient().post(URL, payload(password="password123"), format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["password"]
    assert "too common" in response.json()["password"][0]
    assert not User.objects.exists()


def test_a_taken_username_is_a_400_naming_username(registration_open, user):
    response = APIClient().post(URL, payload(username=user.username.upper()), format="json")
    assert response.status_code == 400
    assert response.json() == {"username": ["A user with that username already exists."]}


def test_a_taken_email_is_a_400_naming_email(registration_open, user):
    response = APIClient().post(URL, payload(email=user.email), format="json")
    assert response.status_code == 400
    assert response.json() == {"email": ["A user with that email address already exists."]}


def test_missing_fields_are_named(registration_open):
    response = APIClient().post(URL, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"username", "email", "password"}


def test_a_stale_bearer_token_does_not_stand_in_the_way(registration_open):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert client.post(URL, payload(), format="json").status_code == 201


def test_closed_registration_is_a_403_and_creates_nobody(settings):
    settings.REGISTRATION_OPEN = False
    response = APIClient().post(URL, payload(), format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Registration is closed."}
    assert not User.objects.exists()


def test_sign_ups_are_throttled_per_client_address(registration_open):
    registration_open.REGISTRATION_THROTTLE_RATE = "2/hour"
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    # Failed attempts count too: they are what guessing looks like.
    assert client.post(URL, payload(password="x"), format="json").status_code == 400
    assert client.post(URL, payload(), format="json").status_code == 201
    refused = client.post(URL, payload(username="bob", email="bob@example.com"), format="json")
    assert refused.status_code == 429
    assert not User.objects.filter(username="bob").exists()
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.9")
    bob = payload(username="bob", email="bob@example.com")
    assert elsewhere.post(URL, bob, format="json").status_code == 201


def test_the_schema_describes_sign_up_and_its_errors(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/auth/register/"]["post"]
    assert set(operation["responses"]) == {"201", "400", "403", "429"}
    assert "security" not in operation  # anonymous, as auth/token/ is
    assert "security" not in schema
    request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    required = schema["components"]["schemas"][request.rsplit("/", 1)[1]]["required"]
    assert set(required) == {"username", "email", "password"}
    created = operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][created.rsplit("/", 1)[1]]["properties"]
    assert set(fields) == {"id", "username", "email", "refresh", "access"}
