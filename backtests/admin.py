"""Back-office pages for runs and sweeps: start, re-run and cancel through the services,
with the metrics table, an equity/drawdown chart, a summary of the trades and live progress
on a run's page, and links to the same objects in the lab."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Model, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from backtests import selectors, services
from backtests.engine.simulate import EXIT_REASONS
from backtests.ml import DIAGNOSTICS_ARTIFACT, ML_KIND
from backtests.models import FINISHED_STATUSES, BacktestRun, BacktestTrade, RunStatus, Sweep
from backtests.presentation import METRIC_LABELS, params_text
from persistence.admin import AuditedModelAdmin, error_text, field_error_text
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load
from strategies.admin import StrategyAdmin
from strategies.library.ml.models import MODEL_LABELS
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


def _two_places(metric: Any) -> str | None:
    """A float metric as a short column value; None (not computed yet) shows as empty."""
    if isinstance(metric, int | float) and not isinstance(metric, bool):
        return f"{metric:,.2f}"
    return None if metric is None else str(metric)


def _price_text(price: float) -> str:
    """An engine price (float64) to 4 decimals, trailing zeros dropped: "91.4228", "42,000"."""
    return f"{price:,.4f}".rstrip("0").rstrip(".")


def _duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days:,} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(part for part in parts if part and part != "0 min") or "0 min"


def _metric_text(key: str, value: Any) -> str:
    """A metric as people read it: times in UTC, durations in days and hours, grouped
    integers, other floats to 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            return f"{datetime.fromisoformat(value).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        except ValueError:
            return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_s") and isinstance(value, int | float):
        return _duration_text(float(value))
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


METRICS_PER_ROW = 3


