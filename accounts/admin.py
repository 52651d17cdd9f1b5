from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest, HttpResponse

from accounts.models import User


@admin.register(User)
class UserAdmin(AuditlogHistoryAdminMixin, DjangoUserAdmin):  # type: ignore[misc]
    # accounts is the lowest layer, so it cannot use persistence.admin.AuditedModelAdmin;
    # it wires auditlog's history in the same way.
    show_auditlog_history_link = True
    list_display = ("username", "email", "is_staff", "is_active", "date_joined", "last_login")
    date_hierarchy = "date_joined"

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return self.auditlog_history_view(request, object_id, extra_context)
