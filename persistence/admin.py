"""The base admin classes every app's admin builds on (audit history, read-only tables, plain
error messages), and the admin pages of the cache, artifacts and the event log."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse

from persistence.models import Artifact, CachedResult, Checkpoint, Event, ParamSet, Snapshot


def _sentences(problems: Any) -> list[str]:
    if isinstance(problems, Mapping):
        return [field_error_text(field, nested) for field, nested in problems.items()]
    if isinstance(problems, list | tuple):
        return [sentence for problem in problems for sentence in _sentences(problem)]
    return [str(problems)]


def field_error_text(field: str, problems: Any) -> str:
    """One field's problems as a line staff can read: "Initial capital: Must be positive."

    The services report per-field lists (sometimes nested); formatting them with str()
    showed Python's brackets and quotes in the admin.
    """
    text = " ".join(_sentences(problems))
    if field in ("", NON_FIELD_ERRORS):
        return text
    return f"{field.replace('_', ' ').capitalize()}: {text}"


def error_text(exc: BaseException) -> str:
    """A service's exception as plain text for an admin message, naming the fields."""
    per_field = getattr(exc, "errors", None)  # e.g. BacktestInputError
    if per_field is None and isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        per_field = exc.message_dict
    if isinstance(per_field, Mapping):
        return "; ".join(field_error_text(field, problems) for field, problems in per_field.items())
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    message = getattr(exc, "message", None)  # e.g. LedgerConflict
    return message if isinstance(message, str) else str(exc)


def amount_text(value: Decimal | None) -> str | None:
    """A ledger amount without the 18-place padding, grouped by thousands: "1,234.5".

    Exact: the digits are the stored ones (no float, no rounding to a context precision).
    """
    if value is None:
        return None  # the admin shows its "empty" marker
    whole, _, fraction = format(value, "f").partition(".")
    fraction = fraction.rstrip("0")
    negative = whole.startswith("-")
    grouped = f"{int(whole.lstrip('-')):,}"
    sign = "-" if negative and (grouped != "0" or fraction) else ""
    return f"{sign}{grouped}.{fraction}" if fraction else f"{sign}{grouped}"


def amount_column(field: str, description: str) -> Callable[[Any], Any]:
    """A list_display column showing the Decimal `field` with `amount_text`, sortable by it.

    Returns `Any`: the stubs type a column as returning str or bool, but None is what makes
    the admin show its "empty" marker.
    """

    def column(obj: Any) -> str | None:
        return amount_text(getattr(obj, field))

    column.__name__ = field
    return admin.display(description=description, ordering=field)(column)


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


class InternalTableAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Bookkeeping tables (caches, projections, rollups, checkpoints): superusers only.

    Staff work with the domain tables; these are derived from them or support them, and
    listing them beside the domain tables only made the index harder to read.
    """

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._superuser(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self._superuser(request) and super().has_delete_permission(request, obj)


class InternalReadOnlyAdmin(InternalTableAdmin, ReadOnlyModelAdmin):
    """An internal table that even superusers only look at."""


@admin.register(ParamSet)
class ParamSetAdmin(InternalReadOnlyAdmin):
    list_display = ("params_hash", "created_at", "last_used_at")
    search_fields = ("params_hash", "canonical_json")
    date_hierarchy = "created_at"


@admin.register(CachedResult)
class CachedResultAdmin(InternalTableAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Artifact)
class ArtifactAdmin(InternalTableAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
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
class SnapshotAdmin(InternalReadOnlyAdmin):
    list_display = ("stream", "version", "created_at")
    search_fields = ("stream",)
    date_hierarchy = "created_at"


@admin.register(Checkpoint)
class CheckpointAdmin(InternalReadOnlyAdmin):
    """The local record of signed checkpoints; the witnesses outside the database are the
    ones `verify_ledger --against` trusts."""

    list_display = ("seq", "event_count", "created_at", "key_id", "head_hash")
    date_hierarchy = "created_at"
