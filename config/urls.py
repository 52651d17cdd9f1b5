"""Top-level URLs: the admin, the health check, the versioned API and its schema."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import health

admin.site.site_header = "Tradelab back-office"
admin.site.site_title = "Tradelab"
admin.site.index_title = "Back-office"

urlpatterns = [
    path("", RedirectView.as_view(url="/lab/", permanent=False)),
    path("lab/", include("backtests.lab")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("health", health, name="health"),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
