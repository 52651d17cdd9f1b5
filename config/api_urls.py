"""`/api/v1/`: each app contributes its own routes."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("auth/", include("accounts.urls")),
    path("", include("trading.urls")),
    path("", include("backtests.urls")),
]
