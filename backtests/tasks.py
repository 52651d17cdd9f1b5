"""Celery tasks: thin wrappers that take ids and call services.

Every task here acknowledges late and is rejected back to the queue when its worker
process dies (settings CELERY_TASK_ACKS_LATE / REJECT_ON_WORKER_LOST), so a killed run is
redelivered under the same task id; the services make that redelivery safe.
"""

from __future__ import annotations

import os
from typing import Any

# Imported here, in the worker's parent, so every forked pool process starts with the
# parquet reader loaded: otherwise each fresh process pays the import on its first task,
# which is a good part of a short sweep chunk.
import pyarrow.parquet  # noqa: F401
from celery import shared_task
from celery.signals import worker_ready

from backtests import services


@shared_task(bind=True, name="backtests.tasks.execute_backtest")
def execute_backtest(self: Any, run_id: int) -> str | None:
    run = services.backtest_execute(run_id=run_id, task_id=self.request.id)
    return None if run is None else run.status


@shared_task(name="backtests.tasks.reap_stale")
def reap_stale() -> dict[str, list[int]]:
    return {
        "runs": services.backtest_reap_stale(),
        "sweeps": services.sweep_reap_stale(),
    }


@shared_task(bind=True, name="backtests.tasks.launch_sweep")
def launch_sweep(self: Any, sweep_id: int) -> None:
    services.sweep_launch(sweep_id=sweep_id, task_id=self.request.id)


@shared_task(name="backtests.tasks.run_sweep_chunk")
def run_sweep_chunk(
    sweep_id: int, combinations: list[dict[str, Any]], data_version: str
) -> dict[str, Any]:
    return services.sweep_run_chunk(
        sweep_id=sweep_id, combinations=combinations, data_version=data_version
    )


@shared_task(name="backtests.tasks.finish_sweep")
def finish_sweep(chunk_results: list[dict[str, Any]], sweep_id: int) -> None:
    services.sweep_finish(sweep_id=sweep_id, chunk_results=chunk_results)


@shared_task(name="backtests.tasks.requeue_orphans")
def requeue_orphans() -> list[int]:
    return services.backtest_requeue_orphans()


@worker_ready.connect
def _recover_lost_work_on_start(**_: Any) -> None:
    # `make run` sets this when it has just started an empty embedded broker: nothing that
    # was queued or running before survived, so all of it is requeued.
    if os.environ.get("TRADELAB_REQUEUE_ON_START") == "1":
        requeue_orphans.delay()
    # Otherwise a worker that starts is often one replacing a worker that died mid-run.
    reap_stale.delay()
