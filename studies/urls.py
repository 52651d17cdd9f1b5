"""This app's `/api/v1/` routes."""

from __future__ import annotations

from typing import Any

from rest_framework.routers import SimpleRouter

from studies.api import StudyViewSet

router = SimpleRouter()
router.register("studies", StudyViewSet, basename="study")

urlpatterns: list[Any] = [*router.urls]
