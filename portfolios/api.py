"""REST API for portfolio backtests: thin views over portfolios.services and selectors.

Lists are cursor-paginated like every list of the API; BacktestInputError (bad input)
becomes a 400 per field in config.api. Another user's run is a 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from backtests.api import ID_PATTERN
from backtests.selectors import curve_thin
from marketdata.timeframes import TIMEFRAME_SECONDS
from portfolios import selectors, services
from portfolios.filters import PortfolioRunFilter, PortfolioTradeFilter
from portfolios.models import Allocation, PortfolioRun, PortfolioTrade, Rebalance
from strategies.library.registry import kind_choices

# Points an equity curve is thinned to unless `?max_points=` says otherwise.
DEFAULT_CURVE_POINTS = 2000
MAX_CURVE_POINTS = 100_000


def _user(request: Request) -> User:
    # IsAuthenticated (the default permission) has already turned anonymous requests away.
    return cast(User, request.user)


# --- Serializers ----------------------------------------------------------------------


class PortfolioSubmitSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=kind_choices(), help_text="The strategy kind.")
    parameters = serializers.DictField(
        default=dict, help_text="The kind's parameters; defaults fill the rest."
    )
    instruments = serializers.ListField(
        child=serializers.CharField(max_length=40),
        help_text=f"Instrument symbols, {services.MIN_INSTRUMENTS} to "
        f"{services.MAX_INSTRUMENTS}; the order breaks ties (the earlier wins).",
    )
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS))
    start = serializers.DateTimeField(help_text="First bar's open time (inclusive), UTC.")
    end = serializers.DateTimeField(help_text="End of the range (exclusive), UTC.")
    initial_capital = serializers.DecimalField(
        max_digits=20, decimal_places=2, default=Decimal("10000")
    )
    fee_rate = serializers.DecimalField(max_digits=8, decimal_places=6, default=Decimal("0.001"))
    slippage_bps = serializers.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    allocation = serializers.ChoiceField(
        choices=Allocation.choices,
        default=Allocation.EQUAL,
        help_text="equal: 1/k of equity per held instrument; fixed: `weights`; signal: "
        "proportional to each signal.",
    )
    weights = serializers.DictField(
        child=serializers.FloatField(),
        allow_null=True,
        default=None,
        help_text="Symbol to weight (0 or more, summing to at most 1); fixed allocation only.",
    )
    max_positions = serializers.IntegerField(
        allow_null=True,
        default=None,
        min_value=1,
        max_value=services.MAX_INSTRUMENTS,
        help_text="Hold only the instruments with the strongest signals.",
    )
    rebalance = serializers.ChoiceField(choices=Rebalance.choices, default=Rebalance.CHANGE)
    drift_threshold = serializers.DecimalField(
        max_digits=7,
        decimal_places=6,
        allow_null=True,
        default=None,
        help_text="Also rebalance when a weight drifts this far (a fraction) from its target.",
    )
    use_cache = serializers.BooleanField(
        default=True, help_text="False recomputes even when the params hash is cached."
    )


class PerInstrumentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One instrument's row as the engine computed it; trade statistics come with it."""

    instrument = serializers.CharField()
    bars = serializers.IntegerField()
    missing_bars = serializers.IntegerField(
        help_text="Portfolio bars between its first and last bar on which it had none."
    )
    contribution = serializers.FloatField(allow_null=True, help_text="Its pnl over the run.")
    contribution_pct = serializers.FloatField(allow_null=True, help_text="Of initial capital.")
    exposure_pct = serializers.FloatField(allow_null=True, help_text="Mean exposure, percent.")
    turnover = serializers.FloatField(allow_null=True, help_text="Notional traded / mean equity.")
    commissions = serializers.FloatField(allow_null=True)


class PortfolioRunSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    instruments = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    per_instrument = serializers.SerializerMethodField()
    weights = serializers.SerializerMethodField()

    class Meta:
        model = PortfolioRun
        fields = [
            "id",
            "name",
            "kind",
            "parameters",
            "instruments",
            "timeframe",
            "start",
            "end",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "allocation",
            "weights",
            "max_positions",
            "rebalance",
            "drift_threshold",
            "status",
            "progress",
            "error",
            "params_hash",
            "cache_hit",
            "shared_from",
            "bars",
            "metrics",
            "per_instrument",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_instruments(self, run: PortfolioRun) -> list[str]:
        return selectors.instrument_symbols(run)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metrics(self, run: PortfolioRun) -> dict[str, Any]:
        return selectors.headline_metrics(run)

    @extend_schema_field(PerInstrumentSerializer(many=True))
    def get_per_instrument(self, run: PortfolioRun) -> list[dict[str, Any]]:
        return selectors.per_instrument_rows(run)

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), allow_null=True))
    def get_weights(self, run: PortfolioRun) -> dict[str, float] | None:
        return run.weights if isinstance(run.weights, dict) else None


class PortfolioTradeSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    instrument = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = PortfolioTrade
        fields = [
            "id",
            "instrument",
            "side",
            "entry_time",
            "exit_time",
            "entry_price",
            "exit_price",
            "quantity",
            "pnl",
            "pnl_pct",
            "fees",
            "exit_reason",
            "is_open",
        ]
        read_only_fields = fields


class EquityQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    max_points = serializers.IntegerField(
        default=DEFAULT_CURVE_POINTS,
        min_value=2,
        max_value=MAX_CURVE_POINTS,
        help_text="Most points to return; the curve is thinned evenly, first and last kept.",
    )


class EquitySerializer(serializers.Serializer):  # type: ignore[type-arg]
    run = serializers.IntegerField()
    points = serializers.IntegerField(help_text="Points returned.")
    total_points = serializers.IntegerField(help_text="Bars in the whole curve.")
    ts = serializers.ListField(child=serializers.DateTimeField(), help_text="Bar open times.")
    equity = serializers.ListField(child=serializers.FloatField(allow_null=True))
    drawdown = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        help_text="Below the running peak, as a fraction (0 or negative).",
    )


# --- Views ----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List portfolio runs", description="Your runs, newest first."),
    retrieve=extend_schema(
        summary="One portfolio run",
        description="With its metrics and one row per instrument (contribution, mean "
        "exposure, turnover, missing bars).",
    ),
)
@extend_schema(tags=["portfolios"])
class PortfolioRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = PortfolioRun.objects.none()  # for the schema; requests use get_queryset
    lookup_value_regex = ID_PATTERN
    serializer_class = PortfolioRunSerializer
    filterset_class = PortfolioRunFilter
    filter_backends = [DjangoFilterBackend]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return PortfolioRun.objects.none()
        return selectors.portfolio_list(user=_user(self.request))

    def get_object(self) -> PortfolioRun:
        run = selectors.portfolio_get(user=_user(self.request), run_id=int(self.kwargs["pk"]))
        if run is None:
            raise NotFound("No such portfolio run.")
        return run

    @extend_schema(
        summary="Submit a portfolio backtest",
        description="A request whose params hash is cached comes back succeeded at once, "
        "with cache_hit true; any other is queued.",
        request=PortfolioSubmitSerializer,
        responses={
            201: PortfolioRunSerializer,
            400: OpenApiResponse(description="Per-field errors, parameters by name."),
        },
    )
    def create(self, request: Request) -> Response:
        form = PortfolioSubmitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        run = services.portfolio_submit(user=_user(request), **data)
        run = selectors.portfolio_get(user=_user(request), run_id=run.pk) or run
        return Response(PortfolioRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="The run's trades",
        description="A cache hit lists the trades of the run that computed its result.",
        responses=PortfolioTradeSerializer(many=True),
        parameters=[
            OpenApiParameter("instrument", str, description="One instrument's, by symbol."),
            OpenApiParameter("is_open", bool),
        ],
    )
    @action(detail=True, methods=["get"], filter_backends=[], ordering=["entry_time", "id"])
    def trades(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        trades = PortfolioTradeFilter(request.query_params, selectors.portfolio_trades(run=run))
        if not trades.is_valid():
            raise ValidationError(trades.errors)
        page = self.paginate_queryset(trades.qs)
        return self.get_paginated_response(PortfolioTradeSerializer(page, many=True).data)

    @extend_schema(
        summary="The equity and drawdown curves",
        description="Empty until the run has succeeded.",
        parameters=[EquityQuerySerializer],
        responses={200: EquitySerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def equity(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        query = EquityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        frame = selectors.equity_frame(run)
        thinned = curve_thin(frame, max_points=query.validated_data["max_points"])
        return Response(
            {
                "run": run.pk,
                "points": len(thinned),
                "total_points": len(frame),
                "ts": [ts.isoformat() for ts in thinned.index],
                "equity": thinned["equity"].tolist(),
                "drawdown": thinned["drawdown"].tolist(),
            }
        )
