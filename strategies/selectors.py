"""Reads of strategies, scoped to what the caller may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from strategies.models import Strategy


def strategy_list(*, user: User) -> QuerySet[Strategy]:
    strategies = Strategy.objects.select_related("instrument", "owner")
    return strategies if user.is_staff else strategies.filter(owner=user)
