"""Failed logins are limited per user and per client address (django-axes), on the login
page, the admin's login page and the API's token endpoint alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pass-word-123"  # the factories' password
ATTACKER, VICTIM_HOME, ELSEWHERE = "203.0.113.7", "198.51.100.20", "192.0.2.55"
PAGES = ["/accounts/login/", "/admin/login/"]


def log_in(url: str, username: str, password: str, address: str) -> tuple[int, Client]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(url, {"username": username, "password": password, "next": "/lab/"})
    assert response.status_code != 500
    return response.status_code, client


def fail(url: str, username: str, address: str, times: int) -> list[int]:
    return [log_in(url, username, "wrong-password", address)[0] for _ in range(times)]


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", PAGES)
def test_the_right_password_is_refused_after_the_limit_of_wrong_ones(url) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory(is_staff=True)
    limit = settings.AXES_FAILURE_LIMIT
    # Wrong passwords re-show the form, until the one that reaches the limit.
    assert fail(url, user.username, ATTACKER, limit) == [200] * (limit - 1) + [429]

    status, client = log_in(url, user.username, PASSWORD, ATTACKER)
    assert status == 429 and not is_logged_in(client)
    # The user is locked out from any address, as a distributed guesser would be.
    status, client = log_in(url, user.username, PASSWORD, VICTIM_HOME)
    assert status == 429 and not is_logged_in(client)


@pytest.mark.parametrize("url", PAGES)
def test_another_user_from_another_address_is_unaffected(url) -> None:  # type: ignore[no-untyped-def]
    locked, bystander = UserFactory(is_staff=True), UserFactory(is_staff=True)
    fail(url, locked.username, ATTACKER, settings.AXES_FAILURE_LIMIT)

    status, client = log_in(url, bystander.username, PASSWORD, ELSEWHERE)
    assert status == 302 and is_logged_in(client)


def test_one_address_guessing_at_many_users_is_locked_out() -> None:
    users = [UserFactory() for _ in range(settings.AXES_FAILURE_LIMIT)]
    for user in users:
        fail("/accounts/login/", user.username, ATTACKER, 1)
    newcomer = UserFactory()

    status, client = log_in("/accounts/login/", newcomer.username, PASSWORD, ATTACKER)
    assert status == 429 and not is_logged_in(client)
    status, client = log_in("/accounts/login/", newcomer.username, PASSWORD, ELSEWHERE)
    assert status == 302 and is_logged_in(client)


def test_the_lockout_page_says_what_happened_and_for_how_long() -> None:
    user = UserFactory()
    fail("/accounts/login/", user.username, ATTACKER, settings.AXES_FAILURE_LIMIT)
    page = Client(REMOTE_ADDR=ATTACKER).post(
        "/accounts/login/", {"username": user.username, "password": PASSWORD}
    )
    assert page.status_code == 429
    text = page.content.decode()
    assert "Too many failed logins" in text and user.username in text
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"Try again in\n    {minutes} minutes" in text
    assert "Content-Security-Policy" in page.headers


def test_a_success_forgets_the_users_own_failures() -> None:
    user = UserFactory()
    limit = settings.AXES_FAILURE_LIMIT
    fail("/accounts/login/", user.username, VICTIM_HOME, limit - 1)
    assert log_in("/accounts/login/", user.username, PASSWORD, VICTIM_HOME)[0] == 302
    assert fail("/accounts/login/", user.username, VICTIM_HOME, limit - 1) == [200] * (limit - 1)
    assert log_in("/accounts/login/", user.username, PASSWORD, VICTIM_HOME)[0] == 302


def test_logging_into_ones_own_account_does_not_reset_failures_at_another() -> None:
    attacker, victim = UserFactory(), UserFactory()
    limit = settings.AXES_FAILURE_LIMIT
    fail("/accounts/login/", victim.username, ATTACKER, limit - 1)
    assert log_in("/accounts/login/", attacker.username, PASSWORD, ATTACKER)[0] == 302

    assert fail("/accounts/login/", victim.username, ATTACKER, 1) == [429]


def test_the_lockout_ends_after_the_cool_off() -> None:
    user = UserFactory()
    fail("/accounts/login/", user.username, ATTACKER, settings.AXES_FAILURE_LIMIT)
    assert log_in("/accounts/login/", user.username, PASSWORD, ATTACKER)[0] == 429

    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)
    status, client = log_in("/accounts/login/", user.username, PASSWORD, ATTACKER)
    assert status == 302 and is_logged_in(client)


def test_the_token_endpoint_counts_failures_and_refuses_a_locked_user_with_a_4xx() -> None:
    user = UserFactory()
    api = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        wrong = api.post("/api/v1/auth/token/", {"username": user.username, "password": "nope"})
        assert wrong.status_code == 401

    refused = api.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD})
    assert 400 <= refused.status_code < 500 and "access" not in refused.json()
    # The failures were the API's, the lock holds on the login page too.
    assert log_in("/accounts/login/", user.username, PASSWORD, ELSEWHERE)[0] == 429
