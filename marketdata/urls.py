"""This app's `/api/v1/` routes: instruments, candles, candle downloads and uploads."""

from __future__ import annotations

from typing import Any

from django.urls import path
from rest_framework.routers import SimpleRouter

from marketdata import api

router = SimpleRouter()
router.register("instruments", api.InstrumentViewSet, basename="instrument")

urlpatterns: list[Any] = [
    path("candles/", api.CandleListView.as_view(), name="candle-list"),
    path("candles/download/", api.CandleDownloadView.as_view(), name="candle-download"),
    path("candles/upload/", api.CandleUploadView.as_view(), name="candle-upload"),
    path(
        "candles/uploads/<int:pk>/",
        api.CandleUploadDetailView.as_view(),
        name="candle-upload-detail",
    ),
    *router.urls,
]
