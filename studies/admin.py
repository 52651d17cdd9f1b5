"""Back-office pages for studies: the list with filters, a study's page with its folds and a
link to its trials (a paginated, read-only list of their own, never inlined in full), and a
cancel action through the service. Everything a study computed is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from backtests.admin import ResultAdminMixin
from backtests.services import BacktestConflict
from persistence.admin import AuditedModelAdmin, ReadOnlyModelAdmin, error_text
from studies import services
from studies.models import Study, StudyFold, StudyTrial


class StudyFoldInline(admin.TabularInline):  # type: ignore[type-arg]
    """The optimisations of a study: at most STUDY_MAX_FOLDS + 1 rows, so inlined."""

    model = StudyFold
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "role",
        "index",
        "status",
        "is_start",
        "is_end",
        "oos_start",
        "oos_end",
        "trials_done",
        "cache_hit",
        "chosen_parameters",
        "best_values",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Study)
class StudyAdmin(ResultAdminMixin, AuditedModelAdmin):
    list_display = (
        "id",
        "owner",
        "kind",
        "instrument",
        "mode",
        "sampler",
        "status",
        "trials_done",
        "trials_total",
        "best_values",
        "created_at",
    )
    list_filter = ("status", "mode", "sampler", "kind", "instrument__symbol", "created_at")
    search_fields = ("owner__username", "strategy__name", "kind", "optuna_prefix")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "strategy", "instrument")
    actions = ["cancel_studies"]
    inlines = [StudyFoldInline]
    readonly_fields = ("trials_link",)

    @admin.display(description="Trials")
    def trials_link(self, obj: Study) -> str:
        url = reverse("admin:studies_studytrial_changelist") + f"?study__id__exact={obj.pk}"
        return format_html('<a href="{}">{} trial(s)</a>', url, obj.trials_done)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Studies are started from the API or the lab, where the search space is built.
        return False

    @admin.action(description="Cancel the selected studies", permissions=["change"])
    def cancel_studies(self, request: HttpRequest, queryset: QuerySet[Study]) -> None:
        cancelled = 0
        for study in queryset:
            try:
                services.study_cancel(study=study)
                cancelled += 1
            except BacktestConflict as exc:
                messages.warning(request, error_text(exc))
        messages.success(request, f"Cancelled {cancelled} study(ies).")


@admin.register(StudyTrial)
class StudyTrialAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "study",
        "fold",
        "number",
        "state",
        "params",
        "values",
        "cache_hit",
        "worker",
        "duration_seconds",
        "engine_seconds",
    )
    list_filter = ("state", "cache_hit", "fold__role", "study")
    search_fields = ("params_hash", "worker")
    list_select_related = ("study", "fold")
    list_per_page = 100
    show_full_result_count = False
