"""This app's `/api/v1/` routes."""

from __future__ import annotations

from typing import Any

from rest_framework.routers import SimpleRouter

from portfolios.api import PortfolioRunViewSet

router = SimpleRouter()
# "portfolio" alone names the trading ledger's portfolio view.
router.register("portfolios", PortfolioRunViewSet, basename="portfolio-run")

urlpatterns: list[Any] = [*router.urls]
