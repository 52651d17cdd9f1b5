"""`GET /health`: is the database reachable, and the broker and channel layer once configured;
also the result cache's size and hit rate. And `server_error`, the 500 handler, which answers
503 when what failed was reaching the database."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _check_broker() -> str:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return conn.transport_cls if isinstance(conn.transport_cls, str) else "connected"


def _check_channel_layer() -> str:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.send)(channel, {"type": "health.ping"})
    async_to_sync(layer.receive)(channel)
    return type(layer).__name__


def _run(check: Callable[[], str]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # a health check reports every failure, whatever its type
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def health(request: HttpRequest) -> JsonResponse:
    checks = {"database": _run(_check_database)}
    # The broker and a cross-process channel layer exist only once REDIS_URL is set.
    if settings.REDIS_URL:
        checks["broker"] = _run(_check_broker)
        checks["channel_layer"] = _run(_check_channel_layer)
    healthy = all(check["ok"] for check in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if checks["database"]["ok"]:
        # Numbers, not a check: a cold cache is not an unhealthy one.
        from persistence.selectors import cache_stats

        stats = cache_stats()
        body["cache"] = {key: stats[key] for key in ("entries", "size_bytes", "hits", "hit_rate")}
    return JsonResponse(body, status=200 if healthy else 503)


# Seconds a client is told to wait before trying again: about how long the connection pool
# takes to reconnect once the server is back (see DATABASES in config.settings.base).
DATABASE_RETRY_AFTER = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. A request that failed because the database could not serve it (down,
    restarting, no pooled connection free within the pool's timeout) gets a 503 with
    Retry-After: the service is unavailable for a moment, the request was not at fault."""
    exc = sys.exc_info()[1]  # Django calls the handler inside its `except` block
    if not isinstance(exc, OperationalError | InterfaceError):
        return defaults.server_error(request)
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    message = "The database is unavailable; try again in a moment."
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=503, headers=headers)
    return HttpResponse(message, status=503, content_type="text/plain", headers=headers)