def _metric_rows(metrics: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The metrics in the order people read them (presentation.METRIC_LABELS: period,
    equity, returns, risk, trades, days), three to a table row; unknown keys come last."""
    known = [key for key in METRIC_LABELS if key in metrics]
    keys = [*known, *(key for key in metrics if key not in METRIC_LABELS)]
    cells = [(key, _metric_text(key, metrics[key])) for key in keys]
    return [cells[i : i + METRICS_PER_ROW] for i in range(0, len(cells), METRICS_PER_ROW)]


# Enough points for a chart a screen wide; the stored curve has one per bar.
EQUITY_CHART_POINTS = 1500


def _equity_chart_data(run: BacktestRun) -> dict[str, list[Any]]:
    """The run's equity and drawdown (in percent), thinned, for the page's plotly chart."""
    curve = selectors.curve_thin(selectors.equity_frame(run), max_points=EQUITY_CHART_POINTS)
    if curve.empty:
        return {"ts": [], "equity": [], "drawdown_pct": []}
    return {
        "ts": [ts.isoformat() for ts in curve.index],
        "equity": curve["equity"].round(2).tolist(),
        "drawdown_pct": (curve["drawdown"] * 100).round(3).tolist(),
    }


# The features shown in the importance table: the strongest, not all of a wide feature set.
ML_TOP_FEATURES = 10


def _ml_score(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ml_diagnostics_summary(run: BacktestRun) -> dict[str, Any] | None:
    """The run's stored walk-forward diagnostics as the page's tables, or None when none are
    stored. Read once from the artifact the run saved: the API rebuilds missing ones, which
    retrains models, and a page request must not."""
    stored = artifact_for_hash(params_hash=run.params_hash, name=DIAGNOSTICS_ARTIFACT)
    if stored is None:
        return None
    diagnostics = json.loads(artifact_load(artifact=stored))
    folds = [
        {
            "fold": fold["fold"],
            "train": f"{fold['train_start']:,}\N{EN DASH}{fold['train_end'] - 1:,}",
            "predict": f"{fold['predict_start']:,}\N{EN DASH}{fold['predict_end'] - 1:,}",
            "train_bars": fold["train_bars"],
            "test_bars": fold["test_bars"],
            **{key: _ml_score(fold[key]) for key in ("accuracy", "precision", "recall", "roc_auc")},
            "reused": fold["reused"],
        }
        for fold in diagnostics["folds"]
    ]
    model = diagnostics["importances"]
    permutation = diagnostics["permutation_importances"]
    ranked = sorted(model, key=lambda name: model[name], reverse=True)[:ML_TOP_FEATURES]
    (down_down, down_up), (up_down, up_up) = diagnostics["confusion"]
    return {
        "model": MODEL_LABELS.get(diagnostics["model"], diagnostics["model"]),
        "feature_set": diagnostics["feature_set"],
        "lookahead": diagnostics["lookahead"],
        "folds": folds,
        "confusion": [("Actually down", down_down, down_up), ("Actually up", up_down, up_up)],
        "importances": [
            (name, f"{model[name]:.4f}", f"{permutation.get(name, 0.0):.4f}") for name in ranked
        ],
        "features_total": len(model),
    }


class ResultAdminMixin:
    """Runs and sweeps are results: every field is read-only, so a run always means what it
    computed. Staff act on them through the re-run and cancel actions instead."""

    model: Any

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        names = [field.name for field in self.model._meta.fields]
        computed = getattr(self, "readonly_fields", ())  # e.g. a display method
        return [*names, *(name for name in computed if name not in names)]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if change:
            # Nothing on the page is editable: "Save" would only pretend to do something.
            context.update(
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False
            )
        return super().render_change_form(  # type: ignore[misc]
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )


class LabLinkMixin:
    """A "View in the lab" object tool on the change page (templates/admin/
    change_form_object_tools.html shows `lab_url`), so staff move between the two views of
    one object. Rendered through `render_change_form`, which leaves `change_view` free."""

    lab_url_name: str

    def lab_url(self, request: HttpRequest, obj: Any) -> str | None:
        return reverse(self.lab_url_name, args=[obj.pk])

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk is not None:
            context["lab_url"] = self.lab_url(request, obj)
        return super().render_change_form(  # type: ignore[misc]
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )


@admin.register(BacktestRun)
class BacktestRunAdmin(LabLinkMixin, ResultAdminMixin, AuditedModelAdmin):
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
    lab_url_name = "lab-run"
    # The metrics are a table of their own below (names in words) and progress has its own
    # bar: neither is repeated here as raw JSON or numbers.
    readonly_fields = ("parameters_text",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "strategy",
                    "kind",
                    "parameters_text",
                    "instrument",
                    "timeframe",
                    "start",
                    "end",
                    "owner",
                    "sweep",
                )
            },
        ),
        (
            "Costs and sizing",
            {
                "fields": (
                    "initial_capital",
                    "fee_rate",
                    "slippage_bps",
                    "size_fraction",
                    "allow_short",
                    "stop_loss_pct",
                    "take_profit_pct",
                    "execution",
                )
            },
        ),
        (
            "Execution",
            {
                "fields": (
                    "status",
                    "error",
                    "attempts",
                    "celery_task_id",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "heartbeat_at",
                )
            },
        ),
        ("Cache", {"fields": ("params_hash", "cache_hit", "shared_from")}),
    )
    # Shown elsewhere on the page (metrics, progress) or as words (parameters_text).
    NOT_IN_FIELDSETS = frozenset(
        {"id", "parameters", "metrics", "progress", "bars_done", "bars_total"}
    )
    # The first and the last few trades on the page; the rest are on the paginated list.
    TRADES_SHOWN_EACH_END = 5

    @admin.display(description="Return %")
    def return_pct(self, obj: BacktestRun) -> str | None:
        return _two_places(obj.metrics.get("return_pct"))

    @admin.display(description="Sharpe")
    def sharpe(self, obj: BacktestRun) -> str | None:
        return _two_places(obj.metrics.get("sharpe"))

    @admin.display(description="Parameters")
    def parameters_text(self, obj: BacktestRun) -> str:
        return params_text(obj.parameters)

    def get_fieldsets(self, request: HttpRequest, obj: BacktestRun | None = None) -> Any:
        # A setting added to the model later still shows, with the costs and sizing: a run's
        # page must say everything that determined its result.
        placed = {name for _, group in self.fieldsets for name in group["fields"]}
        rest = [
            field.name
            for field in self.model._meta.fields
            if field.name not in placed and field.name not in self.NOT_IN_FIELDSETS
        ]
        first, (costs, group), *others = self.fieldsets
        return [first, (costs, {**group, "fields": (*group["fields"], *rest)}), *others]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BacktestRun]:
        # The page shows each of these relations as a link: one join, not a query each.
        return (
            super()
            .get_queryset(request)
            .select_related("owner", "strategy", "instrument", "sweep", "shared_from")
        )

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
            extra["run_metrics"] = _metric_rows(run.metrics)
            extra["run_finished"] = run.status in FINISHED_STATUSES
            if run.status == RunStatus.SUCCEEDED:
                extra["equity_curve"] = _equity_chart_data(run)
                if run.kind == ML_KIND:
                    extra["ml_predictor"] = True
                    extra["ml"] = _ml_diagnostics_summary(run)
            extra["export_url"] = f"/api/v1/backtests/{run.pk}/export/?format=xlsx"
            extra["ws_path"] = f"/ws/backtests/{run.pk}/"
            extra["trades"] = self._trades_summary(request, run)
            if run.cache_hit and run.shared_from_id:
                extra["shared_from_url"] = reverse(
                    "admin:backtests_backtestrun_change", args=[run.shared_from_id]
                )
        return super().change_view(request, object_id, form_url, extra)

    def _trades_summary(self, request: HttpRequest, run: BacktestRun) -> dict[str, Any]:
        """Counts and total PnL of the run's trades (one aggregate in the database), the first
        and last few of them, and the link to all of them on the paginated trade list.

        Inlining every trade made a 6,610-trade run's page 16 MB and ten seconds of work;
        this costs the same few queries however many trades the run has.
        """
        trades = selectors.backtest_trades(run=run)  # a cache hit's are its source run's
        totals = trades.order_by().aggregate(
            count=Count("id"),
            winners=Count("id", filter=Q(pnl__gt=0)),
            losers=Count("id", filter=Q(pnl__lt=0)),
            total_pnl=Sum("pnl"),
            fees=Sum("fees"),
        )
        shown = self.TRADES_SHOWN_EACH_END
        first = list(trades[: 2 * shown])
        last: list[BacktestTrade] = []
        if totals["count"] > 2 * shown:
            first = first[:shown]
            last = list(trades.order_by("-entry_time", "-id")[:shown])[::-1]
        run_id = run.shared_from_id if run.cache_hit and run.shared_from_id else run.pk
        trade_admin = self.admin_site._registry.get(BacktestTrade)
        list_url = None
        if trade_admin is not None and trade_admin.has_view_permission(request):
            changelist = reverse("admin:backtests_backtesttrade_changelist")
            list_url = f"{changelist}?run__id__exact={run_id}"
        return {
            **totals,
            "total_pnl": _two_places(totals["total_pnl"] or 0.0),
            "fees": _two_places(totals["fees"] or 0.0),
            "first": first,
            "last": last,
            "hidden": totals["count"] - len(first) - len(last),
            "list_url": list_url,
        }

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


class IdFilter(admin.SimpleListFilter):
    """Rows whose `id_field` is the id given; anything but an id is the admin's "incorrect
    lookup" redirect, not an error. Subclasses say which choices to offer."""

    id_field: str
    what: str

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"Not {self.what} id: {value}")
        return queryset.filter(**{self.id_field: int(value)})


