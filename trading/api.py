"""REST API of the trading ledger: thin views over trading.services and trading.selectors.

Lists are scoped to the caller (staff see all), cursor-paginated like every list of the API
(config.api: `?limit=`, default 100, at most 1000), and strict: an unknown query parameter,
a malformed filter or an unknown `ordering` field is a 400 naming it. Conflicts with the
ledger's state (a replayed client_order_id with another payload, an illegal order
transition, an over-fill) raise LedgerConflict, which config.api's handler makes a 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from decimal import Context, Decimal
from functools import cached_property, partial
from typing import Any, cast

from auditlog.models import LogEntry
from django.db.models import QuerySet
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from marketdata.models import Instrument
from persistence.models import Event
from strategies.api import VisibleStrategyField
from trading import selectors, services
from trading.filters import (
    AuditFilter,
    EventFilter,
    FillFilter,
    OrderFilter,
    PositionFilter,
    TradeFilter,
)
from trading.models import ExitReason, Fill, Order, Position, Side, Trade

MAX_BULK_FILLS = 10_000


def _user(request: Request) -> User:
    # IsAuthenticated (the default permission) has already turned anonymous requests away.
    return cast(User, request.user)


# --- Plumbing shared by the ledger views --------------------------------------------------


class StrictOrderingFilter(OrderingFilter):
    """Like DRF's, but an unknown field is a 400 instead of being silently ignored."""

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        params = request.query_params.get(self.ordering_param)
        if params:
            fields = [p.strip() for p in params.split(",") if p.strip()]
            valid = {
                name for name, _ in self.get_valid_fields(queryset, view, {"request": request})
            }
            bad = [f for f in fields if f.lstrip("-") not in valid]
            if bad or not fields:
                raise ValidationError(
                    {self.ordering_param: f"Unknown field(s) {bad}; use one of {sorted(valid)}."}
                )
        return super().get_ordering(request, queryset, view)


class LedgerViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Strict query parameters; pagination and error responses are the API's defaults."""

    filter_backends = [DjangoFilterBackend, StrictOrderingFilter]
    always_allowed = frozenset({"ordering", "limit", "cursor", "format"})

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method == "GET":
            filterset = getattr(self, "filterset_class", None)
            allowed = set(self.always_allowed)
            if filterset is not None:
                allowed |= set(filterset.base_filters)
            unknown = sorted(set(request.query_params) - allowed)
            if unknown:
                raise ValidationError(dict.fromkeys(unknown, "Unknown query parameter."))


# --- Serializers --------------------------------------------------------------------------

Money = partial(serializers.DecimalField, max_digits=38, decimal_places=18, read_only=True)
Ratio = partial(serializers.DecimalField, max_digits=30, decimal_places=8, read_only=True)


class OrderSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    remaining_quantity = Money()

    class Meta:
        model = Order
        fields = [
            "id",
            "client_order_id",
            "symbol",
            "strategy",
            "side",
            "order_type",
            "quantity",
            "limit_price",
            "stop_price",
            "time_in_force",
            "status",
            "filled_quantity",
            "remaining_quantity",
            "avg_fill_price",
            "source",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """What a client may set. Status, fills, owner and PnL are the ledger's, never input."""

    client_order_id = serializers.CharField(max_length=64)
    symbol = serializers.SlugRelatedField(
        slug_field="symbol", queryset=Instrument.objects.all(), source="instrument"
    )
    strategy = VisibleStrategyField(required=False, allow_null=True)
    side = serializers.ChoiceField(choices=Side.choices)
    order_type = serializers.ChoiceField(choices=Order.Type.choices, default=Order.Type.MARKET)
    quantity = serializers.DecimalField(max_digits=38, decimal_places=18)
    limit_price = serializers.DecimalField(
        max_digits=38, decimal_places=18, required=False, allow_null=True
    )
    stop_price = serializers.DecimalField(
        max_digits=38, decimal_places=18, required=False, allow_null=True
    )
    time_in_force = serializers.ChoiceField(
        choices=Order.TimeInForce.choices, default=Order.TimeInForce.GTC
    )


class NotionalField(serializers.DecimalField):
    """A fill's quantity times price, which the fill does not store: up to 40 digits before the
    point (two 20-digit factors) and 18 after, rounded once, from the exact product."""

    _exact = Context(prec=80)  # two 38-digit factors

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=58, decimal_places=18, read_only=True, **kwargs)

    def get_attribute(self, instance: Fill) -> Decimal:
        return self._exact.multiply(instance.quantity, instance.price)


class FillSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="order.instrument.symbol", read_only=True)
    side = serializers.CharField(source="order.side", read_only=True)
    notional = NotionalField()

    class Meta:
        model = Fill
        fields = [
            "id",
            "order",
            "venue_trade_id",
            "symbol",
            "side",
            "quantity",
            "price",
            "fee",
            "notional",
            "ts",
            "created_at",
        ]
        read_only_fields = fields


class FillCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.IntegerField(min_value=1)
    venue_trade_id = serializers.CharField(max_length=100)
    quantity = serializers.DecimalField(max_digits=38, decimal_places=18)
    price = serializers.DecimalField(max_digits=38, decimal_places=18)
    fee = serializers.DecimalField(
        max_digits=38, decimal_places=18, default=Decimal(0), min_value=Decimal(0)
    )
    ts = serializers.DateTimeField()


class FillBulkSerializer(serializers.Serializer):  # type: ignore[type-arg]
    fills = FillCreateSerializer(  # type: ignore[call-arg]
        many=True, allow_empty=False, max_length=MAX_BULK_FILLS
    )


class FillBulkResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    recorded = serializers.IntegerField()
    fill_ids = serializers.ListField(child=serializers.IntegerField())
    duplicates = serializers.ListField(child=serializers.CharField())


class FillCreatedSerializer(FillSerializer):
    duplicate = serializers.BooleanField(read_only=True)

    class Meta(FillSerializer.Meta):
        fields = [*FillSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields


class PositionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    side = serializers.SerializerMethodField()
    net_pnl = Money()

    class Meta:
        model = Position
        fields = [
            "id",
            "symbol",
            "strategy",
            "side",
            "quantity",
            "avg_entry_price",
            "realized_pnl",
            "fees_paid",
            "net_pnl",
            "status",
            "opened_at",
            "closed_at",
        ]
        read_only_fields = fields

    def get_side(self, obj: Position) -> str:
        if obj.quantity > 0:
            return "long"
        return "short" if obj.quantity < 0 else "flat"

    def to_representation(self, instance: Position) -> dict[str, Any]:
        instance.net_pnl = instance.realized_pnl - instance.fees_paid  # type: ignore[attr-defined]
        return super().to_representation(instance)


class TradeSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    net_pnl = Money()
    # Blank while the trade is open; declared so that the schema's enum says so.
    exit_reason = serializers.ChoiceField(
        choices=ExitReason.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Trade
        fields = [
            "id",
            "symbol",
            "strategy",
            "position",
            "direction",
            "status",
            "quantity",
            "entry_time",
            "entry_price",
            "exit_time",
            "exit_price",
            "pnl",
            "pnl_pct",
            "fees",
            "net_pnl",
            "exit_reason",
        ]
        read_only_fields = fields

    @cached_property
    def _zone(self) -> tzinfo:
        # Looked up once per list, not twice per row: it goes through a context-local.
        return timezone.get_current_timezone()

    def to_representation(self, instance: Trade | Mapping[str, Any]) -> dict[str, Any]:
        # The trade history is the ledger's biggest list: build each row directly rather
        # than through sixteen field objects, with the same text DRF's fields produce
        # (test_trade_rows_match_drf_field_rendering checks that). The list's rows come as
        # dicts of TRADE_ROW_FIELDS and the symbol; a single trade as an instance.
        if isinstance(instance, Trade):
            # selectors.trade_list annotates the symbol; a bare instance still has its FK.
            symbol = getattr(instance, "symbol", None) or instance.instrument.symbol
            row: Mapping[str, Any] = {**instance.__dict__, "symbol": symbol}
        else:
            row = instance
        money, dt, zone = _money_text, _datetime_text, self._zone
        return {
            "id": row["id"],
            "symbol": row["symbol"],
            "strategy": row["strategy_id"],
            "position": row["position_id"],
            "direction": row["direction"],
            "status": row["status"],
            "quantity": money(row["quantity"]),
            "entry_time": dt(row["entry_time"], zone),
            "entry_price": money(row["entry_price"]),
            "exit_time": dt(row["exit_time"], zone),
            "exit_price": money(row["exit_price"]),
            "pnl": money(row["pnl"]),
            "pnl_pct": _ratio_text(row["pnl_pct"]),
            "fees": money(row["fees"]),
            "net_pnl": money(row["pnl"] - row["fees"]),
            "exit_reason": row["exit_reason"],
        }


_MONEY_CONTEXT = Context(prec=38)
_RATIO_CONTEXT = Context(prec=20)
_MONEY_EXPONENT = Decimal(1).scaleb(-18)
_RATIO_EXPONENT = Decimal(1).scaleb(-8)


def _money_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return f"{value.quantize(_MONEY_EXPONENT, context=_MONEY_CONTEXT):f}"


def _ratio_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return f"{value.quantize(_RATIO_EXPONENT, context=_RATIO_CONTEXT):f}"


def _datetime_text(value: datetime | None, zone: tzinfo) -> str | None:
    """DRF's DateTimeField text of an aware datetime, shown in `zone` (the current one)."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class SymbolPnlSerializer(serializers.Serializer):  # type: ignore[type-arg]
    symbol = serializers.CharField()
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    net_pnl = Money()


class StrategyPnlSerializer(serializers.Serializer):  # type: ignore[type-arg]
    strategy_id = serializers.IntegerField(allow_null=True)
    strategy_name = serializers.CharField(allow_null=True)
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    net_pnl = Money()


class DailyPnlSerializer(serializers.Serializer):  # type: ignore[type-arg]
    day = serializers.DateField()
    trades = serializers.IntegerField()
    net_pnl = Money()
    cumulative_pnl = Money()


class TradeSummarySerializer(serializers.Serializer):  # type: ignore[type-arg]
    trades = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    win_rate = Ratio(allow_null=True)
    gross_pnl = Money()
    fees = Money()
    net_pnl = Money()
    gross_profit = Money()
    gross_loss = Money()
    profit_factor = Ratio(allow_null=True)
    expectancy = Ratio(allow_null=True)
    average_win = Ratio(allow_null=True)
    average_loss = Ratio(allow_null=True)
    best_trade = Money(allow_null=True)
    worst_trade = Money(allow_null=True)
    max_consecutive_wins = serializers.IntegerField()
    max_consecutive_losses = serializers.IntegerField()
    by_symbol = SymbolPnlSerializer(many=True)
    by_strategy = StrategyPnlSerializer(many=True)
    daily = DailyPnlSerializer(many=True)


class HoldingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    position = PositionSerializer()
    mark_price = Money(allow_null=True)
    market_value = Money()
    unrealized_pnl = Money()


class PortfolioSerializer(serializers.Serializer):  # type: ignore[type-arg]
    starting_cash = Money()
    cash = Money()
    market_value = Money()
    equity = Money()
    realized_pnl = Money()
    unrealized_pnl = Money()
    fees = Money()
    gross_exposure = Money()
    net_exposure = Money()
    positions = HoldingSerializer(many=True)


class EquityPointSerializer(serializers.Serializer):  # type: ignore[type-arg]
    day = serializers.DateField()
    trades = serializers.IntegerField()
    net_pnl = Money()
    equity = Money()


class EventSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Event
        fields = [
            "seq",
            "stream",
            "version",
            "type",
            "data",
            "metadata",
            "prev_hash",
            "hash",
            "created_at",
        ]
        read_only_fields = fields


class AuditEntrySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    model = serializers.SerializerMethodField()
    actor = serializers.SerializerMethodField()
    action = serializers.CharField(source="get_action_display", read_only=True)
    changes = serializers.JSONField(source="changes_dict", read_only=True)

    class Meta:
        model = LogEntry
        fields = [
            "id",
            "timestamp",
            "action",
            "model",
            "object_pk",
            "object_repr",
            "actor",
            "changes",
            "remote_addr",
        ]
        read_only_fields = fields

    def get_model(self, obj: LogEntry) -> str:
        return f"{obj.content_type.app_label}.{obj.content_type.model}"

    @extend_schema_field(OpenApiTypes.STR)
    def get_actor(self, obj: LogEntry) -> str | None:
        return obj.actor.get_username() if obj.actor else None


# --- Views --------------------------------------------------------------------------------


class OrderViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    LedgerViewSet,
):
    queryset = Order.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    ordering_fields = ["created_at", "id", "quantity"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> QuerySet[Order]:
        return selectors.order_list(user=_user(self.request))

    @extend_schema(
        request=OrderCreateSerializer,
        responses={
            201: OrderSerializer,
            200: OpenApiResponse(OrderSerializer, description="Replay: the existing order"),
            409: OpenApiResponse(description="client_order_id reused with another payload"),
        },
    )
    def create(self, request: Request) -> Response:
        payload = OrderCreateSerializer(data=request.data, context={"request": request})
        payload.is_valid(raise_exception=True)
        result = services.order_submit(
            owner=_user(request), actor=_user(request), **payload.validated_data
        )
        return Response(
            OrderSerializer(result.order).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=None,
        responses={
            200: OrderSerializer,
            409: OpenApiResponse(description="The order's status does not allow it"),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        order = services.order_cancel(order=self.get_object(), actor=_user(request))
        return Response(OrderSerializer(order).data)


class FillViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    LedgerViewSet,
):
    queryset = Fill.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = FillSerializer
    filterset_class = FillFilter
    ordering_fields = ["ts", "id", "price", "quantity"]
    ordering = ["-ts", "-id"]

    def get_queryset(self) -> QuerySet[Fill]:
        return selectors.fill_list(user=_user(self.request))

    def _order(self, order_id: int) -> Order:
        # Only the caller's own orders take fills: anyone else's is "not found".
        order = Order.objects.select_related("owner", "instrument").filter(
            pk=order_id, owner=_user(self.request)
        )
        found = order.first()
        if found is None:
            raise ValidationError({"order": "No such order."})
        return found

    @extend_schema(
        request=FillCreateSerializer,
        responses={
            201: FillCreatedSerializer,
            200: OpenApiResponse(FillCreatedSerializer, description="Known venue_trade_id"),
            409: OpenApiResponse(description="Over-fill, or the order takes no fills"),
        },
    )
    def create(self, request: Request) -> Response:
        payload = FillCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        order = self._order(data.pop("order"))
        fill, created = services.fill_record(order=order, actor=_user(request), **data)
        if fill.order_id == order.pk:
            fill.order = order  # its symbol and side, as the response shows them
        else:  # a known venue trade id, recorded for another of the caller's orders
            fill = self.get_queryset().get(pk=fill.pk)
        fill.duplicate = not created  # type: ignore[attr-defined]
        return Response(
            FillCreatedSerializer(fill).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=FillBulkSerializer,
        responses={
            201: FillBulkResultSerializer,
            409: OpenApiResponse(description="A fill the order cannot take; nothing recorded"),
        },
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        payload = FillBulkSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = services.fills_record(
            owner=_user(request),
            actor=_user(request),
            fills=[
                services.FillInput(
                    order_id=item["order"],
                    venue_trade_id=item["venue_trade_id"],
                    quantity=item["quantity"],
                    price=item["price"],
                    ts=item["ts"],
                    fee=item["fee"],
                )
                for item in payload.validated_data["fills"]
            ],
        )
        body = {
            "recorded": len(result.recorded),
            "fill_ids": [f.pk for f in result.recorded],
            "duplicates": result.duplicates,
        }
        return Response(FillBulkResultSerializer(body).data, status=status.HTTP_201_CREATED)


class PositionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, LedgerViewSet):
    queryset = Position.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = PositionSerializer
    filterset_class = PositionFilter
    ordering_fields = ["opened_at", "closed_at", "id", "realized_pnl"]
    ordering = ["-opened_at", "-id"]

    def get_queryset(self) -> QuerySet[Position]:
        return selectors.position_list(user=_user(self.request))


class TradeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, LedgerViewSet):
    queryset = Trade.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = TradeSerializer
    filterset_class = TradeFilter
    ordering_fields = ["entry_time", "exit_time", "id", "pnl"]
    ordering = ["-entry_time", "-id"]

    def get_queryset(self) -> QuerySet[Trade]:
        trades = selectors.trade_list(user=_user(self.request))
        if self.action == "list":
            # A page of history as dicts of the shown columns: no model instance per row.
            # (Cursor pagination reads its position from a dict as well.)
            return trades.values(*selectors.TRADE_ROW_FIELDS, "symbol")  # type: ignore[return-value]
        return trades

    @extend_schema(responses=TradeSummarySerializer)
    @action(detail=False, methods=["get"], pagination_class=None)
    def summary(self, request: Request) -> Response:
        queryset = self.get_queryset()
        filterset = DjangoFilterBackend().get_filterset(request, queryset, self)
        assert filterset is not None
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        summary = selectors.trade_summary(
            trades=filterset.qs, user=_user(request), filters=filterset.form.cleaned_data
        )
        return Response(TradeSummarySerializer(summary).data)


class PortfolioView(APIView):
    @extend_schema(responses=PortfolioSerializer)
    def get(self, request: Request) -> Response:
        return Response(PortfolioSerializer(selectors.portfolio(user=_user(request))).data)


class PortfolioHistoryView(APIView):
    @extend_schema(responses=EquityPointSerializer(many=True))
    def get(self, request: Request) -> Response:
        series = selectors.portfolio_history(user=_user(request))
        return Response(EquityPointSerializer(series, many=True).data)


class EventViewSet(mixins.ListModelMixin, LedgerViewSet):
    queryset = Event.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["seq"]
    ordering = ["seq"]

    def get_queryset(self) -> QuerySet[Event]:
        return selectors.event_list(user=_user(self.request))


class AuditViewSet(mixins.ListModelMixin, LedgerViewSet):
    """Staff only: who changed which ledger row, and how."""

    permission_classes = [IsAdminUser]
    queryset = LogEntry.objects.none()  # for the schema; get_queryset scopes to the caller
    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilter
    ordering_fields = ["timestamp", "id"]
    ordering = ["-timestamp", "-id"]

    def get_queryset(self) -> QuerySet[LogEntry]:
        return selectors.audit_list()
