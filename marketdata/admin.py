"""Admin pages for instruments (audited), candles (a read-mostly, very long table) and the
jobs of candle uploads (read-only: the API and its task write them)."""

from __future__ import annotations

from django.contrib import admin

from marketdata.models import Candle, CandleUpload, Instrument
from persistence.admin import AuditedModelAdmin, ReadOnlyModelAdmin


@admin.register(Instrument)
class InstrumentAdmin(AuditedModelAdmin):
    list_display = (
        "symbol",
        "base",
        "quote",
        "asset_class",
        "price_tick",
        "quantity_step",
        "is_active",
    )
    list_filter = ("is_active", "quote")
    search_fields = ("symbol", "base", "quote")


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("instrument", "timeframe", "ts", "open", "high", "low", "close", "volume")
    list_filter = ("timeframe", "instrument__symbol")
    search_fields = ("instrument__symbol",)
    date_hierarchy = "ts"
    list_select_related = ("instrument",)
    # Counting millions of bars on every list page is the slow part; skip it.
    show_full_result_count = False


@admin.register(CandleUpload)
class CandleUploadAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "symbol", "timeframe", "file_name", "status", "rows_written", "owner")
    list_filter = ("status", "timeframe")
    search_fields = ("symbol", "file_name")
    list_select_related = ("owner",)
