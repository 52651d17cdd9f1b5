from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from persistence.admin import AuditedModelAdmin
from strategies.models import Strategy
from strategies.services import strategy_clean_parameters, strategy_update


class StrategyAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Strategy
        fields = (
            "owner",
            "name",
            "description",
            "kind",
            "parameters",
            "instrument",
            "timeframe",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "status",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind, parameters = cleaned.get("kind"), cleaned.get("parameters")
        if kind and isinstance(parameters, dict):
            try:
                cleaned["parameters"] = strategy_clean_parameters(kind=kind, parameters=parameters)
            except ValidationError as exc:
                for key, messages in exc.message_dict.items():
                    name = key.removeprefix("parameters.")
                    for message in messages:
                        self.add_error("parameters", f"{name}: {message}")
        return cleaned


@admin.register(Strategy)
class StrategyAdmin(AuditedModelAdmin):
    form = StrategyAdminForm
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

    def save_model(self, request: HttpRequest, obj: Strategy, form: Any, change: bool) -> None:
        # Through the service, so the admin obeys the same rules as the API.
        strategy_update(strategy=obj, parameters=obj.parameters)
