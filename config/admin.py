"""The base class for back-office admin pages: audit history on every object."""

from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin
from django.http import HttpRequest, HttpResponse


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
