"""`user_register`: who may sign up, with what, and what it writes."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from accounts.models import User
from accounts.services import user_register

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "correct-horse-battery-42"


def test_registered_user_is_active_and_never_staff():
    user = user_register(username="alice", email="alice@example.com", password=GOOD_PASSWORD)
    user.refresh_from_db()
    assert (user.is_active, user.is_staff, user.is_superuser) == (True, False, False)
    assert user.check_password(GOOD_PASSWORD)
    assert user.email == "alice@example.com"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1!", "too short"),
        ("password123", "too common"),
        ("84736251907", "entirely numeric"),
        ("alice-example", "too similar"),
    ],
)
def test_password_must_pass_every_configured_validator(password, message):
    with pytest.raises(ValidationError) as raised:
        user_register(username="alice-example", email="a@example.com", password=password)
    assert list(raised.value.message_dict) == ["password"]
    assert message in " ".join(raised.value.message_dict["password"])
    assert not User.objects.exists()


def test_username_taken_in_another_case_is_refused(user):
    with pytest.raises(ValidationError) as raised:
        user_register(
            username=user.username.upper(), email="new@example.com", password=GOOD_PASSWORD
        )
    assert raised.value.message_dict == {"username": ["A user with that username already exists."]}


def test_email_taken_in_another_case_is_refused(user):
    with pytest.raises(ValidationError) as raised:
        user_register(username="newbie", email=user.email.upper(), password=GOOD_PASSWORD)
    assert raised.value.message_dict == {
        "email": ["A user with that email address already exists."]
    }


def test_every_problem_is_reported_at_once(user):
    with pytest.raises(ValidationError) as raised:
        user_register(username="bad name!", email="", password="123")
    assert set(raised.value.message_dict) == {"username", "email", "password"}
    assert User.objects.count() == 1


def test_the_new_user_is_the_actor_of_their_own_sign_up():
    from auditlog.context import set_actor

    with set_actor(None):  # as the audit middleware does for an anonymous request
        user = user_register(username="alice", email="alice@example.com", password=GOOD_PASSWORD)
    entry = LogEntry.objects.get_for_object(user).get(action=LogEntry.Action.CREATE)
    assert entry.actor == user
    assert "password" not in entry.changes_dict


def test_losing_a_race_for_the_username_is_a_validation_error(monkeypatch):
    # Both sign-ups passed the check; the unique index refuses the second one's insert.
    def insert_refused(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise IntegrityError("UNIQUE constraint failed: accounts_user.username")

    monkeypatch.setattr(User, "save", insert_refused)
    with pytest.raises(ValidationError) as raised:
        user_register(username="alice", email="alice@example.com", password=GOOD_PASSWORD)
    assert list(raised.value.message_dict) == ["username"]
