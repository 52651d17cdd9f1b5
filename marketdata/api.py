"""REST API for market data: instruments, candle pages and downloads, and staff uploads of
candle files (small ones imported in the request, large ones by a Celery job).

Thin views over marketdata.services and selectors. Symbols are matched upper-case, as they
are stored. Candle ranges are half-open like every range of the engine: `start` inclusive,
`end` exclusive, both optional.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast

import pandas as pd
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from marketdata import selectors, services
from marketdata.filters import InstrumentFilter
from marketdata.models import AssetClass, Candle, CandleUpload, Instrument
from marketdata.timeframes import CALENDARS, TIMEFRAME_SECONDS
from persistence.downloads import PARQUET_MIME, CsvRenderer, ParquetRenderer

ID_PATTERN = r"[0-9]{1,18}"
# Multipart framing and the form fields around the file; a body larger than the file limit
# plus this is refused from its Content-Length, before any of it is read.
MULTIPART_SLACK_BYTES = 64 * 1024
# Rows per piece of a streamed CSV download.
CSV_CHUNK_ROWS = 50_000


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _too_large(size: int | None = None) -> UploadTooLarge:
    limit = settings.CANDLE_UPLOAD_MAX_BYTES
    told = f"The upload is {size:,} bytes; " if size is not None else "The upload is too large; "
    return UploadTooLarge(f"{told}candle files are limited to {limit:,} bytes.")


# --- Serializers ----------------------------------------------------------------------


class InstrumentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    calendar = serializers.ChoiceField(
        choices=list(CALENDARS),
        read_only=True,
        help_text="From asset_class: results annualise over 365 days (24/7) or 252 sessions.",
    )

    class Meta:
        model = Instrument
        fields = [
            "id",
            "symbol",
            "base",
            "quote",
            "asset_class",
            "calendar",
            "price_tick",
            "quantity_step",
            "min_notional",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class InstrumentCreateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(max_length=40, help_text="Stored upper-case.")
    base = serializers.CharField(max_length=20)
    quote = serializers.CharField(max_length=20)
    price_tick = serializers.DecimalField(max_digits=38, decimal_places=18)
    quantity_step = serializers.DecimalField(max_digits=38, decimal_places=18)
    min_notional = serializers.DecimalField(
        max_digits=38, decimal_places=18, default=Decimal(0), help_text="0 for none."
    )
    asset_class = serializers.ChoiceField(
        choices=AssetClass.choices,
        default=AssetClass.CRYPTO,
        help_text="Crypto annualises on 365 days; the others on exchange trading days.",
    )
    is_active = serializers.BooleanField(default=True)


class CandleQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(max_length=40)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS))
    start = serializers.DateTimeField(required=False, help_text="Inclusive, UTC.")
    end = serializers.DateTimeField(required=False, help_text="Exclusive, UTC.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instrument = selectors.instrument_by_symbol(symbol=attrs["symbol"])
        if instrument is None:
            raise ValidationError({"symbol": [f"No instrument {attrs['symbol'].upper()}."]})
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise ValidationError({"end": ["Must be after start."]})
        attrs["instrument"] = instrument
        return attrs


def _candle_query(request: Request) -> dict[str, Any]:
    form = CandleQuerySerializer(data=request.query_params)
    form.is_valid(raise_exception=True)
    return dict(form.validated_data)


class CandleSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Candle
        fields = ["ts", "open", "high", "low", "close", "volume"]
        read_only_fields = fields


class CandleUploadFormSerializer(serializers.Serializer):  # type: ignore[type-arg]
    file = serializers.FileField(help_text="CSV or parquet: ts, open, high, low, close, volume.")
    symbol = serializers.CharField(max_length=40, help_text="Created when new; upper-cased.")
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAME_SECONDS))

    def validate_file(self, file: Any) -> Any:
        name = str(getattr(file, "name", ""))
        if not name.lower().endswith(services.CANDLE_FILE_SUFFIXES):
            raise ValidationError(f"{name}: unsupported file type; use .csv or .parquet.")
        if file.size > settings.CANDLE_UPLOAD_MAX_BYTES:
            raise _too_large(file.size)
        return file


class CandleImportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    symbol = serializers.CharField()
    timeframe = serializers.CharField()
    rows_written = serializers.IntegerField()
    first_ts = serializers.DateTimeField(allow_null=True)
    last_ts = serializers.DateTimeField(allow_null=True)


class CandleUploadSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    progress = serializers.SerializerMethodField(help_text="Percent, 0 to 100.")
    rows_done = serializers.SerializerMethodField(
        help_text="Bars processed so far (written for good only once the job succeeds)."
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = CandleUpload
        fields = [
            "id",
            "symbol",
            "timeframe",
            "file_name",
            "size_bytes",
            "status",
            "progress",
            "rows_done",
            "rows_written",
            "first_ts",
            "last_ts",
            "errors",
            "url",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_progress(self, upload: CandleUpload) -> float:
        return float(selectors.candle_upload_live(upload)["progress"])

    @extend_schema_field(OpenApiTypes.INT)
    def get_rows_done(self, upload: CandleUpload) -> int:
        return int(selectors.candle_upload_live(upload)["rows_done"])

    def get_url(self, upload: CandleUpload) -> str:
        return f"/api/v1/candles/uploads/{upload.pk}/"


# --- Views ----------------------------------------------------------------------------


class _StaffWrites(BasePermission):
    """Anyone signed in reads; only staff write."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or bool(request.user.is_staff)