class TradeRunFilter(IdFilter):
    """One run's trades (`?run__id__exact=<id>`, the link on a run's page).

    A related-field filter would list every run as a choice, reading the whole runs table on
    each page; this one names only the chosen run (a `run_model` row).
    """

    title = "run"
    parameter_name = "run__id__exact"
    id_field = "run_id"
    what = "a run"
    run_model: type[Model] = BacktestRun

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if value is None:
            return []
        run = self.run_model._default_manager.filter(pk=value).first() if value.isdigit() else None
        return [(value, str(run) if run else f"#{value} (no such run)")]


class ChoiceFilter(admin.SimpleListFilter):
    """A fixed set of values: "all values" filters scan the whole trade table for them."""

    values: list[tuple[str, str]]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return self.values

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(**{str(self.parameter_name): value})


class DirectionFilter(ChoiceFilter):
    title = "direction"
    parameter_name = "direction"
    values = [("long", "Long"), ("short", "Short")]


EXIT_REASON_LABELS = {
    "signal": "Signal",
    "stop": "Stop loss",
    "target": "Take profit",
    "liquidation": "Liquidation",
    "end": "Still open at the end",
}


class ExitReasonFilter(ChoiceFilter):
    title = "exit reason"
    parameter_name = "exit_reason"
    values = [
        (str(reason), EXIT_REASON_LABELS.get(str(reason), str(reason).capitalize()))
        for reason in EXIT_REASONS
    ]


