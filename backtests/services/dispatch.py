"""Handing backtest work to Celery: enqueue a run or a sweep once the transaction that
created it commits, fan a sweep's chunks out as a chord, revoke a cancelled run's message.

The only services module that touches the tasks. They are imported inside each function
because `backtests.tasks` imports the services it calls.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def backtest_enqueue_on_commit(*, run_id: int, task_id: str) -> None:
    def enqueue() -> None:
        from backtests.tasks import execute_backtest

        execute_backtest.apply_async(args=[run_id], task_id=task_id)

    transaction.on_commit(enqueue)


def sweep_enqueue_on_commit(*, sweep_id: int, task_id: str) -> None:
    def enqueue() -> None:
        from backtests.tasks import launch_sweep

        launch_sweep.apply_async(args=[sweep_id], task_id=task_id)

    transaction.on_commit(enqueue)


def sweep_chunks_dispatch(
    *, sweep_id: int, chunks: list[list[dict[str, Any]]], data_version: str
) -> None:
    """Run the chunks on whichever workers are free; `finish_sweep` gets all their results."""
    from celery import chord, group

    from backtests.tasks import finish_sweep, run_sweep_chunk

    chord(group(run_sweep_chunk.s(sweep_id, chunk, data_version) for chunk in chunks))(
        finish_sweep.s(sweep_id)
    )


def task_revoke_on_commit(*, task_id: str) -> None:
    transaction.on_commit(lambda: _revoke(task_id))


def _revoke(task_id: str) -> None:
    # Revoking only saves a worker from picking a queued message up; correctness does not
    # depend on it, since a cancelled run's execution stops and stores nothing.
    if not task_id or settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        return
    try:
        # The project's app (config.celery) is the current one; naming it here would make
        # backtests import config, the layer above it.
        from celery import current_app

        current_app.control.revoke(task_id)
    except Exception:  # the broker being away must not turn a cancel into an error
        logger.warning("could not revoke task %s", task_id, exc_info=True)
