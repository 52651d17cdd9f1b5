"""This app's `/api/v1/` routes: the ledger's orders, fills, positions, trades and history."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from trading import api

router = SimpleRouter()
router.register("orders", api.OrderViewSet, basename="order")
router.register("fills", api.FillViewSet, basename="fill")
router.register("positions", api.PositionViewSet, basename="position")
router.register("trades", api.TradeViewSet, basename="trade")
router.register("events", api.EventViewSet, basename="event")
router.register("audit", api.AuditViewSet, basename="audit")

urlpatterns = [
    path("portfolio/", api.PortfolioView.as_view(), name="portfolio"),
    path("portfolio/history/", api.PortfolioHistoryView.as_view(), name="portfolio-history"),
    *router.urls,
]
