"""Celery tasks: thin wrappers that take ids and call services.

Acknowledged late and rejected back to the queue when their worker process dies (settings
CELERY_TASK_ACKS_LATE / REJECT_ON_WORKER_LOST): a batch of trials whose process died is
redelivered under the same task id and its trials run again; see studies.services.trials.
"""

from __future__ import annotations

import os
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_ready

from studies import services


@shared_task(bind=True, name="studies.tasks.launch_study")
def launch_study(self: Any, study_id: int) -> None:
    services.study_launch(study_id=study_id, task_id=self.request.id)


@shared_task(bind=True, name="studies.tasks.run_trials")
def run_trials(self: Any, study_id: int, trial_ids: list[int]) -> None:
    worker = f"{self.request.hostname or 'local'}:{os.getpid()}"
    services.trials_execute(
        study_id=study_id, trial_ids=trial_ids, task_id=self.request.id, worker=worker
    )


@shared_task(name="studies.tasks.watch_study")
def watch_study(study_id: int) -> None:
    services.study_watch(study_id=study_id)


@shared_task(name="studies.tasks.reap_stale")
def reap_stale() -> list[int]:
    return services.study_reap_stale()


@shared_task(name="studies.tasks.cleanup_cancelled")
def cleanup_cancelled(study_id: int) -> None:
    services.study_cancel_cleanup(study_id=study_id)


@worker_ready.connect
def _recover_lost_studies_on_start(**_: Any) -> None:
    # A worker that starts is often one replacing a worker that died mid-study.
    reap_stale.delay()


@worker_init.connect
def _import_what_a_fold_close_needs(**_: Any) -> None:
    # Optuna's importance package imports scipy.stats and more (about 1.5 s). Imported in the
    # worker's main process, before its pool forks, every process has it: the first fold a
    # process closes does not keep the study waiting for it.
    import optuna.importance  # noqa: F401
