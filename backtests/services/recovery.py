"""Recovering work that lost its worker or its broker: requeue or fail runs whose heartbeat
stopped, fail silent sweeps, and requeue everything unfinished after a broker restart."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backtests.models import FINISHED_STATUSES, BacktestRun, RunStatus, Sweep
from backtests.services.dispatch import backtest_enqueue_on_commit
from backtests.services.execution import backtest_fail_locked
from backtests.services.sweeps import sweep_fail


def _stale_cutoff(stale_after: timedelta | None) -> datetime:
    if stale_after is None:
        stale_after = timedelta(seconds=settings.BACKTEST_STALE_AFTER_SECONDS)
    return timezone.now() - stale_after


def backtest_reap_stale(*, stale_after: timedelta | None = None) -> list[int]:
    """Recover runs whose worker died without a word: requeue them, or fail them for good.

    A run counts as lost when it is running and its heartbeat is older than `stale_after`.
    Requeueing gives it a new task id, so the dead worker's message, should the broker
    ever redeliver it, is recognised as superseded.
    """
    cutoff = _stale_cutoff(stale_after)
    candidates = BacktestRun.objects.filter(
        status=RunStatus.RUNNING, heartbeat_at__lt=cutoff
    ).values_list("pk", flat=True)
    recovered = []
    for run_id in list(candidates):
        if _reap_one(run_id=run_id, cutoff=cutoff):
            recovered.append(run_id)
    return recovered


@transaction.atomic
def _reap_one(*, run_id: int, cutoff: datetime) -> bool:
    run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING:
        return False
    if run.heartbeat_at is not None and run.heartbeat_at >= cutoff:
        return False
    if run.attempts >= settings.BACKTEST_MAX_ATTEMPTS:
        backtest_fail_locked(run, f"The worker was lost {run.attempts} times; giving up.")
        return True
    run.status = RunStatus.QUEUED
    run.celery_task_id = str(uuid.uuid4())
    run.error = f"Requeued after the worker was lost (attempt {run.attempts})."
    run.save(update_fields=["status", "celery_task_id", "error"])
    backtest_enqueue_on_commit(run_id=run.pk, task_id=run.celery_task_id)
    return True


def sweep_reap_stale(*, stale_after: timedelta | None = None) -> list[int]:
    """Fail sweeps whose workers have been silent too long; a chord cannot be resumed."""
    cutoff = _stale_cutoff(stale_after)
    stale = list(
        Sweep.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for sweep_id in stale:
        sweep_fail(sweep_id=sweep_id, error="The workers running this sweep were lost.")
    return stale


def backtest_requeue_orphans() -> list[int]:
    """Requeue every unfinished run; for a broker that has just started empty.

    `make run`'s embedded Redis keeps nothing across restarts, so whatever was queued or
    running when it stopped has no message left anywhere. Sweeps cannot be resumed
    mid-chord and are failed instead.
    """
    unfinished = [RunStatus.QUEUED, RunStatus.RUNNING]
    requeued = []
    for run_id in list(
        BacktestRun.objects.filter(status__in=unfinished).values_list("pk", flat=True)
    ):
        with transaction.atomic():
            run = BacktestRun.objects.select_for_update().get(pk=run_id)
            if run.status in FINISHED_STATUSES:
                continue
            run.status = RunStatus.QUEUED
            run.celery_task_id = str(uuid.uuid4())
            run.save(update_fields=["status", "celery_task_id"])
            backtest_enqueue_on_commit(run_id=run.pk, task_id=run.celery_task_id)
            requeued.append(run.pk)
    for sweep_id in Sweep.objects.filter(status__in=unfinished).values_list("pk", flat=True):
        sweep_fail(sweep_id=sweep_id, error="Interrupted: the server restarted.")
    return requeued
