"""REST API for backtests and sweeps: thin views over backtests.services and selectors.

Lists are cursor-paginated and domain errors (BacktestInputError, BacktestConflict) become
400s and 409s in config.api, like every endpoint of the API; views here do not catch them.
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from backtests import chart_window, selectors, services
from backtests.engine import EXIT_REASONS, HEADLINE_METRICS
from backtests.filters import BacktestRunFilter, BacktestRunOrdering, BacktestTradeFilter
from backtests.ml import ml_diagnostics
from backtests.models import BacktestRun, BacktestTrade, RunStatus, Sizing, Sweep
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.downloads import (
    PARQUET_MIME,
    XLSX_MIME,
    CsvRenderer,
    ParquetRenderer,
    XlsxRenderer,
)
from persistence.selectors import cache_stats
from strategies.api import VisibleStrategyField


def _user(request: Request) -> User:
    # IsAuthenticated (the default permission) has already turned anonymous requests away.
    return cast(User, request.user)


# Ids in URLs: digits only, and short enough for a BIGINT, so the router answers 404 for
# anything else before int() or the database can fail on it.
ID_PATTERN = r"[0-9]{1,18}"


def _download(content: bytes, *, filename: str, mime: str) -> HttpResponse:
    response = HttpResponse(content, content_type=mime)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Serializers ----------------------------------------------------------------------


class RunOverridesMixin(serializers.Serializer):  # type: ignore[type-arg]
    """Settings a request may override; anything left out comes from the strategy."""

    parameters = serializers.DictField(
        required=False, help_text="Merged over the strategy's parameters, then validated."
    )
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS), required=False)
    initial_capital = serializers.DecimalField(max_digits=20, decimal_places=2, required=False)
    fee_rate = serializers.DecimalField(max_digits=8, decimal_places=6, required=False)
    slippage_bps = serializers.DecimalField(max_digits=8, decimal_places=2, required=False)
    size_fraction = serializers.DecimalField(max_digits=6, decimal_places=4, required=False)
    sizing = serializers.ChoiceField(
        choices=Sizing.choices,
        required=False,
        help_text="What a full position is: a fraction of equity (size_fraction, the default), "
        "fixed_quantity units, fixed_notional of quote currency, or risk_pct % of equity "
        "lost at the stop (needs stop_loss_pct).",
    )
    fixed_quantity = serializers.DecimalField(
        max_digits=38, decimal_places=18, required=False, allow_null=True
    )
    fixed_notional = serializers.DecimalField(
        max_digits=20, decimal_places=2, required=False, allow_null=True
    )
    risk_pct = serializers.DecimalField(
        max_digits=8, decimal_places=4, required=False, allow_null=True
    )
    fixed_fee = serializers.DecimalField(
        max_digits=20, decimal_places=8, required=False, help_text="Quote currency per fill."
    )
    min_fee = serializers.DecimalField(
        max_digits=20, decimal_places=8, required=False, help_text="Least fee of any fill."
    )
    allow_short = serializers.BooleanField(required=False)
    stop_loss_pct = serializers.DecimalField(
        max_digits=8, decimal_places=4, required=False, allow_null=True
    )
    take_profit_pct = serializers.DecimalField(
        max_digits=8, decimal_places=4, required=False, allow_null=True
    )
    # Execution options (services.EXECUTION_FIELDS); the engine's rules for each are in
    # backtests.engine's docstring.
    entry_order = serializers.ChoiceField(
        choices=["market", "close", "limit", "stop"],
        required=False,
        help_text="market: the next bar's open (the default); close: the signal bar's close; "
        "limit or stop: a resting order entry_offset_pct % from the signal bar's close, valid "
        "for entry_valid_bars bars.",
    )
    entry_offset_pct = serializers.DecimalField(
        max_digits=8, decimal_places=4, required=False, allow_null=True
    )
    entry_valid_bars = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    trailing_stop_pct = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        required=False,
        allow_null=True,
        help_text="Exit when the price falls this % from the best price since entry.",
    )
    atr_stop_multiple = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        required=False,
        allow_null=True,
        help_text="A stop this many ATRs (Wilder's, over atr_period bars) from the entry.",
    )
    atr_period = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    time_stop_bars = serializers.IntegerField(
        min_value=1,
        max_value=10_000_000,
        required=False,
        allow_null=True,
        help_text="Exit after this many bars held.",
    )
    max_leverage = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        required=False,
        help_text="Notional up to this many times equity (1, the default: no leverage).",
    )
    maintenance_margin_pct = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        required=False,
        help_text="Liquidate when equity falls to this % of the position's notional.",
    )
    borrow_rate_pct = serializers.DecimalField(
        max_digits=8,
        decimal_places=4,
        required=False,
        help_text="Yearly % paid per bar on a short's notional and a leveraged long's loan.",
    )
    spread_bps = serializers.DecimalField(
        max_digits=8,
        decimal_places=2,
        required=False,
        help_text="Bid-ask spread: market fills pay half of it.",
    )

    def overrides(self) -> dict[str, Any]:
        data = self.validated_data
        return {name: data[name] for name in services.OVERRIDABLE if name in data}


class BacktestSubmitSerializer(RunOverridesMixin):
    strategy = VisibleStrategyField()
    start = serializers.DateTimeField(help_text="First bar's open time (inclusive), UTC.")
    end = serializers.DateTimeField(help_text="End of the range (exclusive), UTC.")
    use_cache = serializers.BooleanField(
        default=True, help_text="False recomputes even when the params hash is cached."
    )


class BacktestRunSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    headline_metrics = serializers.SerializerMethodField()
    websocket = serializers.SerializerMethodField()

    class Meta:
        model = BacktestRun
        fields = [
            "id",
            "owner",
            "strategy",
            "kind",
            "parameters",
            "symbol",
            "timeframe",
            "start",
            "end",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "size_fraction",
            "allow_short",
            "stop_loss_pct",
            "take_profit_pct",
            "execution",
            "params_hash",
            "cache_hit",
            "shared_from",
            "status",
            "progress",
            "bars_done",
            "bars_total",
            "error",
            "attempts",
            "headline_metrics",
            "metrics",
            "sweep",
            "websocket",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_headline_metrics(self, run: BacktestRun) -> dict[str, Any]:
        return services.headline(run.metrics)

    def get_websocket(self, run: BacktestRun) -> str:
        return f"/ws/backtests/{run.pk}/"


class BacktestTradeSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = BacktestTrade
        fields = ["id", *selectors.TRADE_EXPORT_COLUMNS]
        read_only_fields = fields


class SweepSubmitSerializer(RunOverridesMixin):
    strategy = VisibleStrategyField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    grid = serializers.DictField(
        child=serializers.ListField(
            child=serializers.JSONField(),
            allow_empty=False,
            error_messages={"empty": "The grid is empty: give this parameter at least one value."},
        ),
        help_text='Parameter name to the values to try, e.g. {"fast": [5, 10], "slow": [50]}.',
    )
    samples = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Run this many combinations drawn at random from the grid instead of all.",
    )
    rank_metric = serializers.ChoiceField(choices=list(services.RANKABLE_METRICS), default="sharpe")


class SweepSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    websocket = serializers.SerializerMethodField()

    class Meta:
        model = Sweep
        fields = [
            "id",
            "owner",
            "strategy",
            "kind",
            "symbol",
            "timeframe",
            "start",
            "end",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "size_fraction",
            "allow_short",
            "stop_loss_pct",
            "take_profit_pct",
            "execution",
            "grid",
            "samples",
            "rank_metric",
            "status",
            "progress",
            "combinations_total",
            "combinations_done",
            "combinations_cached",
            "best_parameters",
            "best_value",
            "results",
            "error",
            "websocket",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_websocket(self, sweep: Sweep) -> str:
        return f"/ws/sweeps/{sweep.pk}/"


_conflict = OpenApiResponse(description="The run has already finished.")


# --- The chart window -----------------------------------------------------------------


class ChartWindowQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    start = serializers.DateTimeField(
        required=False, help_text="Window start (inclusive), UTC; the run's start if left out."
    )
    end = serializers.DateTimeField(
        required=False, help_text="Window end (inclusive), UTC; the run's end if left out."
    )
    max_bars = serializers.IntegerField(
        required=False,
        default=chart_window.DEFAULT_MAX_BARS,
        min_value=1,
        help_text=f"Most candles to draw; bars are merged into buckets to fit. More than "
        f"{chart_window.MAX_BARS_CAP} is cut to {chart_window.MAX_BARS_CAP}.",
    )

    def validate_max_bars(self, value: int) -> int:
        return min(value, chart_window.MAX_BARS_CAP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise ValidationError({"end": ["Must be after start."]})
        return attrs


def _numbers(help_text: str = "") -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(allow_null=True), help_text=help_text)


class ChartCandlesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ts = serializers.ListField(
        child=serializers.DateTimeField(), help_text="Each drawn candle's first bar's time."
    )
    open = _numbers("The first bar's open.")
    high = _numbers("The highest high of the bucket.")
    low = _numbers("The lowest low of the bucket.")
    close = _numbers("The last bar's close.")
    volume = _numbers("The bucket's volume.")


class ChartOverlaySerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField(help_text='The line\'s name, e.g. "SMA 10".')
    axis = serializers.ChoiceField(
        choices=["price", "oscillator"],
        help_text="price: drawn over the candles; oscillator: on a scale of its own (RSI).",
    )
    values = _numbers("The bucket's last value, one per drawn candle; null while warming up.")


class ChartTradeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=["long", "short"])
    entry_time = serializers.DateTimeField()
    entry_price = serializers.FloatField(allow_null=True)
    exit_time = serializers.DateTimeField(allow_null=True)
    exit_price = serializers.FloatField(allow_null=True)
    pnl = serializers.FloatField(allow_null=True)
    pnl_pct = serializers.FloatField(allow_null=True)
    exit_reason = serializers.CharField()
    is_open = serializers.BooleanField()


class ChartCurvesSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ts = serializers.ListField(child=serializers.DateTimeField())
    equity = _numbers()
    drawdown_pct = _numbers("Below the running peak, in percent (0 or negative).")
    buy_hold = _numbers("Initial capital times the close over the run's first close.")


class ChartWindowSerializer(serializers.Serializer):  # type: ignore[type-arg]
    run = serializers.IntegerField()
    timeframe = serializers.CharField(help_text="One bar's timeframe, e.g. 1m.")
    start = serializers.DateTimeField(help_text="The window's start, clipped to the run's.")
    end = serializers.DateTimeField(help_text="The window's end (exclusive), clipped.")
    run_start = serializers.DateTimeField()
    run_end = serializers.DateTimeField()
    bars = serializers.IntegerField(help_text="Bars in the window.")
    bucket_bars = serializers.IntegerField(
        help_text="Bars merged into each drawn candle; 1 means single bars."
    )
    candles = ChartCandlesSerializer()
    overlays = ChartOverlaySerializer(many=True)
    trades = ChartTradeSerializer(many=True)
    trades_truncated = serializers.BooleanField(
        help_text=f"True when the window holds more than {chart_window.MAX_TRADES} trades "
        "and only the first ones are listed: zoom in to see the rest."
    )
    curves = ChartCurvesSerializer()


# --- Views ----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List backtest runs",
        description="Your runs (every run for staff), filtered, ordered by created_at or a "
        f"headline metric ({', '.join(HEADLINE_METRICS)}).",
    ),
    retrieve=extend_schema(summary="One backtest run"),
)
@extend_schema(tags=["backtests"])
class BacktestRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = BacktestRun.objects.none()  # for the schema; requests use get_queryset
    lookup_value_regex = ID_PATTERN
    serializer_class = BacktestRunSerializer
    filterset_class = BacktestRunFilter
    filter_backends = [DjangoFilterBackend, BacktestRunOrdering]
    ordering = ["-created_at", "-id"]  # `?ordering=` may pick another, metrics included

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return BacktestRun.objects.none()
        return selectors.backtest_list(user=_user(self.request))

    def get_object(self) -> BacktestRun:
        run = selectors.backtest_get(user=_user(self.request), run_id=int(self.kwargs["pk"]))
        if run is None:
            raise NotFound("No such backtest run.")
        return run

    @extend_schema(
        summary="Submit a backtest",
        request=BacktestSubmitSerializer,
        responses={
            201: BacktestRunSerializer,
            400: OpenApiResponse(description="Per-field errors, parameters by name."),
        },
    )
    def create(self, request: Request) -> Response:
        form = BacktestSubmitSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        run = services.backtest_submit(
            user=_user(request),
            strategy=data["strategy"],
            start=data["start"],
            end=data["end"],
            overrides=form.overrides(),
            use_cache=data["use_cache"],
        )
        return Response(BacktestRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a queued or running backtest",
        request=None,
        responses={200: BacktestRunSerializer, 409: _conflict},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = services.backtest_cancel(run=self.get_object())
        return Response(BacktestRunSerializer(run).data)

    @extend_schema(
        summary="The run's trades",
        responses=BacktestTradeSerializer(many=True),
        parameters=[
            OpenApiParameter("is_open", bool),
            OpenApiParameter("direction", str, enum=["long", "short"]),
            OpenApiParameter("exit_reason", str, enum=list(EXIT_REASONS)),
            OpenApiParameter("pnl_sign", str, enum=["positive", "negative", "zero"]),
        ],
    )
    @action(detail=True, methods=["get"], filter_backends=[], ordering=["entry_time", "id"])
    def trades(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        trades = BacktestTradeFilter(request.query_params, selectors.backtest_trades(run=run))
        if not trades.is_valid():
            raise ValidationError(trades.errors)
        page = self.paginate_queryset(trades.qs)
        return self.get_paginated_response(BacktestTradeSerializer(page, many=True).data)

    @extend_schema(
        summary="A window of the run's chart",
        description="Candles over [start, end] merged into at most max_bars drawn candles "
        "(bucket_bars bars each), the strategy's indicator lines on the same buckets, every "
        "trade with an entry or exit in the window, and the equity, drawdown and "
        "buy-and-hold curves thinned to about max_bars points.",
        parameters=[ChartWindowQuerySerializer],
        responses={
            200: ChartWindowSerializer,
            409: OpenApiResponse(description="The run has not succeeded: nothing to chart."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def chart(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        query = ChartWindowQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if run.status != RunStatus.SUCCEEDED:
            raise services.BacktestConflict(f"Run {run.pk} has no chart ({run.status}).")
        window = chart_window.chart_window(
            run=run,
            start=query.validated_data.get("start"),
            end=query.validated_data.get("end"),
            max_bars=query.validated_data["max_bars"],
        )
        # Already JSON-shaped (the serializer documents it): a window may hold 20,000 trades,
        # which a serializer would spend a second on field by field.
        return Response(window)

    @extend_schema(
        summary="The equity and drawdown curves",
        parameters=[
            OpenApiParameter("format", str, enum=["json", "csv", "parquet"], default="json")
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, PARQUET_MIME): OpenApiTypes.BINARY,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[JSONRenderer, CsvRenderer, ParquetRenderer],
        filter_backends=[],
        pagination_class=None,
    )
    def equity(self, request: Request, pk: str) -> Any:
        run = self.get_object()
        wanted = request.query_params.get("format", "json")
        if wanted == "parquet":
            return _download(
                selectors.equity_parquet_file(run),
                filename=f"run-{run.pk}-equity.parquet",
                mime=PARQUET_MIME,
            )
        frame = selectors.equity_frame(run)
        if wanted == "csv":
            text = frame.to_csv(index_label="ts", date_format="%Y-%m-%dT%H:%M:%SZ")
            return _download(text.encode(), filename=f"run-{run.pk}-equity.csv", mime="text/csv")
        return Response(
            {
                "run": run.pk,
                "ts": [ts.isoformat() for ts in frame.index],
                "equity": frame["equity"].tolist(),
                "drawdown": frame["drawdown"].tolist(),
            }
        )

    @extend_schema(
        summary="Download the results",
        description="xlsx: sheets metrics, trades and equity (built once per params hash and "
        "kept as an artifact). csv: the trades.",
        parameters=[OpenApiParameter("format", str, enum=["xlsx", "csv"], default="xlsx")],
        responses={
            (200, XLSX_MIME): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            409: _conflict,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[XlsxRenderer, CsvRenderer, JSONRenderer],
        filter_backends=[],
        pagination_class=None,
    )
    def export(self, request: Request, pk: str) -> Any:
        run = self.get_object()
        wanted = request.query_params.get("format", "xlsx")
        if wanted == "csv":
            if run.status != RunStatus.SUCCEEDED:
                raise services.BacktestConflict(f"Run {run.pk} has no results ({run.status}).")
            text = selectors.trade_frame(run).to_csv(index=False)
            return _download(text.encode(), filename=f"run-{run.pk}-trades.csv", mime="text/csv")
        content = services.backtest_export_xlsx(run=run)
        return _download(content, filename=f"run-{run.pk}.xlsx", mime=XLSX_MIME)

    @extend_schema(
        summary="The ML predictor's walk-forward diagnostics",
        description="Per fold: the training and prediction windows, out-of-sample accuracy, "
        "precision, recall and ROC AUC, the confusion matrix (rows true down/up, columns "
        "predicted), the model's feature importances and permutation importances; their "
        "means over folds; and P(up) over the close, thinned to at most 5,000 points. "
        "409 for a run of another kind or one without results.",
        responses={
            200: OpenApiTypes.OBJECT,
            409: OpenApiResponse(description="Not an ML predictor run, or it has no results."),
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def ml(self, request: Request, pk: str) -> Response:
        return Response(ml_diagnostics(run=self.get_object()))


@extend_schema_view(
    list=extend_schema(summary="List sweeps"), retrieve=extend_schema(summary="One sweep")
)
@extend_schema(tags=["sweeps"])
class SweepViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Sweep.objects.none()  # for the schema; requests use get_queryset
    lookup_value_regex = ID_PATTERN
    serializer_class = SweepSerializer
    filter_backends: list[Any] = []
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Sweep.objects.none()
        return selectors.sweep_list(user=_user(self.request))

    def get_object(self) -> Sweep:
        sweep = selectors.sweep_get(user=_user(self.request), sweep_id=int(self.kwargs["pk"]))
        if sweep is None:
            raise NotFound("No such sweep.")
        return sweep

    @extend_schema(
        summary="Submit a parameter sweep",
        request=SweepSubmitSerializer,
        responses={201: SweepSerializer, 400: OpenApiResponse(description="Per-field errors.")},
    )
    def create(self, request: Request) -> Response:
        form = SweepSubmitSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        sweep = services.sweep_submit(
            user=_user(request),
            strategy=data["strategy"],
            start=data["start"],
            end=data["end"],
            grid=data["grid"],
            samples=data.get("samples"),
            rank_metric=data["rank_metric"],
            overrides=form.overrides(),
        )
        return Response(SweepSerializer(sweep).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a sweep", request=None, responses={200: SweepSerializer, 409: _conflict}
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        sweep = services.sweep_cancel(sweep=self.get_object())
        return Response(SweepSerializer(sweep).data)


class CacheStatsView(APIView):
    """Result-cache size and hit rate, and how many submits the cache answered."""

    @extend_schema(responses=OpenApiTypes.OBJECT, tags=["backtests"], summary="Cache statistics")
    def get(self, request: Request) -> Response:
        return Response({"cache": cache_stats(), "runs": selectors.run_stats()})


@extend_schema_view(
    list=extend_schema(
        summary="A strategy's recent runs",
        description="Your runs of one of your own strategies, newest first; another user's "
        "strategy is a 404.",
    )
)
@extend_schema(tags=["strategies"])
class StrategyRunViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """`strategies/<id>/runs/`: here rather than in strategies, which may not import runs."""

    queryset = BacktestRun.objects.none()  # for the schema; requests use get_queryset
    serializer_class = BacktestRunSerializer
    filter_backends: list[Any] = []
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return BacktestRun.objects.none()
        runs = selectors.strategy_runs(
            user=_user(self.request), strategy_id=int(self.kwargs["strategy_id"])
        )
        if runs is None:
            raise NotFound("No such strategy.")
        return runs
