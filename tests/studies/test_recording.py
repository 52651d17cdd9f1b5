"""How a runner records the trials of a batch: short trials together, in one transaction and
one cache write; each trial on its own when the batch was run before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from studies import services
from studies.models import Study, StudyTrial, TrialState
from studies.services import trials as trial_services
from tests.studies.conftest import submit

pytestmark = pytest.mark.django_db(transaction=True)

GRID = {
    "sampler": "grid",
    "search_space": {"fast": {"choices": [3, 4, 5, 6]}, "slow": {"choices": [20, 30]}},
    "n_trials": 8,
    "parallelism": 1,
}


class Counted:
    """Counts the calls of a function it wraps, and the size of each call's `finished`."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.calls: list[int] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(len(kwargs.get("finished") or kwargs.get("contents") or []))
        return self.function(**kwargs)


@pytest.fixture
def counted(monkeypatch) -> dict[str, Counted]:  # type: ignore[no-untyped-def]
    found = {
        "steps": Counted(trial_services._step),
        "cache_writes": Counted(trial_services.cache_store_many),
    }
    monkeypatch.setattr(trial_services, "_step", found["steps"])
    monkeypatch.setattr(trial_services, "cache_store_many", found["cache_writes"])
    return found


def _complete(study: Study) -> list[StudyTrial]:
    return list(StudyTrial.objects.filter(study=study, state=TrialState.COMPLETE))


def test_short_trials_of_a_batch_are_recorded_together(
    queue, study_strategy, counted, monkeypatch
) -> None:
    monkeypatch.setattr(trial_services, "RECORD_EVERY_SECONDS", 3600.0)
    study = queue.run(submit(study_strategy, **GRID))
    assert study.status == "succeeded", study.error
    trials = _complete(study)
    assert len(trials) == study.trials_done == 8
    # One batch of 8: one step marks its first trial running; the other seven start
    # unrecorded, and the pump records all eight, with one cache write.
    assert counted["steps"].calls == [0]
    assert counted["cache_writes"].calls == [8]
    for trial in trials:
        assert trial.worker == "test-worker" and trial.attempts == 1
        assert trial.started_at is not None and trial.duration_seconds is not None
        assert trial.started_at <= trial.finished_at


def test_trials_are_recorded_one_by_one_when_each_takes_long_enough(
    queue, study_strategy, counted, monkeypatch
) -> None:
    monkeypatch.setattr(trial_services, "RECORD_EVERY_SECONDS", 0.0)
    study = queue.run(submit(study_strategy, **GRID))
    assert study.status == "succeeded", study.error
    assert len(_complete(study)) == 8
    # A step before the first trial, and one between each two: it records the one before.
    assert counted["steps"].calls == [0, 1, 1, 1, 1, 1, 1, 1]
    assert counted["cache_writes"].calls == [1] * 8


def test_a_batch_run_before_records_each_trial_before_it_starts(
    queue, study_strategy, counted, monkeypatch
) -> None:
    monkeypatch.setattr(trial_services, "RECORD_EVERY_SECONDS", 3600.0)
    study = submit(study_strategy, **GRID)
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
    (batch,) = queue.batches
    # Redelivered after its worker was lost: a trial of it had started.
    StudyTrial.objects.filter(pk=batch["trial_ids"][3]).update(attempts=1)
    queue.drain()
    study.refresh_from_db()
    assert study.status == "succeeded", study.error
    assert counted["steps"].calls == [0, 1, 1, 1, 1, 1, 1, 1]
    assert StudyTrial.objects.get(pk=batch["trial_ids"][3]).attempts == 2


def test_a_lost_runners_unrecorded_trials_go_to_another_runner_as_an_attempt(
    queue, study_strategy, monkeypatch, settings
) -> None:
    monkeypatch.setattr(trial_services, "RECORD_EVERY_SECONDS", 3600.0)
    study = submit(study_strategy, **GRID)
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
    (lost,) = queue.batches
    queue.batches.clear()
    # A worker ran the batch's first trials, the later ones without a record of their
    # own, and died: the first is running, the others still queued, all gone cold.
    trial_services.trial_start(
        study_id=study.pk, trial_id=lost["trial_ids"][0], task_id=lost["task_id"], worker="w1"
    )
    StudyTrial.objects.filter(pk__in=lost["trial_ids"]).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.STUDY_STALE_AFTER_SECONDS + 5)
    )
    services.study_watch(study_id=study.pk)
    queue.drain()
    study.refresh_from_db()
    assert study.status == "succeeded", study.error
    failed = StudyTrial.objects.get(study=study, state=TrialState.FAILED)
    assert failed.pk == lost["trial_ids"][0] and "worker" in failed.error
    others = StudyTrial.objects.filter(pk__in=lost["trial_ids"][1:])
    assert {t.state for t in others} == {TrialState.COMPLETE}
    # The lost delivery counts: one more attempt than a trial run once has.
    assert {t.attempts for t in others} == {2}
    assert study.trials_done == 8 and study.trials_failed == 1
