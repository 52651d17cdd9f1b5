"""Back-office pages for runs and sweeps: start, re-run and cancel through the services,
with the metrics table, an equity/drawdown chart and live progress on a run's page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from backtests import selectors, services
from backtests.charts import equity_chart_svg
from backtests.models import FINISHED_STATUSES, BacktestRun, BacktestTrade, RunStatus, Sweep
from persistence.admin import AuditedModelAdmin, error_text, field_error_text
from strategies.admin import StrategyAdmin
from strategies.models import Strategy


class StartBacktestForm(forms.Form):
    strategy = forms.ModelChoiceField(queryset=Strategy.objects.select_related("instrument"))
    start = forms.DateTimeField(help_text="UTC, inclusive")
    end = forms.DateTimeField(help_text="UTC, exclusive")
    use_cache = forms.BooleanField(required=False, initial=True)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("start") and cleaned.get("end") and cleaned["end"] <= cleaned["start"]:
            self.add_error("end", "Must be after start.")
        return cleaned


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


def _two_places(metric: Any) -> str | None:
    """A float metric as a short column value; None (not computed yet) shows as empty."""
    if isinstance(metric, int | float) and not isinstance(metric, bool):
        return f"{metric:,.2f}"
    return None if metric is None else str(metric)


class ResultAdminMixin:
    """Runs and sweeps are results: every field is read-only, so a run always means what it
    computed. Staff act on them through the re-run and cancel actions instead."""

    model: Any

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]


@admin.register(BacktestRun)
class BacktestRunAdmin(ResultAdminMixin, AuditedModelAdmin):
    # Few, short columns so status, return and Sharpe fit on a laptop screen; kind, owner
    # and cache hits are filters, and the run's page has the rest.
    list_display = (
        "id",
        "strategy",
        "instrument",
        "timeframe",
        "status",
        "return_pct",
        "sharpe",
        "created_at",
    )
    list_filter = ("status", "kind", "cache_hit", "instrument__symbol", "strategy", "created_at")
    search_fields = ("params_hash", "owner__username", "strategy__name", "kind")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "strategy", "instrument")
    change_form_template = "admin/backtests/backtestrun/change_form.html"
    actions = ["rerun_runs", "cancel_runs"]
    readonly_fields = (
        "params_hash",
        "shared_from",
        "attempts",
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
    # A cache hit owns no trades: its page lists the computing run's, up to this many.
    SHARED_TRADES_SHOWN = 500

    @admin.display(description="Return %")
    def return_pct(self, obj: BacktestRun) -> str | None:
        return _two_places(obj.metrics.get("return_pct"))

    @admin.display(description="Sharpe")
    def sharpe(self, obj: BacktestRun) -> str | None:
        return _two_places(obj.metrics.get("sharpe"))

    def get_inlines(self, request: HttpRequest, obj: BacktestRun | None) -> list[Any]:
        # The inline follows the run's own foreign key, which a cache hit's trades do not
        # point at; the change form lists the shared trades instead.
        if obj is not None and obj.cache_hit and obj.shared_from_id:
            return []
        return list(super().get_inlines(request, obj))

    def get_urls(self) -> list[Any]:
        start = path("start/", self.admin_site.admin_view(self.start_view), name="backtests_start")
        return [start, *super().get_urls()]

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A run is only ever created by backtest_submit, so "Add" is the start form.
        return redirect("admin:backtests_start")

    def start_view(self, request: HttpRequest) -> HttpResponse:
        """Start a backtest of a strategy (preselected with ?strategy=<id>)."""
        # admin_view() only checks that the user is staff; starting a run is adding one.
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial: dict[str, Any] = {"end": timezone.now(), "start": timezone.now() - timedelta(30)}
        if request.GET.get("strategy"):
            initial["strategy"] = request.GET["strategy"]
        form = StartBacktestForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                run = services.backtest_submit(
                    user=request.user,  # type: ignore[arg-type]
                    strategy=data["strategy"],
                    start=data["start"],
                    end=data["end"],
                    use_cache=data["use_cache"],
                )
            except services.BacktestInputError as exc:
                for field, problems in exc.errors.items():
                    target = field if field in form.fields else None
                    if target is None:
                        form.add_error(None, field_error_text(field, problems))
                    else:
                        form.add_error(target, field_error_text("", problems))
            else:
                note = " (answered from the cache)" if run.cache_hit else ""
                messages.success(request, f"Started backtest #{run.pk}{note}.")
                return redirect("admin:backtests_backtestrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Start a backtest",
            "form": form,
        }
        return TemplateResponse(request, "admin/backtests/backtestrun/start.html", context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        extra: dict[str, Any] = dict(extra_context or {})
        if run is not None:
            extra["run_metrics"] = list(run.metrics.items())
            extra["run_finished"] = run.status in FINISHED_STATUSES
            if run.status == RunStatus.SUCCEEDED:
                extra["equity_chart"] = equity_chart_svg(selectors.equity_frame(run))
            extra["export_url"] = f"/api/v1/backtests/{run.pk}/export/?format=xlsx"
            extra["ws_path"] = f"/ws/backtests/{run.pk}/"
            if run.cache_hit and run.shared_from_id:
                trades = selectors.backtest_trades(run=run)
                extra["shared_trades"] = list(trades[: self.SHARED_TRADES_SHOWN])
                extra["shared_trades_total"] = trades.count()
                extra["shared_from_url"] = reverse(
                    "admin:backtests_backtestrun_change", args=[run.shared_from_id]
                )
        return super().change_view(request, object_id, form_url, extra)

    # Each action names the permission it needs: the admin neither offers nor runs it for
    # staff without that permission (a view-only user could otherwise start or cancel runs).
    @admin.action(description="Re-run the selected backtests (recompute)", permissions=["add"])
    def rerun_runs(self, request: HttpRequest, queryset: QuerySet[BacktestRun]) -> None:
        started = []
        for run in queryset.select_related("strategy", "instrument"):
            try:
                started.append(services.backtest_rerun(user=request.user, run=run).pk)  # type: ignore[arg-type]
            except (services.BacktestConflict, services.BacktestInputError) as exc:
                messages.error(request, f"#{run.pk}: {error_text(exc)}")
        if started:
            messages.success(request, f"Started {len(started)} run(s): {started}")

    @admin.action(description="Cancel the selected backtests", permissions=["change"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[BacktestRun]) -> None:
        cancelled = 0
        for run in queryset:
            try:
                services.backtest_cancel(run=run)
                cancelled += 1
            except services.BacktestConflict as exc:
                messages.warning(request, error_text(exc))
        messages.success(request, f"Cancelled {cancelled} run(s).")


@admin.register(BacktestTrade)
class BacktestTradeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("run", "direction", "entry_time", "exit_time", "pnl", "pnl_pct", "exit_reason")
    list_filter = ("direction", "exit_reason", "is_open", "run__instrument__symbol", "entry_time")
    search_fields = ("run__id",)
    date_hierarchy = "entry_time"
    list_select_related = ("run",)


@admin.register(Sweep)
class SweepAdmin(ResultAdminMixin, AuditedModelAdmin):
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


@admin.action(description="Start a backtest of this strategy", permissions=["start_backtest"])
def start_backtest(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Strategy]
) -> HttpResponseRedirect:
    strategy = queryset.first()
    url = reverse("admin:backtests_start")
    return HttpResponseRedirect(f"{url}?strategy={strategy.pk}" if strategy else url)


class StrategyWithBacktestsAdmin(StrategyAdmin):
    """The strategy list is where staff look for "start a backtest"; strategies/ sits below
    this app and cannot know about runs, so this app re-registers its admin with the action."""

    actions = [*StrategyAdmin.actions, start_backtest]  # type: ignore[misc]  # a class attribute

    def has_start_backtest_permission(self, request: HttpRequest) -> bool:
        # The action leads to the start form, which asks for the permission to add a run.
        return request.user.has_perm("backtests.add_backtestrun")


admin.site.unregister(Strategy)  # registered by strategies.admin, imported above
admin.site.register(Strategy, StrategyWithBacktestsAdmin)