@admin.register(BacktestTrade)
class BacktestTradeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A run's trades, a page at a time: reached from the run's page, filtered to that run.

    Every query here is bounded by the page or by the run: the filters have fixed choices,
    the ordering is the (run, entry_time) index's, and there is no date hierarchy, whose
    year and month links read the trade table as a whole.
    """

    list_display = (
        "run",
        "direction",
        "entry_time_text",
        "entry_price_text",
        "exit_time_text",
        "exit_price_text",
        "pnl_text",
        "pnl_pct_text",
        "exit_reason",
        "is_open",
    )
    list_filter = (TradeRunFilter, DirectionFilter, ExitReasonFilter, "is_open")
    list_select_related = ("run",)
    list_per_page = 100
    ordering = ("run_id", "entry_time", "id")
    # The paginator counts the filtered trades already; a second count of the whole table
    # (for "N of M") is the slow part of a long list.
    show_full_result_count = False

    @admin.display(description="Entry time (UTC)", ordering="entry_time")
    def entry_time_text(self, obj: BacktestTrade) -> str:
        return f"{obj.entry_time.astimezone(UTC):%Y-%m-%d %H:%M}"

    @admin.display(description="Exit time (UTC)", ordering="exit_time")
    def exit_time_text(self, obj: BacktestTrade) -> str | None:
        return f"{obj.exit_time.astimezone(UTC):%Y-%m-%d %H:%M}" if obj.exit_time else None

    @admin.display(description="Entry price", ordering="entry_price")
    def entry_price_text(self, obj: BacktestTrade) -> str:
        return _price_text(obj.entry_price)

    @admin.display(description="Exit price", ordering="exit_price")
    def exit_price_text(self, obj: BacktestTrade) -> str | None:
        return None if obj.exit_price is None else _price_text(obj.exit_price)

    @admin.display(description="PnL", ordering="pnl")
    def pnl_text(self, obj: BacktestTrade) -> str | None:
        return _two_places(obj.pnl)

    @admin.display(description="PnL %", ordering="pnl_pct")
    def pnl_pct_text(self, obj: BacktestTrade) -> str | None:
        return _two_places(obj.pnl_pct)

    # Trades are engine output, like the run that computed them: looked at, never edited.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Sweep)
class SweepAdmin(LabLinkMixin, ResultAdminMixin, AuditedModelAdmin):
    # The lab link is added in render_change_form, so `change_view` is free for the page's
    # own data (templates/admin/backtests/sweep/change_form.html).
    list_display = (
        "id",
        "owner",
        "strategy_name",
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
    lab_url_name = "lab-sweep"
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

    @admin.display(description="Strategy", ordering="strategy__name")
    def strategy_name(self, obj: Sweep) -> str:
        # A sweep outlives its strategy (SET_NULL); its kind still says what it swept.
        return obj.strategy.name if obj.strategy is not None else obj.kind


@admin.action(description="Start a backtest of this strategy", permissions=["start_backtest"])
def start_backtest(
    modeladmin: Any, request: HttpRequest, queryset: QuerySet[Strategy]
) -> HttpResponseRedirect:
    strategy = queryset.first()
    url = reverse("admin:backtests_start")
    return HttpResponseRedirect(f"{url}?strategy={strategy.pk}" if strategy else url)


class StrategyWithBacktestsAdmin(LabLinkMixin, StrategyAdmin):
    """The strategy list is where staff look for "start a backtest"; strategies/ sits below
    this app and cannot know about runs (nor the lab), so this app re-registers its admin
    with the action and the lab link."""

    actions = [*StrategyAdmin.actions, start_backtest]  # type: ignore[misc]  # a class attribute
    lab_url_name = "lab-strategy-edit"

    def lab_url(self, request: HttpRequest, obj: Strategy) -> str | None:
        # The lab edits only the caller's own strategies (anyone else's is a 404 there).
        return super().lab_url(request, obj) if obj.owner_id == request.user.pk else None

    def has_start_backtest_permission(self, request: HttpRequest) -> bool:
        # The action leads to the start form, which asks for the permission to add a run.
        return request.user.has_perm("backtests.add_backtestrun")


admin.site.unregister(Strategy)  # registered by strategies.admin, imported above
admin.site.register(Strategy, StrategyWithBacktestsAdmin)