@extend_schema_view(
    list=extend_schema(
        summary="List instruments",
        description="Every instrument, by symbol; filter by `symbol`, `quote`, `is_active`.",
    ),
    retrieve=extend_schema(summary="One instrument, by symbol (any case)"),
)
@extend_schema(tags=["marketdata"])
class InstrumentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    """Instruments, addressed by symbol (`/api/v1/instruments/BTCUSDT/`): symbols are what
    every other endpoint and file names, and they are unique."""

    queryset = Instrument.objects.none()  # for the schema; requests use get_queryset
    serializer_class = InstrumentSerializer
    permission_classes = [_StaffWrites]
    filterset_class = InstrumentFilter
    filter_backends = [DjangoFilterBackend]
    ordering = ["symbol"]
    lookup_field = "symbol"
    lookup_value_regex = r"[A-Za-z0-9._\-]{1,40}"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Instrument.objects.none()
        return selectors.instrument_list()

    def get_object(self) -> Instrument:
        instrument = selectors.instrument_by_symbol(symbol=self.kwargs["symbol"])
        if instrument is None:
            raise NotFound("No such instrument.")
        return instrument

    @extend_schema(
        summary="Create an instrument (staff)",
        request=InstrumentCreateSerializer,
        responses={
            201: InstrumentSerializer,
            400: OpenApiResponse(description="Per-field errors; a taken symbol names `symbol`."),
        },
    )
    def create(self, request: Request) -> Response:
        form = InstrumentCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        instrument = services.instrument_create(**form.validated_data)
        return Response(InstrumentSerializer(instrument).data, status=status.HTTP_201_CREATED)


_CANDLE_QUERY = [
    OpenApiParameter("symbol", str, required=True, description="Unknown symbols are a 400."),
    OpenApiParameter("timeframe", str, required=True, enum=list(TIMEFRAME_SECONDS)),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Inclusive, UTC."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Exclusive, UTC."),
]


class CandleListView(GenericAPIView):  # type: ignore[type-arg]
    """One series' bars, oldest first, as cursor pages; values are numbers, `ts` the bar's
    open time in UTC. A missing `symbol` or `timeframe`, or an unknown symbol, is a 400
    naming it."""

    serializer_class = CandleSerializer
    filter_backends: list[Any] = []
    ordering = ["ts"]

    @extend_schema(summary="Candles of one series", tags=["marketdata"], parameters=_CANDLE_QUERY)
    def get(self, request: Request) -> Response:
        query = _candle_query(request)
        bars = selectors.candle_list(
            instrument_id=query["instrument"].pk,
            timeframe=query["timeframe"],
            start=query.get("start"),
            end=query.get("end"),
        )
        page = self.paginate_queryset(bars)
        return self.get_paginated_response(CandleSerializer(page, many=True).data)


def _csv_pieces(frame: pd.DataFrame) -> Iterator[bytes]:
    yield b"ts,open,high,low,close,volume\n"
    for start in range(0, len(frame), CSV_CHUNK_ROWS):
        piece = frame.iloc[start : start + CSV_CHUNK_ROWS]
        yield piece.to_csv(header=False, date_format="%Y-%m-%dT%H:%M:%SZ").encode()


