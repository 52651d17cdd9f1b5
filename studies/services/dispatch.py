"""Handing study work to Celery: the launch once the study is committed, a batch of trials,
the watch that looks at a study again later, and the Optuna clean-up of a cancel.

The only services module that reaches `studies.tasks` (imported inside each function: the
tasks import the services). Tests replace `trials_dispatch` to run batches in a loop.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def study_enqueue_on_commit(*, study_id: int, task_id: str) -> None:
    def enqueue() -> None:
        from studies.tasks import launch_study

        launch_study.apply_async(args=[study_id], task_id=task_id)

    transaction.on_commit(enqueue)


def trials_dispatch(*, study_id: int, trial_ids: list[int], task_id: str) -> None:
    """Run a batch of trials on whichever worker is free, as task `task_id` (the id the rows
    carry, so a redelivered message finds them and a superseded one does not)."""
    from studies.tasks import run_trials

    run_trials.apply_async(args=[study_id, trial_ids], task_id=task_id)


def watch_schedule(*, study_id: int, countdown: float) -> None:
    from studies.tasks import watch_study

    watch_study.apply_async(args=[study_id], countdown=countdown)


def cancel_cleanup_on_commit(*, study_id: int, task_ids: list[str]) -> None:
    def enqueue() -> None:
        from studies.tasks import cleanup_cancelled

        cleanup_cancelled.delay(study_id)
        _revoke(task_ids)

    transaction.on_commit(enqueue)


def _revoke(task_ids: list[str]) -> None:
    # Revoking only spares a worker from picking a queued batch up: a batch of a cancelled
    # study stops by itself and stores nothing.
    if not task_ids or settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        return
    try:
        from celery import current_app

        current_app.control.revoke(task_ids)
    except Exception:  # the broker being away must not turn a cancel into an error
        logger.warning("could not revoke the tasks of a cancelled study", exc_info=True)
