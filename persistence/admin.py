"""The base admin classes every app's admin builds on (audit history, read-only tables), and
the admin pages of the cache, artifacts and the event log."""

from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from persistence.models import Artifact, CachedResult, Checkpoint, Event, ParamSet, Snapshot


class AuditedModelAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Every object's audit trail, reachable from its page and from the list.

    The admin's own "History" button is pointed at the auditlog view, so staff find
    who changed what (with the changed fields) where they already look for it.
    """

    show_auditlog_history_link = True
    list_per_page = 50

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.auditlog_history_view(request, object_id, extra_context)


class ReadOnlyModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For append-only tables: staff may look, never add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ParamSet)
class ParamSetAdmin(ReadOnlyModelAdmin):
    list_display = ("params_hash", "created_at", "last_used_at")
    search_fields = ("params_hash", "canonical_json")
    date_hierarchy = "created_at"


@admin.register(CachedResult)
class CachedResultAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "kind",
        "params_hash",
        "format",
        "row_count",
        "size_bytes",
        "hit_count",
        "last_hit_at",
        "created_at",
    )
    list_filter = ("kind", "format", "created_at", "last_hit_at")
    search_fields = ("params_hash",)
    date_hierarchy = "created_at"
    exclude = ("blob",)
    readonly_fields = (
        "kind",
        "params_hash",
        "format",
        "file_path",
        "row_count",
        "size_bytes",
        "hit_count",
        "last_hit_at",
        "created_at",
    )

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "owner", "run", "mime_type", "size_bytes", "sha256", "created_at")
    list_filter = ("mime_type", "created_at")
    search_fields = ("name", "params_hash", "sha256")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "run")
    exclude = ("blob",)
    readonly_fields = (
        "name",
        "owner",
        "run",
        "params_hash",
        "mime_type",
        "file_path",
        "size_bytes",
        "sha256",
        "created_at",
    )

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyModelAdmin):
    list_display = ("seq", "stream", "version", "type", "short_hash", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("stream", "hash", "prev_hash")
    date_hierarchy = "created_at"

    @admin.display(description="Hash")
    def short_hash(self, obj: Event) -> str:
        return obj.hash[:12]


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyModelAdmin):
    list_display = ("stream", "version", "created_at")
    search_fields = ("stream",)
    date_hierarchy = "created_at"


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyModelAdmin):
    """The local record of signed checkpoints; the witnesses outside the database are the
    ones `verify_ledger --against` trusts."""

    list_display = ("seq", "event_count", "created_at", "key_id", "head_hash")
    date_hierarchy = "created_at"
