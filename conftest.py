"""Root fixtures: users, API clients, an instrument and the artifact stores."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.factories import InstrumentFactory, UserFactory


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


@pytest.fixture
def instrument(db):  # type: ignore[no-untyped-def]
    """BTCUSDT with a cent tick and a 0.001 step: what the ledger's API tests trade."""
    return InstrumentFactory(
        symbol="BTCUSDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
    )


@pytest.fixture(params=["db", "file"])
def store(request, settings, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Runs a cache or artifact test once per store: blob in the database, and file."""
    settings.ARTIFACT_STORE = request.param
    settings.MEDIA_ROOT = tmp_path / "media"
    return str(request.param)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Skip `postgres_only` tests on SQLite, saying why, rather than letting them pass."""
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL or run make test)")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)
