"""`/api/v1/`: each app contributes its own routes."""

from __future__ import annotations

from django.urls import include, path, re_path

from backtests.api import StrategyRunViewSet

urlpatterns = [
    path("auth/", include("accounts.urls")),
    path("", include("trading.urls")),
    path("", include("backtests.urls")),  # `strategies/kinds/` too
    path("", include("strategies.urls")),
    path("", include("marketdata.urls")),
    # A strategy's runs live in backtests, which strategies may not import.
    re_path(
        r"^strategies/(?P<strategy_id>[0-9]{1,18})/runs/$",
        StrategyRunViewSet.as_view({"get": "list"}),
        name="strategy-runs",
    ),
]
