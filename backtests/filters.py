"""FilterSets for backtest runs and their trades, and the runs' `?ordering=`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import django_filters
from django.db.models import FloatField, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django_filters.fields import IsoDateTimeField, IsoDateTimeRangeField, RangeField
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from backtests.engine import EXIT_REASONS, HEADLINE_METRICS
from backtests.models import BacktestRun, BacktestTrade, RunStatus
from strategies.library.registry import kind_choices

ORDERING_FIELDS = ["created_at", *HEADLINE_METRICS]
ORDERING_CHOICES = [choice for name in ORDERING_FIELDS for choice in (name, f"-{name}")]
# The annotation a metric ordering sorts on, e.g. `metric_sharpe`.
METRIC_PREFIX = "metric_"


class BacktestRunOrdering(OrderingFilter):
    """`?ordering=` for runs: created_at or one headline metric; prefix `-` for descending.

    Each choice orders by one value the cursor can keep, then by id. A metric is read from
    the run's JSON as a number, so 10 sorts after 9 on every database. Runs without it
    (unfinished ones) sort last in either direction: the cursor cannot keep a NULL, so they
    stand in with the largest float on the far end. Anything else is a 400 naming `ordering`.
    """

    ordering_description = (
        "Order by created_at or a headline metric; prefix '-' for descending. "
        "Newest first by default."
    )

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        value = request.query_params.get(self.ordering_param)
        if not value:
            return self.get_default_ordering(view)
        if value not in ORDERING_CHOICES:
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Unknown ordering {value!r}; use one of {ORDERING_CHOICES}."
                    ]
                }
            )
        sign = "-" if value.startswith("-") else ""
        field = value.lstrip("-")
        if field == "created_at":
            return (value, f"{sign}id")
        return (f"{sign}{METRIC_PREFIX}{field}", "-id")

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        first = ordering[0]
        field = first.lstrip("-")
        if field.startswith(METRIC_PREFIX):
            metric = field.removeprefix(METRIC_PREFIX)
            missing = -sys.float_info.max if first.startswith("-") else sys.float_info.max
            queryset = queryset.annotate(
                **{
                    field: Coalesce(
                        Cast(KT(f"metrics__{metric}"), FloatField()),
                        Value(missing),
                        output_field=FloatField(),
                    )
                }
            )
        return queryset.order_by(*ordering)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": self.ordering_description,
                "schema": {"type": "string", "enum": ORDERING_CHOICES},
            }
        ]


class _UtcIsoDateTimeField(IsoDateTimeField):
    """django-filter's ISO datetime, in UTC. One that lies past either end of the calendar
    once in UTC (an offset on 9999-12-31 or 0001-01-01) is that end: as it was, it made the
    database's conversion overflow, a 500."""

    def to_python(self, value: Any) -> datetime | None:
        parsed: datetime | None = super().to_python(value)
        if parsed is None or timezone.is_naive(parsed):
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            end = datetime.max if parsed.year == datetime.max.year else datetime.min
            return end.replace(tzinfo=UTC)


class _UtcIsoDateTimeRangeField(IsoDateTimeRangeField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = (_UtcIsoDateTimeField(), _UtcIsoDateTimeField())
        RangeField.__init__(self, fields, *args, **kwargs)


class UtcIsoDateTimeFromToRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    field_class = _UtcIsoDateTimeRangeField


class BacktestRunFilter(django_filters.FilterSet):
    strategy = django_filters.NumberFilter(field_name="strategy_id")
    kind = django_filters.ChoiceFilter(choices=kind_choices)
    symbol = django_filters.CharFilter(field_name="instrument__symbol", lookup_expr="iexact")
    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices)
    cache_hit = django_filters.BooleanFilter()
    created = UtcIsoDateTimeFromToRangeFilter(field_name="created_at")

    class Meta:
        model = BacktestRun
        fields = ["strategy", "kind", "symbol", "status", "cache_hit", "created"]


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
        choices=[(reason, reason) for reason in EXIT_REASONS]
    )
    pnl_sign = PnlSign(
        choices=[("positive", "positive"), ("negative", "negative"), ("zero", "zero")]
    )
    is_open = django_filters.BooleanFilter()

    class Meta:
        model = BacktestTrade
        fields = ["direction", "exit_reason", "pnl_sign", "is_open"]
