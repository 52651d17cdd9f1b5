"""The strategy API: the library's kinds with their parameter specs, and the strategy field
every submitting serializer (orders, backtests, sweeps) uses."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from strategies.library.registry import all_kinds
from strategies.models import Strategy
from strategies.selectors import strategy_list


@extend_schema_field(OpenApiTypes.INT)
class VisibleStrategyField(serializers.PrimaryKeyRelatedField):  # type: ignore[type-arg]
    """A strategy id the caller may see, by the one rule of `strategies.selectors.strategy_list`
    that the lab's strategy picker follows too: a user's own strategies; every strategy for
    staff. Any other id, another user's or none at all, is the same 400 naming the field, so
    it reveals no other user's rows.

    What the caller may do with a strategy is the services' business, not this field's: an
    order books only under its owner's own strategies (`order_submit` answers a staff
    member's order with someone else's strategy with a 400 naming `strategy`), while staff
    may backtest and sweep any strategy, as they can in the admin and the lab.
    """

    def get_queryset(self) -> QuerySet[Strategy]:
        return strategy_list(user=self.context["request"].user)


_params = inline_serializer(
    name="StrategyKindParam",
    many=True,
    fields={
        "name": serializers.CharField(),
        "type": serializers.ChoiceField(choices=["int", "float", "bool"]),
        "default": serializers.JSONField(),
        "min": serializers.FloatField(allow_null=True),
        "max": serializers.FloatField(allow_null=True),
        "step": serializers.FloatField(allow_null=True),
        "help": serializers.CharField(),
        "rules": serializers.ListField(child=serializers.DictField()),
    },
)

_kinds = inline_serializer(
    name="StrategyKind",
    many=True,
    fields={
        "name": serializers.CharField(),
        "label": serializers.CharField(),
        "description": serializers.CharField(),
        "allows_short": serializers.BooleanField(),
        "params": _params,
    },
)


class StrategyKindListView(APIView):
    """Every strategy kind and the parameters it accepts, with bounds and cross-field rules."""

    @extend_schema(responses=_kinds, tags=["strategies"])
    def get(self, request: Request) -> Response:
        return Response([kind.describe() for kind in all_kinds()])
