"""Progress throttling and delivery: which engine callbacks become messages, and where they go.

The engine may call back thousands of times; a browser needs a few updates a second. A
throttle lets a tick through only when it is at least one percent further than the last
one *and* at least ``BACKTEST_PROGRESS_MIN_INTERVAL`` seconds later, except that the
first and the final tick always pass.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    return f"backtest.{run_id}"


def sweep_group(sweep_id: int) -> str:
    return f"sweep.{sweep_id}"


class ProgressThrottle:
    """Decides which progress ticks are worth a message, and estimates the time left."""

    def __init__(
        self, *, min_interval: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_interval = min_interval
        self.clock = clock
        self.started = clock()
        self.last_at: float | None = None
        self.last_percent = -1.0

    def should_emit(self, percent: float, *, final: bool = False) -> bool:
        now = self.clock()
        if not final and self.last_at is not None:
            if now - self.last_at < self.min_interval:
                return False
            if percent - self.last_percent < 1.0:
                return False
        self.last_at = now
        self.last_percent = percent
        return True

    def eta_seconds(self, percent: float) -> float | None:
        """Linear extrapolation of the time spent so far; None until there is something done."""
        if percent <= 0:
            return None
        if percent >= 100:
            return 0.0
        elapsed = self.clock() - self.started
        return round(elapsed * (100.0 - percent) / percent, 1)


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send to a channel group; a progress message lost is never worth failing a run for."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the broker being briefly away must not fail a backtest
        logger.warning("could not send progress to %s", group, exc_info=True)


# --- Sweep counters -------------------------------------------------------------------
# The chunks of a sweep run in several worker processes; each adds the combinations it has
# computed to one counter per sweep, so any of them can report the sweep's progress without
# writing to the database. With Redis (REDIS_URL, which `make run` always sets) the counter
# is an INCRBY; without it everything runs in one process, and a dict does.

COUNTER_TTL_SECONDS = 24 * 3600
_local_counts: dict[int, int] = {}
_local_lock = threading.Lock()
_redis_clients: dict[int, Any] = {}


def _redis() -> Any:
    if not settings.REDIS_URL:
        return None
    # One client per process: a client created before a prefork worker forked is not reused.
    pid = os.getpid()
    client = _redis_clients.get(pid)
    if client is None:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        _redis_clients.clear()
        _redis_clients[pid] = client
    return client


def _counter_key(sweep_id: int) -> str:
    return f"tradelab:sweep:{sweep_id}:computed"


def sweep_computed_add(sweep_id: int, count: int) -> int | None:
    """Add `count` computed combinations to the sweep's counter; the new total, or None when
    the counter is unreachable (progress is then skipped, never the sweep failed)."""
    client = _redis()
    if client is None:
        with _local_lock:
            _local_counts[sweep_id] = _local_counts.get(sweep_id, 0) + count
            return _local_counts[sweep_id]
    try:
        pipe = client.pipeline()
        pipe.incrby(_counter_key(sweep_id), count)
        pipe.expire(_counter_key(sweep_id), COUNTER_TTL_SECONDS)
        total, _ = pipe.execute()
        return int(total)
    except Exception:
        logger.warning("could not count progress of sweep %s", sweep_id, exc_info=True)
        return None


def sweep_computed_clear(sweep_id: int) -> None:
    client = _redis()
    if client is None:
        with _local_lock:
            _local_counts.pop(sweep_id, None)
        return
    try:
        client.delete(_counter_key(sweep_id))
    except Exception:
        logger.warning("could not clear the counter of sweep %s", sweep_id, exc_info=True)