class CandleDownloadView(APIView):
    renderer_classes = [CsvRenderer, ParquetRenderer, JSONRenderer]

    @extend_schema(
        summary="Download a range of candles",
        description="The whole range as one file: CSV (streamed; the columns `import_candles` "
        "and the upload read) or parquet (the same columns, `ts` a UTC timestamp); either "
        "can be uploaded again as it is. At most "
        "CANDLE_DOWNLOAD_MAX_BARS bars (2,000,000 by default); a larger range is a 400 "
        "naming `end`.",
        tags=["marketdata"],
        parameters=[
            *_CANDLE_QUERY,
            OpenApiParameter("format", str, enum=["csv", "parquet"], default="csv"),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, PARQUET_MIME): OpenApiTypes.BINARY,
        },
    )
    def get(self, request: Request) -> Any:
        query = _candle_query(request)
        instrument = query["instrument"]
        series = {
            "instrument_id": instrument.pk,
            "timeframe": query["timeframe"],
            "start": query.get("start"),
            "end": query.get("end"),
        }
        cap = settings.CANDLE_DOWNLOAD_MAX_BARS
        if selectors.candle_list(**series)[: cap + 1].count() > cap:
            raise ValidationError(
                {"end": [f"The range holds more than {cap:,} bars; download it in parts."]}
            )
        frame = selectors.candle_frame(**series)
        name = f"{instrument.symbol}-{query['timeframe']}"
        if request.query_params.get("format", "csv") == "parquet":
            response: HttpResponse | StreamingHttpResponse = HttpResponse(
                frame.reset_index().to_parquet(index=False), content_type=PARQUET_MIME
            )
            name += ".parquet"
        else:
            response = StreamingHttpResponse(_csv_pieces(frame), content_type="text/csv")
            name += ".csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class CandleUploadView(APIView):
    permission_classes = [IsAuthenticated, IsAdminUser]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="Upload a candle file (staff)",
        description="Validated exactly as `import_candles` validates: a bad file writes "
        "nothing (not even a new instrument) and is a 400 naming each bad row under `file`. "
        "Files up to CANDLE_UPLOAD_ASYNC_BYTES are imported at once (201); larger ones are "
        "stored and imported by a background job (202; follow `url`). Files over "
        "CANDLE_UPLOAD_MAX_BYTES are a 413.",
        tags=["marketdata"],
        request={"multipart/form-data": CandleUploadFormSerializer},
        responses={
            201: CandleImportSerializer,
            202: CandleUploadSerializer,
            413: OpenApiResponse(
                response=inline_serializer("UploadTooLarge", {"detail": serializers.CharField()}),
                description="The file is larger than CANDLE_UPLOAD_MAX_BYTES.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        # Checked before the body is read: a huge upload is refused without being stored.
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > settings.CANDLE_UPLOAD_MAX_BYTES + MULTIPART_SLACK_BYTES:
            raise _too_large(declared)
        form = CandleUploadFormSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = data["file"]
        try:
            if upload.size > settings.CANDLE_UPLOAD_ASYNC_BYTES:
                job = services.candle_upload_submit(
                    user=cast(User, request.user),
                    file_name=upload.name,
                    content=upload.read(),
                    symbol=data["symbol"],
                    timeframe=data["timeframe"],
                )
                body = CandleUploadSerializer(job).data
                return Response(
                    body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]}
                )
            imported = services.candles_import_upload(
                file_name=upload.name,
                chunks=upload.chunks(),
                symbol=data["symbol"],
                timeframe=data["timeframe"],
            )
        except services.CandleValidationError as exc:
            raise ValidationError({"file": services.reported_errors(exc.errors)}) from exc
        result = imported.result
        return Response(
            CandleImportSerializer(
                {
                    "symbol": imported.instrument.symbol,
                    "timeframe": data["timeframe"],
                    "rows_written": result.rows,
                    "first_ts": None
                    if result.first_ts is None
                    else result.first_ts.to_pydatetime(),
                    "last_ts": None if result.last_ts is None else result.last_ts.to_pydatetime(),
                }
            ).data,
            status=status.HTTP_201_CREATED,
        )


class CandleUploadDetailView(APIView):
    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(
        summary="A background candle upload (staff)",
        description="`status` queued, running, succeeded or failed; `progress` in percent; "
        "`rows_written` and the range once it succeeded, or `errors` naming the bad rows.",
        tags=["marketdata"],
        responses=CandleUploadSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        upload = selectors.candle_upload_get(upload_id=pk)
        if upload is None:
            raise NotFound("No such upload.")
        return Response(CandleUploadSerializer(upload).data)
