"""This app's `/api/v1/` routes: the caller's strategies. (The kinds' catalogue,
`strategies/kinds/`, is routed with the backtests; ids are digits, so it never clashes.)"""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from strategies.api import StrategyViewSet

router = SimpleRouter()
router.register("strategies", StrategyViewSet, basename="strategy")

urlpatterns = router.urls
