from __future__ import annotations

from decimal import Decimal

from django.contrib import admin

from config.admin import AuditedModelAdmin
from trading.models import Candle, Fill, Instrument, Order, Position, Trade


@admin.register(Instrument)
class InstrumentAdmin(AuditedModelAdmin):
    list_display = ("symbol", "base", "quote", "price_tick", "quantity_step", "is_active")
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


@admin.register(Order)
class OrderAdmin(AuditedModelAdmin):
    list_display = (
        "client_order_id",
        "owner",
        "instrument",
        "side",
        "order_type",
        "quantity",
        "filled_quantity",
        "remaining",
        "avg_fill_price",
        "status",
        "source",
        "created_at",
    )
    list_filter = (
        "status",
        "side",
        "order_type",
        "source",
        "instrument__symbol",
        "strategy",
        "created_at",
    )
    search_fields = ("client_order_id", "owner__username", "instrument__symbol")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "instrument", "strategy")
    readonly_fields = ("filled_quantity", "avg_fill_price", "remaining", "created_at", "updated_at")

    @admin.display(description="Remaining")
    def remaining(self, obj: Order) -> Decimal:
        return obj.remaining_quantity


@admin.register(Fill)
class FillAdmin(AuditedModelAdmin):
    list_display = (
        "venue_trade_id",
        "order",
        "owner",
        "quantity",
        "price",
        "fee",
        "notional",
        "ts",
    )
    list_filter = ("order__side", "order__instrument__symbol", "order__strategy", "ts")
    search_fields = ("venue_trade_id", "order__client_order_id", "owner__username")
    date_hierarchy = "ts"
    list_select_related = ("order", "order__instrument", "owner")
    readonly_fields = ("notional", "created_at")

    @admin.display(description="Notional")
    def notional(self, obj: Fill) -> Decimal:
        return obj.quantity * obj.price


@admin.register(Position)
class PositionAdmin(AuditedModelAdmin):
    list_display = (
        "instrument",
        "owner",
        "strategy",
        "quantity",
        "avg_entry_price",
        "realized_pnl",
        "fees_paid",
        "net_pnl",
        "status",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status", "instrument__symbol", "strategy", "opened_at")
    search_fields = ("instrument__symbol", "owner__username", "strategy__name")
    date_hierarchy = "opened_at"
    list_select_related = ("owner", "instrument", "strategy")
    readonly_fields = ("net_pnl", "updated_at")

    @admin.display(description="Net PnL")
    def net_pnl(self, obj: Position) -> Decimal:
        return obj.realized_pnl - obj.fees_paid


@admin.register(Trade)
class TradeAdmin(AuditedModelAdmin):
    list_display = (
        "instrument",
        "owner",
        "strategy",
        "direction",
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
        "status",
    )
    list_filter = (
        "status",
        "direction",
        "exit_reason",
        "instrument__symbol",
        "strategy",
        "entry_time",
    )
    search_fields = ("instrument__symbol", "owner__username", "strategy__name")
    date_hierarchy = "entry_time"
    list_select_related = ("owner", "instrument", "strategy")
    readonly_fields = ("net_pnl", "created_at", "updated_at")

    @admin.display(description="Net PnL")
    def net_pnl(self, obj: Trade) -> Decimal:
        return obj.pnl - obj.fees
