"""Read-only API over the strategy library: every kind with its parameter spec."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from strategies.library.registry import all_kinds

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
