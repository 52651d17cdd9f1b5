from __future__ import annotations

from typing import Any

from django.contrib import admin

from backtests.models import BacktestRun, BacktestTrade, Sweep
from config.admin import AuditedModelAdmin


class BacktestTradeInline(admin.TabularInline):  # type: ignore[type-arg]
    model = BacktestTrade
    extra = 0
    can_delete = False
    max_num = 0
    fields = (
        "direction",
        "entry_time",
        "entry_price",
        "exit_time",
        "exit_price",
        "quantity",
        "pnl",
        "pnl_pct",
        "fees",
        "exit_reason",
        "is_open",
    )
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(BacktestRun)
class BacktestRunAdmin(AuditedModelAdmin):
    list_display = (
        "id",
        "owner",
        "strategy",
        "kind",
        "instrument",
        "timeframe",
        "status",
        "progress",
        "cache_hit",
        "return_pct",
        "sharpe",
        "created_at",
    )
    list_filter = ("status", "kind", "cache_hit", "instrument__symbol", "strategy", "created_at")
    search_fields = ("params_hash", "owner__username", "strategy__name", "kind")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "strategy", "instrument")
    readonly_fields = (
        "params_hash",
        "status",
        "progress",
        "bars_done",
        "bars_total",
        "cache_hit",
        "metrics",
        "error",
        "celery_task_id",
        "created_at",
        "started_at",
        "finished_at",
    )
    inlines = [BacktestTradeInline]

    @admin.display(description="Return %")
    def return_pct(self, obj: BacktestRun) -> Any:
        return obj.metrics.get("return_pct")

    @admin.display(description="Sharpe")
    def sharpe(self, obj: BacktestRun) -> Any:
        return obj.metrics.get("sharpe")


@admin.register(BacktestTrade)
class BacktestTradeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("run", "direction", "entry_time", "exit_time", "pnl", "pnl_pct", "exit_reason")
    list_filter = ("direction", "exit_reason", "is_open", "run__instrument__symbol", "entry_time")
    search_fields = ("run__id",)
    date_hierarchy = "entry_time"
    list_select_related = ("run",)


@admin.register(Sweep)
class SweepAdmin(AuditedModelAdmin):
    list_display = (
        "id",
        "owner",
        "strategy",
        "kind",
        "instrument",
        "status",
        "progress",
        "combinations_done",
        "combinations_total",
        "rank_metric",
        "best_value",
        "created_at",
    )
    list_filter = ("status", "kind", "instrument__symbol", "strategy", "created_at")
    search_fields = ("owner__username", "strategy__name", "kind")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "strategy", "instrument")
    readonly_fields = (
        "status",
        "progress",
        "combinations_total",
        "combinations_done",
        "combinations_cached",
        "results",
        "best_parameters",
        "best_value",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
