"""Reads of strategies, scoped to what the caller may see."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from strategies.models import Strategy


def strategy_list(*, user: User) -> QuerySet[Strategy]:
    strategies = Strategy.objects.select_related("instrument", "owner")
    return strategies if user.is_staff else strategies.filter(owner=user)


def strategy_owned_list(*, user: User) -> QuerySet[Strategy]:
    """The strategies `user` owns, staff included: what the strategy API manages. Staff see
    and correct everyone's strategies in the admin, not through the API."""
    return Strategy.objects.select_related("instrument", "owner").filter(owner=user)


def strategy_get(*, user: User, strategy_id: int) -> Strategy | None:
    """One of `user`'s own strategies, or None for anyone else's (or none at all)."""
    return strategy_owned_list(user=user).filter(pk=strategy_id).first()
