"""Root fixtures: users and API clients for every test package."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def other_user(db):  # type: ignore[no-untyped-def]
    return UserFactory()


@pytest.fixture
def staff_user(db):  # type: ignore[no-untyped-def]
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def api_client(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff_client(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Skip `postgres_only` tests on SQLite, saying why, rather than letting them pass."""
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL or run make test)")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)
