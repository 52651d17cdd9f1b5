"""FilterSets for backtest runs and their trades."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import F, FloatField, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from backtests.engine import HEADLINE_METRICS
from backtests.models import BacktestRun, BacktestTrade, RunStatus
from strategies.library.registry import kind_choices

ORDERING_FIELDS = ["created_at", *HEADLINE_METRICS]


def _ordering_choices() -> list[tuple[str, str]]:
    choices = []
    for name in ORDERING_FIELDS:
        choices.append((name, f"{name} ascending"))
        choices.append((f"-{name}", f"{name} descending"))
    return choices


class BacktestRunFilter(django_filters.FilterSet):
    strategy = django_filters.NumberFilter(field_name="strategy_id")
    kind = django_filters.ChoiceFilter(choices=kind_choices)
    symbol = django_filters.CharFilter(field_name="instrument__symbol", lookup_expr="iexact")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    cache_hit = django_filters.BooleanFilter()
    created = django_filters.IsoDateTimeFromToRangeFilter(field_name="created_at")
    ordering = django_filters.ChoiceFilter(
        choices=_ordering_choices(),
        method="order_by_field",
        label="Order by created_at or a headline metric; prefix '-' for descending.",
    )

    class Meta:
        model = BacktestRun
        fields = ["strategy", "kind", "symbol", "status", "cache_hit", "created"]

    def order_by_field(self, queryset: QuerySet[BacktestRun], name: str, value: str) -> Any:
        field = value.lstrip("-")
        descending = value.startswith("-")
        if field == "created_at":
            return queryset.order_by(value, f"{'-' if descending else ''}id")
        # Metrics live in JSON; cast to a number so 10 sorts after 9 on every database.
        queryset = queryset.annotate(_sort_metric=Cast(KT(f"metrics__{field}"), FloatField()))
        expression = F("_sort_metric")
        ordered = (
            expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
        )
        return queryset.order_by(ordered, "-id")


class PnlSign(django_filters.ChoiceFilter):
    def filter(self, qs: QuerySet[BacktestTrade], value: str) -> QuerySet[BacktestTrade]:
        if value == "positive":
            return qs.filter(pnl__gt=0)
        if value == "negative":
            return qs.filter(pnl__lt=0)
        if value == "zero":
            return qs.filter(pnl=0)
        return qs


class BacktestTradeFilter(django_filters.FilterSet):
    direction = django_filters.ChoiceFilter(choices=[("long", "long"), ("short", "short")])
    exit_reason = django_filters.MultipleChoiceFilter(
        choices=[(r, r) for r in ("signal", "stop", "target", "end")]
    )
    pnl_sign = PnlSign(
        choices=[("positive", "positive"), ("negative", "negative"), ("zero", "zero")]
    )
    is_open = django_filters.BooleanFilter()

    class Meta:
        model = BacktestTrade
        fields = ["direction", "exit_reason", "pnl_sign", "is_open"]
