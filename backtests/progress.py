"""Progress throttling and delivery: which engine callbacks become messages, and where they go.

The engine may call back thousands of times; a browser needs a few updates a second. A
throttle lets a tick through only when it is at least one percent further than the last
one *and* at least ``BACKTEST_PROGRESS_MIN_INTERVAL`` seconds later, except that the
first and the final tick always pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
