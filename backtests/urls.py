"""This app's `/api/v1/` routes, and the strategy-kind catalogue the backtest forms need."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.routers import SimpleRouter

from backtests.api import BacktestRunViewSet, CacheStatsView, SweepViewSet
from strategies.api import StrategyKindListView

router = SimpleRouter()
router.register("backtests", BacktestRunViewSet, basename="backtest")
router.register("sweeps", SweepViewSet, basename="sweep")

urlpatterns: list[Any] = [
    path("strategies/kinds/", StrategyKindListView.as_view(), name="strategy-kinds"),
    path("cache/stats/", CacheStatsView.as_view(), name="cache-stats"),
    *router.urls,
]
