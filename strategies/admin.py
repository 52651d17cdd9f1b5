from __future__ import annotations

from django.contrib import admin

from config.admin import AuditedModelAdmin
from strategies.models import Strategy


@admin.register(Strategy)
class StrategyAdmin(AuditedModelAdmin):
    list_display = (
        "name",
        "owner",
        "kind",
        "instrument",
        "timeframe",
        "status",
        "initial_capital",
        "fee_rate",
        "updated_at",
    )
    list_filter = ("status", "kind", "timeframe", "instrument__symbol", "created_at")
    search_fields = ("name", "description", "owner__username", "instrument__symbol")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "instrument")
    readonly_fields = ("created_at", "updated_at")
    autocomplete_fields = ("owner", "instrument")
