"""FilterSets for the strategy API's list: kind, instrument symbol, status and name search."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from strategies.library.registry import kind_choices
from strategies.models import Strategy


class StrategyFilter(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=kind_choices)
    symbol = django_filters.CharFilter(field_name="instrument__symbol", lookup_expr="iexact")
    status = django_filters.MultipleChoiceFilter(choices=Strategy.Status.choices)
    search = django_filters.CharFilter(method="search_name", help_text="Part of the name.")

    class Meta:
        model = Strategy
        fields = ["kind", "symbol", "status", "search"]

    def search_name(
        self, queryset: QuerySet[Strategy], name: str, value: str
    ) -> QuerySet[Strategy]:
        return queryset.filter(name__icontains=value.strip()) if value.strip() else queryset
