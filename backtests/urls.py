"""This app's `/api/v1/` routes."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
