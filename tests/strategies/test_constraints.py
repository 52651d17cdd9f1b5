"""Strategy constraints hold in the database even when Python-side validation is bypassed."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def test_strategy_name_is_unique_per_owner(user):
    StrategyFactory(owner=user, name="trend")
    with pytest.raises(IntegrityError), transaction.atomic():
        StrategyFactory(owner=user, name="trend")
