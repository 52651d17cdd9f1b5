"""Back-office pages for portfolio runs: the list with filters and search, a read-only run
page with its metrics and a per-instrument table, and its trades as a link to their own
filtered, read-only list (never inlined: a run can have thousands)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from backtests.admin import (
    ExitReasonFilter,
    IdFilter,
    LabLinkMixin,
    ResultAdminMixin,
    TradeRunFilter,
)
from backtests.lab_research import metric_text
from marketdata.models import Instrument
from persistence.admin import AuditedModelAdmin, ReadOnlyModelAdmin
from portfolios import selectors
from portfolios.models import PortfolioInstrument, PortfolioRun, PortfolioTrade

# The per-instrument table's columns: (key in the engine's row, heading).
INSTRUMENT_COLUMNS = (
    ("instrument", "Instrument"),
    ("bars", "Bars"),
    ("missing_bars", "Missing bars"),
    ("contribution", "Contribution"),
    ("contribution_pct", "Contribution %"),
    ("exposure_pct", "Mean exposure %"),
    ("turnover", "Turnover"),
    ("commissions", "Commissions"),
    ("num_trades", "Trades"),
    ("win_rate", "Win rate"),
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}"
    return "—" if value is None else str(value)


@admin.register(PortfolioRun)
class PortfolioRunAdmin(LabLinkMixin, ResultAdminMixin, AuditedModelAdmin):
    lab_url_name = "lab-portfolio"
    list_display = (
        "id",
        "name",
        "owner",
        "kind",
        "allocation",
        "rebalance",
        "timeframe",
        "status",
        "cache_hit",
        "created_at",
    )
    list_filter = ("status", "allocation", "rebalance", "cache_hit", "kind", "created_at")
    search_fields = ("name", "owner__username", "kind", "params_hash")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    readonly_fields = ("instruments_text", "metrics_table", "per_instrument_table", "trades_link")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Runs are submitted from the API or the lab, where the request is validated.
        return False

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> PortfolioRun | None:
        # The run page lists every instrument (up to 50) and links the owner: read them with
        # the run rather than one query each. The list page needs none of them.
        run = super().get_object(request, object_id, from_field)
        if run is not None:
            prefetch_related_objects([run], Prefetch("members", queryset=selectors.members()))
        return run

    @admin.display(description="Instruments (in order)")
    def instruments_text(self, obj: PortfolioRun) -> str:
        return ", ".join(selectors.instrument_symbols(obj))

    @admin.display(description="Metrics")
    def metrics_table(self, obj: PortfolioRun) -> SafeString:
        metrics = selectors.headline_metrics(obj)
        if not metrics:
            return format_html("<span>{}</span>", "None yet.")
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td></tr>",
            ((name, metric_text(value, name)) for name, value in metrics.items()),
        )
        return format_html('<table class="portfolio-metrics">{}</table>', rows)

    @admin.display(description="Per instrument")
    def per_instrument_table(self, obj: PortfolioRun) -> SafeString:
        rows = selectors.per_instrument_rows(obj)
        if not rows:
            return format_html("<span>{}</span>", "None yet.")
        head = format_html_join("", "<th>{}</th>", ((label,) for _, label in INSTRUMENT_COLUMNS))
        body = format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (
                    format_html_join(
                        "", "<td>{}</td>", ((_cell(row.get(key)),) for key, _ in INSTRUMENT_COLUMNS)
                    ),
                )
                for row in rows
            ),
        )
        return format_html(
            '<table class="portfolio-instruments"><thead><tr>{}</tr></thead><tbody>{}</tbody>'
            "</table>",
            head,
            body,
        )

    @admin.display(description="Trades")
    def trades_link(self, obj: PortfolioRun) -> SafeString:
        source = selectors.result_run_id(obj)
        url = reverse("admin:portfolios_portfoliotrade_changelist") + f"?run__id__exact={source}"
        count = selectors.portfolio_trades(run=obj).count()
        return format_html('<a href="{}">{} trade(s)</a>', url, count)


class PortfolioTradeRunFilter(TradeRunFilter):
    run_model = PortfolioRun


class PortfolioTradeInstrumentFilter(IdFilter):
    """The trades of one instrument: the chosen run's instruments, or every instrument.
    Never the trade table's distinct symbols, which it would read whole on each page."""

    title = "instrument"
    parameter_name = "instrument__id__exact"
    id_field = "instrument_id"
    what = "an instrument"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        run = request.GET.get(TradeRunFilter.parameter_name, "")
        instruments = Instrument.objects.order_by("symbol")
        if run.isdigit():
            members = PortfolioInstrument.objects.filter(portfolio_id=int(run))
            instruments = instruments.filter(pk__in=members.values("instrument_id"))
        return [(str(pk), symbol) for pk, symbol in instruments.values_list("pk", "symbol")]


@admin.register(PortfolioTrade)
class PortfolioTradeAdmin(ReadOnlyModelAdmin):
    """A run's trades, a page at a time, filtered by choices that never read the trade
    table whole (as the backtests' trades are)."""

    list_display = (
        "id",
        "run",
        "instrument",
        "side",
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "quantity",
        "pnl",
        "exit_reason",
        "is_open",
    )
    list_filter = (
        PortfolioTradeRunFilter,
        PortfolioTradeInstrumentFilter,
        ExitReasonFilter,
        "is_open",
    )
    list_select_related = ("run", "instrument")
    list_per_page = 100
    show_full_result_count = False
