"""`/api/v1/`: each app contributes its own routes; the root lists the top-level ones."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from backtests.api import StrategyRunViewSet
from studies.api import SweepOverfittingView

# Name in the root's answer → URL name. Collections and top-level views only: details,
# actions and uploads are reached from these (and documented in the schema).
API_ROOT_LINKS = {
    "auth-token": "token_obtain_pair",
    "auth-token-refresh": "token_refresh",
    "auth-register": "register",
    "orders": "order-list",
    "fills": "fill-list",
    "positions": "position-list",
    "trades": "trade-list",
    "events": "event-list",
    "audit": "audit-list",
    "portfolio": "portfolio",
    "portfolio-history": "portfolio-history",
    "strategies": "strategy-list",
    "strategy-kinds": "strategy-kinds",
    "backtests": "backtest-list",
    "sweeps": "sweep-list",
    "studies": "study-list",
    "portfolios": "portfolio-run-list",
    "cache-stats": "cache-stats",
    "instruments": "instrument-list",
    "candles": "candle-list",
    "candle-download": "candle-download",
    "candle-upload": "candle-upload",
    "schema": "schema",
    "docs": "api-docs",
}


@extend_schema(exclude=True)  # a map of the schema's own operations, not an operation
class ApiRootView(APIView):
    """The API's entry point, like DRF's DefaultRouter root: absolute URLs of the top-level
    endpoints. Open to anyone, as the schema is: it names URLs, never data."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(
            {name: reverse(url_name, request=request) for name, url_name in API_ROOT_LINKS.items()}
        )


urlpatterns = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("auth/", include("accounts.urls")),
    path("", include("trading.urls")),
    path("", include("backtests.urls")),  # `strategies/kinds/` too
    path("", include("strategies.urls")),
    path("", include("marketdata.urls")),
    path("", include("studies.urls")),
    path("", include("portfolios.urls")),
    # A strategy's runs live in backtests, which strategies may not import.
    re_path(
        r"^strategies/(?P<strategy_id>[0-9]{1,18})/runs/$",
        StrategyRunViewSet.as_view({"get": "list"}),
        name="strategy-runs",
    ),
    # A sweep's overfitting statistics live in studies, which backtests may not import.
    re_path(
        r"^sweeps/(?P<sweep_id>[0-9]{1,18})/overfitting/$",
        SweepOverfittingView.as_view(),
        name="sweep-overfitting",
    ),
]
