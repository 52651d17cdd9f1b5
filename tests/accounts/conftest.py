"""Sign-up fixtures: registration opened on demand, and throttle counts that start at zero."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_throttle_counts():  # type: ignore[no-untyped-def]
    # Throttles count in the cache, which outlives a test.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def registration_open(settings):  # type: ignore[no-untyped-def]
    settings.REGISTRATION_OPEN = True
    return settings
