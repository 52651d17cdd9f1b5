"""Instruments and their candles (OHLCV bars).

Instrument ticks and steps are `NUMERIC` (Decimal), like the ledger that trades them; candles
are float64, like the engine. Both tables were created by the trading app and keep their names.
"""

from __future__ import annotations

from typing import TypedDict

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketdata.timeframes import CALENDAR_24_7, CALENDAR_EXCHANGE, timeframe_choices


class DecimalSpec(TypedDict):
    max_digits: int
    decimal_places: int


# Wide enough for crypto quantities (18 decimals) and equity indices alike.
QTY: DecimalSpec = {"max_digits": 38, "decimal_places": 18}
PRICE: DecimalSpec = {"max_digits": 38, "decimal_places": 18}


class AssetClass(models.TextChoices):
    """What an instrument is; it decides the calendar its results annualise on."""

    CRYPTO = "crypto", "Crypto"
    EQUITY = "equity", "Equity"
    FX = "fx", "FX"
    FUTURES = "futures", "Futures"


# Crypto trades around the clock (365-day years); the others in exchange sessions (252).
ASSET_CLASS_CALENDAR: dict[str, str] = {
    AssetClass.CRYPTO: CALENDAR_24_7,
    AssetClass.EQUITY: CALENDAR_EXCHANGE,
    AssetClass.FX: CALENDAR_EXCHANGE,
    AssetClass.FUTURES: CALENDAR_EXCHANGE,
}


class Instrument(models.Model):
    symbol = models.CharField(max_length=40, unique=True)
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=20)
    price_tick = models.DecimalField(**PRICE)
    quantity_step = models.DecimalField(**QTY)
    min_notional = models.DecimalField(
        **PRICE,
        default=0,
        help_text="Smallest order value the venue accepts, in quote currency; 0 for none.",
    )
    # Crypto by default: rows from before the field keep the 365-day year they had.
    asset_class = models.CharField(
        max_length=10,
        choices=AssetClass.choices,
        default=AssetClass.CRYPTO,
        help_text="Crypto annualises over 365 days; equity, FX and futures over 252 sessions.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Moved from the trading app; the table keeps its name and rows.
        db_table = "trading_instrument"
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_tick__gt=0),
                name="instrument_tick_positive",
                violation_error_message="Price tick must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(quantity_step__gt=0),
                name="instrument_step_positive",
                violation_error_message="Quantity step must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(min_notional__gte=0),
                name="instrument_min_notional_not_negative",
                violation_error_message="Minimum notional must be zero or more.",
            ),
            models.CheckConstraint(
                condition=Q(asset_class__in=AssetClass.values),
                name="instrument_asset_class_valid",
                violation_error_message="Asset class is not one of the allowed choices.",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def calendar(self) -> str:
        """The trading calendar results on this instrument annualise with."""
        return ASSET_CLASS_CALENDAR[self.asset_class]


class Candle(models.Model):
    """One OHLCV bar; `ts` is the bar's open time in UTC."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="candles")
    timeframe = models.CharField(max_length=8, choices=timeframe_choices)
    ts = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(default=0)

    class Meta:
        db_table = "trading_candle"
        ordering = ["instrument_id", "timeframe", "ts"]
        constraints = [
            # The unique index on (instrument, timeframe, ts) also serves range scans.
            models.UniqueConstraint(
                fields=["instrument", "timeframe", "ts"],
                name="candle_unique_bar",
                violation_error_message="A bar at this time and timeframe already exists.",
            ),
            models.CheckConstraint(
                condition=Q(high__gte=F("low")),
                name="candle_high_gte_low",
                violation_error_message="High must be greater than or equal to low.",
            ),
            models.CheckConstraint(
                condition=Q(low__gt=0) & Q(volume__gte=0),
                name="candle_positive_prices",
                violation_error_message="Low must be above zero and volume not negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"


class UploadStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class CandleUpload(models.Model):
    """A candle file uploaded through the API that was too large to import in the request.

    The file is kept as an artifact; a Celery task imports it all or nothing and records
    the outcome here: the rows written and their range, or the errors naming the bad rows.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="candle_uploads",
    )
    symbol = models.CharField(max_length=40)
    timeframe = models.CharField(max_length=8, choices=timeframe_choices)
    file_name = models.CharField(max_length=200)
    size_bytes = models.PositiveBigIntegerField(default=0)
    artifact = models.ForeignKey(
        "persistence.Artifact",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    status = models.CharField(
        max_length=10, choices=UploadStatus.choices, default=UploadStatus.QUEUED
    )
    progress = models.FloatField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    first_ts = models.DateTimeField(null=True, blank=True)
    last_ts = models.DateTimeField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"upload {self.pk} {self.symbol} {self.timeframe} ({self.status})"
