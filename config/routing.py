"""Websocket URL routing; each app contributes its own patterns."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
