"""The back-office's admin site: Django's, with the internal tables in a section of their own
after the domain apps, and the dashboard (config/dashboard.py) on the index.

`use_tradelab_admin_site` gives `django.contrib.admin.site` this class in place, so every
`admin.register` and `admin.site` reference in the apps keeps working unchanged.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from config.dashboard import dashboard
from persistence.admin import InternalTableAdmin

INTERNALS = "Internals (derived and bookkeeping tables)"


class TradelabAdminSite(admin.AdminSite):
    site_header = "Tradelab back-office"
    site_title = "Tradelab"
    index_title = "Back-office"

    def _is_internal(self, model: type[Any]) -> bool:
        return isinstance(self._registry.get(model), InternalTableAdmin)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """The apps with their domain tables, then one "Internals" section holding every table
        whose admin is an InternalTableAdmin (only superusers are shown those at all).

        One app's own page (`app_label`) still lists all of its tables.
        """
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        domain, internal = [], []
        for app in app_list:
            models = [m for m in app["models"] if not self._is_internal(m["model"])]
            internal += [m for m in app["models"] if self._is_internal(m["model"])]
            if models:
                domain.append({**app, "models": models})
        if internal:
            domain.append(
                {
                    "name": INTERNALS,
                    "app_label": "internals",
                    # The sidebar marks the app whose URL is in the page's path: an anchor on
                    # the index is in no table's path.
                    "app_url": reverse("admin:index", current_app=self.name) + "#internals",
                    "has_module_perms": True,
                    "models": internal,
                }
            )
        return domain

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {"dashboard": dashboard(user=request.user), **(extra_context or {})}  # type: ignore[arg-type]
        return super().index(request, context)


def use_tradelab_admin_site(site: admin.AdminSite) -> None:
    """Make the default admin site a TradelabAdminSite, keeping its registrations.

    A custom AdminConfig with `default_site` would do it from INSTALLED_APPS; this keeps the
    settings untouched and changes nothing else about the site object.
    """
    site.__class__ = TradelabAdminSite
