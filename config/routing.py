"""Websocket URL routing; each app contributes its own patterns."""

from __future__ import annotations

from typing import Any

from django.urls import path

from backtests.consumers import (
    BacktestProgressConsumer,
    JwtQueryAuthMiddleware,
    SweepProgressConsumer,
)
from studies.consumers import StudyProgressConsumer

websocket_urlpatterns: list[Any] = [
    path(
        "ws/backtests/<int:pk>/",
        JwtQueryAuthMiddleware(BacktestProgressConsumer.as_asgi()),
        name="ws-backtest",
    ),
    path(
        "ws/sweeps/<int:pk>/",
        JwtQueryAuthMiddleware(SweepProgressConsumer.as_asgi()),
        name="ws-sweep",
    ),
    path(
        "ws/studies/<int:pk>/",
        JwtQueryAuthMiddleware(StudyProgressConsumer.as_asgi()),
        name="ws-study",
    ),
]
