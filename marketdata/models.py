"""Instruments and their candles (OHLCV bars).

Instrument ticks and steps are `NUMERIC` (Decimal), like the ledger that trades them; candles
are float64, like the engine. Both tables were created by the trading app and keep their names.
"""

from __future__ import annotations

from typing import TypedDict

from django.db import models
from django.db.models import F, Q

from marketdata.timeframes import timeframe_choices


class DecimalSpec(TypedDict):
    max_digits: int
    decimal_places: int


# Wide enough for crypto quantities (18 decimals) and equity indices alike.
QTY: DecimalSpec = {"max_digits": 38, "decimal_places": 18}
PRICE: DecimalSpec = {"max_digits": 38, "decimal_places": 18}


class Instrument(models.Model):
    symbol = models.CharField(max_length=40, unique=True)
    base = models.CharField(max_length=20)
    quote = models.CharField(max_length=20)
    price_tick = models.DecimalField(**PRICE)
    quantity_step = models.DecimalField(**QTY)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Moved from the trading app; the table keeps its name and rows.
        db_table = "trading_instrument"
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(price_tick__gt=0), name="instrument_tick_positive"),
            models.CheckConstraint(
                condition=Q(quantity_step__gt=0), name="instrument_step_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.symbol


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
                fields=["instrument", "timeframe", "ts"], name="candle_unique_bar"
            ),
            models.CheckConstraint(condition=Q(high__gte=F("low")), name="candle_high_gte_low"),
            models.CheckConstraint(
                condition=Q(low__gt=0) & Q(volume__gte=0), name="candle_positive_prices"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"
