"""FilterSets for portfolio runs and their trades."""

from __future__ import annotations

import django_filters

from backtests.models import RunStatus
from portfolios.models import Allocation, PortfolioRun, PortfolioTrade


class PortfolioRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    allocation = django_filters.ChoiceFilter(choices=Allocation.choices)

    class Meta:
        model = PortfolioRun
        fields = ["status", "allocation"]


class PortfolioTradeFilter(django_filters.FilterSet):
    instrument = django_filters.CharFilter(
        field_name="instrument__symbol", help_text="One instrument's trades, by symbol."
    )
    is_open = django_filters.BooleanFilter()

    class Meta:
        model = PortfolioTrade
        fields = ["instrument", "is_open"]
