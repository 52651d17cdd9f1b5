"""Strategies in the admin: parameters are edited as typed fields generated from the kind's spec."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from persistence.admin import AuditedModelAdmin
from strategies.forms import PARAM_PREFIX, StrategyAdminForm, known_kind, param_field_names
from strategies.models import Strategy
from strategies.services import strategy_update


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

    class Media:
        # Reloads the page with ?kind= when the kind changes, so its parameter fields show.
        js = ("lab/strategy_form.js",)

    def _kind_for(self, request: HttpRequest, obj: Strategy | None) -> str | None:
        for candidate in (request.POST.get("kind"), request.GET.get("kind")):
            kind = known_kind(candidate)
            if kind is not None:
                return kind
        return obj.kind if obj is not None else None

    def get_fieldsets(self, request: HttpRequest, obj: Strategy | None = None) -> Any:
        kind = self._kind_for(request, obj)
        parameters = param_field_names(kind)
        return [
            (
                None,
                {
                    "fields": [
                        "owner",
                        "name",
                        "description",
                        "kind",
                        "instrument",
                        "timeframe",
                        "status",
                    ]
                },
            ),
            (
                "Parameters",
                {
                    "fields": [*parameters, "parameters_for"],
                    "description": "" if parameters else "This kind has no parameters.",
                },
            ),
            ("Costs", {"fields": ["initial_capital", "fee_rate", "slippage_bps"]}),
            ("Dates", {"fields": ["created_at", "updated_at"]}),
        ]

    def get_form(
        self, request: HttpRequest, obj: Strategy | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # The parameter fields are built per kind by the form itself, not by the model.
        if "fields" in kwargs and kwargs["fields"] is not None:
            kwargs["fields"] = [
                name
                for name in kwargs["fields"]
                if not name.startswith(PARAM_PREFIX) and name != "parameters_for"
            ]
        form_class = super().get_form(request, obj, change, **kwargs)
        kind = self._kind_for(request, obj)

        class KindForm(form_class):  # type: ignore[misc, valid-type]
            # The change page of an existing strategy follows ?kind= as the add page does.
            def __init__(self, *args: Any, **form_kwargs: Any) -> None:
                if kind is not None:
                    form_kwargs["initial"] = {**(form_kwargs.get("initial") or {}), "kind": kind}
                super().__init__(*args, **form_kwargs)

        return KindForm

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("owner", str(request.user.pk))
        return initial

    def save_model(self, request: HttpRequest, obj: Strategy, form: Any, change: bool) -> None:
        # Through the service, so the admin obeys the same rules as the API.
        strategy_update(strategy=obj, parameters=form.cleaned_data.get("parameters", {}))
