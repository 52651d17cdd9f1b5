"""The strategy API: the caller's own strategies (list, create, edit, archive, restore, clone,
delete), the library's kinds with their parameter specs, and the strategy field every
submitting serializer (orders, backtests, sweeps) uses.

Thin views over strategies.services and selectors: a ValidationError from a service is a 400
per field (`name`, `parameters.<name>`) and a StrategyConflict a 409, in config.api.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from marketdata.models import Instrument
from marketdata.timeframes import TIMEFRAME_SECONDS
from strategies import services
from strategies.filters import StrategyFilter
from strategies.library.registry import all_kinds, kind_choices
from strategies.models import Strategy
from strategies.selectors import strategy_get, strategy_list, strategy_owned_list

# Ids in URLs: digits only and short enough for a BIGINT, so `strategies/kinds/` is never
# taken for a strategy and the router answers 404 for anything else.
ID_PATTERN = r"[0-9]{1,18}"


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


# --- Strategies -------------------------------------------------------------------------


def _user(request: Request) -> User:
    # IsAuthenticated (the default permission) has already turned anonymous requests away.
    return cast(User, request.user)


class StrategySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = Strategy
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "parameters",
            "symbol",
            "timeframe",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class StrategyWriteSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A strategy's fields as a request sets them; the services hold the rules (parameters
    by the kind's spec, a name unique per owner)."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=kind_choices())
    parameters = serializers.DictField(
        required=False,
        help_text="The kind's parameters (`GET /api/v1/strategies/kinds/`); left out ones "
        "take their defaults. A kind without parameters takes {}.",
    )
    symbol = serializers.SlugRelatedField(
        slug_field="symbol", queryset=Instrument.objects.all(), source="instrument"
    )
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS), required=False)
    initial_capital = serializers.DecimalField(
        max_digits=20, decimal_places=2, min_value=services.MIN_CAPITAL, required=False
    )
    fee_rate = serializers.DecimalField(
        max_digits=8,
        decimal_places=6,
        min_value=services.MIN_FEE_RATE,
        max_value=services.MAX_FEE_RATE,
        required=False,
    )
    slippage_bps = serializers.DecimalField(
        max_digits=8, decimal_places=2, min_value=services.MIN_SLIPPAGE_BPS, required=False
    )
    status = serializers.ChoiceField(
        choices=[s for s in Strategy.Status.values if s != Strategy.Status.ARCHIVED],
        required=False,
        help_text="Archive and restore with their own actions.",
    )


class StrategyCloneSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=100, help_text="The copy's name.")


_in_use = OpenApiResponse(
    description="The strategy has backtest runs, sweeps or ledger rows: archive it instead."
)


@extend_schema_view(
    list=extend_schema(
        summary="List your strategies",
        description="Your own strategies (staff too: everyone's are in the admin), by name; "
        "`search` matches part of the name.",
    ),
    retrieve=extend_schema(summary="One of your strategies"),
)
@extend_schema(tags=["strategies"])
class StrategyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Strategy.objects.none()  # for the schema; requests use get_queryset
    lookup_value_regex = ID_PATTERN
    serializer_class = StrategySerializer
    filterset_class = StrategyFilter
    filter_backends = [DjangoFilterBackend]
    ordering = ["name", "id"]  # names are unique per owner, so the cursor's field is too

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Strategy.objects.none()
        return strategy_owned_list(user=_user(self.request))

    def get_object(self) -> Strategy:
        strategy = strategy_get(user=_user(self.request), strategy_id=int(self.kwargs["pk"]))
        if strategy is None:
            raise NotFound("No such strategy.")
        return strategy

    @extend_schema(
        summary="Create a strategy",
        request=StrategyWriteSerializer,
        responses={201: StrategySerializer},
    )
    def create(self, request: Request) -> Response:
        form = StrategyWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        strategy = services.strategy_create(owner=_user(request), **form.validated_data)
        return Response(StrategySerializer(strategy).data, status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        strategy = self.get_object()
        form = StrategyWriteSerializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        strategy = services.strategy_update(strategy=strategy, **form.validated_data)
        return Response(StrategySerializer(strategy).data)

    @extend_schema(
        summary="Replace a strategy's settings",
        request=StrategyWriteSerializer,
        responses={200: StrategySerializer},
    )
    def update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=False)

    @extend_schema(
        summary="Change some of a strategy's settings",
        request=StrategyWriteSerializer,
        responses={200: StrategySerializer},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        summary="Delete a strategy nothing refers to",
        description="A strategy with backtest runs, sweeps, orders, positions or trades is "
        "kept for its history: the answer is a 409, archive it instead.",
        request=None,
        responses={204: None, 409: _in_use},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        services.strategy_delete(strategy=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Archive a strategy", request=None, responses={200: StrategySerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        strategy = services.strategy_archive(strategy=self.get_object())
        return Response(StrategySerializer(strategy).data)

    @extend_schema(
        summary="Restore an archived strategy",
        description="Back to the status it had when archived (draft when unknown).",
        request=None,
        responses={200: StrategySerializer},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str) -> Response:
        strategy = services.strategy_restore(strategy=self.get_object())
        return Response(StrategySerializer(strategy).data)

    @extend_schema(
        summary="Save a strategy as a new one",
        description="A new draft with this strategy's kind, parameters and settings.",
        request=StrategyCloneSerializer,
        responses={201: StrategySerializer},
    )
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str) -> Response:
        original = self.get_object()
        form = StrategyCloneSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        copy = services.strategy_clone(
            strategy=original, name=form.validated_data["name"], owner=_user(request)
        )
        return Response(StrategySerializer(copy).data, status=status.HTTP_201_CREATED)
