"""Back-office pages for instruments, candles and the ledger; ledger edits go through services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from persistence.admin import (
    AuditedModelAdmin,
    InternalReadOnlyAdmin,
    amount_column,
    amount_text,
    error_text,
)
from trading import services
from trading.models import (
    Fill,
    Order,
    Position,
    PositionHead,
    Trade,
    TradeRollup,
    TradeStreakRollup,
)


class LedgerAdminMixin:
    """Ledger rows change only through the services, so every correction leaves an event
    in the log and an auditlog entry; nothing is ever deleted."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return super().get_readonly_fields(request, obj)  # type: ignore[misc]
        names = [f.name for f in obj._meta.fields]
        computed = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return [*names, *[c for c in computed if c not in names]]


def _actor(request: HttpRequest) -> User:
    return cast(User, request.user)


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, exc: Exception) -> None:  # type: ignore[type-arg]
    modeladmin.message_user(request, error_text(exc), level=messages.ERROR)


class OrderAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Order
        fields = [
            "owner",
            "strategy",
            "instrument",
            "side",
            "order_type",
            "quantity",
            "limit_price",
            "stop_price",
            "time_in_force",
            "client_order_id",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                services.order_validate(**data)
            except ValidationError as exc:
                raise forms.ValidationError(exc.message_dict) from exc
        return data


@admin.register(Order)
class OrderAdmin(LedgerAdminMixin, AuditedModelAdmin):
    # Few, short columns so status fits on a laptop screen; type and source are filters.
    list_display = (
        "client_order_id",
        "owner",
        "instrument",
        "side",
        amount_column("quantity", "Quantity"),
        amount_column("filled_quantity", "Filled"),
        amount_column("avg_fill_price", "Avg price"),
        "status",
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
    readonly_fields = (
        "filled_quantity",
        "filled_notional",
        "avg_fill_price",
        "remaining",
        "created_at",
        "updated_at",
    )

    actions = ["cancel_orders", "reject_orders"]

    @admin.display(description="Remaining")
    def remaining(self, obj: Order) -> Decimal:
        return obj.remaining_quantity

    def get_form(  # type: ignore[override]
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = OrderAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return OrderAddForm.Meta.fields
        return super().get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Order, form: Any, change: bool) -> None:
        if change:
            return  # every field is read-only once the order exists
        data = dict(form.cleaned_data)
        result = services.order_submit(
            **data,
            source=Order.Source.MANUAL,
            actor=_actor(request),
        )
        obj.__dict__.update(result.order.__dict__)

    # An order's fields are read-only once it exists, so "change" is the permission to act on
    # it: the admin neither offers nor runs these actions for view-only staff.
    @admin.action(
        description="Cancel the selected orders (through the ledger)", permissions=["change"]
    )
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        done = 0
        for order in queryset:
            try:
                services.order_cancel(order=order, actor=_actor(request), reason="staff")
                done += 1
            except services.LedgerConflict as exc:
                _report(self, request, exc)
        self.message_user(request, f"{done} order(s) cancelled.")

    @admin.action(
        description="Mark the selected orders rejected by the venue", permissions=["change"]
    )
    def reject_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        done = 0
        for order in queryset:
            try:
                services.order_reject(order=order, actor=_actor(request), reason="staff")
                done += 1
            except services.LedgerConflict as exc:
                _report(self, request, exc)
        self.message_user(request, f"{done} order(s) rejected.")


class FillAddForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Fill
        fields = ["order", "venue_trade_id", "quantity", "price", "fee", "ts"]

    def validate_unique(self) -> None:
        pass  # the service reports a known venue trade id instead of failing

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                services.fill_validate(
                    order=data["order"],
                    quantity=data["quantity"],
                    price=data["price"],
                    ts=data["ts"],
                    fee=data["fee"],
                )
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from exc
        return data


@admin.register(Fill)
class FillAdmin(LedgerAdminMixin, AuditedModelAdmin):
    list_display = (
        "venue_trade_id",
        "order_id_text",
        "owner",
        amount_column("quantity", "Quantity"),
        amount_column("price", "Price"),
        amount_column("fee", "Fee"),
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

    @admin.display(description="Order", ordering="order__client_order_id")
    def order_id_text(self, obj: Fill) -> str:
        return obj.order.client_order_id

    def get_form(  # type: ignore[override]
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = FillAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return FillAddForm.Meta.fields
        return super().get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Fill, form: Any, change: bool) -> None:
        """A staff correction: a fill the bot never posted, recorded like any other."""
        if change:
            return
        data = dict(form.cleaned_data)
        fill, created = services.fill_record(**data, actor=_actor(request), source="admin")
        if not created:
            self.message_user(
                request, "That venue trade id was already recorded.", messages.WARNING
            )
        obj.__dict__.update(fill.__dict__)


@admin.register(Position)
class PositionAdmin(LedgerAdminMixin, AuditedModelAdmin):
    list_display = (
        "instrument",
        "owner",
        "strategy",
        amount_column("quantity", "Quantity"),
        amount_column("avg_entry_price", "Avg entry"),
        amount_column("realized_pnl", "Realized PnL"),
        "net_pnl_text",
        "status",
        "opened_at",
    )
    list_filter = ("status", "instrument__symbol", "strategy", "opened_at")
    search_fields = ("instrument__symbol", "owner__username", "strategy__name")
    date_hierarchy = "opened_at"
    list_select_related = ("owner", "instrument", "strategy")
    readonly_fields = ("net_pnl", "updated_at")

    actions = ["rebuild_from_ledger"]

    @admin.display(description="Net PnL")
    def net_pnl(self, obj: Position) -> Decimal:
        return obj.realized_pnl - obj.fees_paid

    @admin.display(description="Net PnL")
    def net_pnl_text(self, obj: Position) -> str | None:
        return amount_text(self.net_pnl(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # positions are what fills make them

    @admin.action(description="Rebuild from the event log (repair drift)", permissions=["change"])
    def rebuild_from_ledger(self, request: HttpRequest, queryset: QuerySet[Position]) -> None:
        repaired = 0
        for position in queryset.select_related("instrument"):
            stream = services.position_stream(
                owner_id=position.owner_id,
                strategy_id=position.strategy_id,
                symbol=position.instrument.symbol,
            )
            _, drift = services.position_rebuild(stream=stream, apply=True)
            repaired += drift is not None
        self.message_user(request, f"{repaired} position(s) differed and were repaired.")


@admin.register(Trade)
class TradeAdmin(LedgerAdminMixin, AuditedModelAdmin):
    # Few, short columns so PnL and status fit on a laptop screen; the rest is on the page.
    list_display = (
        "instrument",
        "owner",
        "direction",
        amount_column("quantity", "Quantity"),
        amount_column("entry_price", "Entry"),
        amount_column("exit_price", "Exit"),
        "net_pnl_text",
        amount_column("pnl_pct", "PnL %"),
        "status",
        "exit_time",
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

    @admin.display(description="Net PnL")
    def net_pnl_text(self, obj: Trade) -> str | None:
        return amount_text(self.net_pnl(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # trades are what fills make them


class RollupAdmin(InternalReadOnlyAdmin):
    """Rollups are derived from the trades (rebuild with `rebuild_trade_rollups`): view only."""

    date_hierarchy = "day"


@admin.register(TradeRollup)
class TradeRollupAdmin(RollupAdmin):
    list_display = (
        "day",
        "owner",
        "strategy",
        "instrument",
        "trades",
        "wins",
        "losses",
        amount_column("net_pnl", "Net PnL"),
    )
    list_filter = ("instrument__symbol",)
    list_select_related = ("owner", "strategy", "instrument")


@admin.register(TradeStreakRollup)
class TradeStreakRollupAdmin(RollupAdmin):
    list_display = ("day", "owner", "trades", "max_win_run", "max_loss_run")
    list_select_related = ("owner",)


@admin.register(PositionHead)
class PositionHeadAdmin(InternalReadOnlyAdmin):
    """Read-only: heads are written with the events; `rebuild_positions --apply` repairs them."""

    list_display = ("stream", "version", "updated_at")
    search_fields = ("stream",)
    date_hierarchy = "updated_at"
