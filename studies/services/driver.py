"""Driving a study: launch, the pump that keeps trials in flight, the watch that notices lost
workers, cancel and fail.

No process runs the study from start to end. Every step that may move it on calls
`study_pump`: the launch, a runner between two batches (services.trials), a watch task,
the periodic reaper. The pump works in one transaction under the study row's lock, all of
it on Django's connection:

- it records the trials the calling runner finished last;
- trials whose worker stopped sending heartbeats are recorded failed (one that never
  started is handed to another batch instead): a lost worker loses at most the trial it
  was running, and the study goes on;
- a fold whose budget is spent and whose trials have all finished is closed (its choice,
  its out-of-sample test), once Optuna's record of it is complete, and the study is
  closed after its last fold;
- free capacity (parallelism x batch size, less what is in flight) is claimed as trial
  slots, fold after fold in order (walk-forward folds, then the whole period): the next
  fold starts as soon as the one before has claimed its whole budget, so no runner waits
  for another fold's slowest trial. A fold not started is answered from the fold cache if
  it can be. Each slot is asked for its parameters (services.sampling) and answered at
  once when the kind's rules refuse them (infeasible) or the cache holds them, else queued
  in a batch; the first batch goes to the runner that asked for more, the others to the
  queue.

Idle in-flight work gets a watch task one stale period later, so that a worker lost
during the last trials is noticed even when no other trial finishes after it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from backtests.models import FINISHED_STATUSES, RunStatus
from backtests.services import BacktestConflict, readable_error
from studies.models import (
    TRIAL_PENDING_STATES,
    FoldRole,
    SamplerName,
    Study,
    StudyFold,
    StudyTrial,
    TrialState,
)
from studies.services.dispatch import (
    cancel_cleanup_on_commit,
    study_enqueue_on_commit,
    trials_dispatch,
    watch_schedule,
)
from studies.services.keys import fold_key, study_bar_count, study_candles, window_data_version
from studies.services.messages import send_on_commit, study_message
from studies.services.results import (
    fold_cached,
    fold_finish_locked,
    fold_materialise_locked,
    study_finish_locked,
)
from studies.services.sampling import (
    Asked,
    histories_forget,
    optuna_sync,
    optuna_sync_due,
    trial_ask,
    trial_asked,
    trials_told,
)
from studies.services.trials import (
    Answers,
    FoldWrites,
    Runner,
    TrialOutcome,
    outcomes_cache,
    study_progress_save,
    trial_quick_outcome,
    trial_record_locked,
    trials_record_locked,
)
from studies.windows import fold_windows, parse_length

logger = logging.getLogger(__name__)

# Rounds one pump call may go through (folds answered from the cache, trials answered at
# once): far more than any study needs, a bound against a bug looping forever.
PUMP_MAX_ROUNDS = 100_000


def batch_size(study: Study, remaining: int) -> int:
    """Trials per batch: one for the adaptive samplers (each ask should see every result
    so far); for grid and random, enough to share indicator work, spread over the
    parallel slots."""
    if study.sampler in (SamplerName.TPE, SamplerName.NSGA2):
        return 1
    share = math.ceil(max(remaining, 1) / study.parallelism)
    return max(1, min(settings.STUDY_BATCH_SIZE, share))


# --- Launch ---------------------------------------------------------------------------


@transaction.atomic
def _study_start(*, study_id: int, task_id: str) -> Study | None:
    study = Study.objects.select_for_update().filter(pk=study_id).first()
    if study is None or study.status != RunStatus.QUEUED or study.celery_task_id != task_id:
        return None
    study.status = RunStatus.RUNNING
    study.started_at = study.heartbeat_at = timezone.now()
    study.save(update_fields=["status", "started_at", "heartbeat_at"])
    send_on_commit(study.pk, study_message(study))
    return study


def _ts(candles_index, position: int, end):  # type: ignore[no-untyped-def]
    return end if position >= len(candles_index) else candles_index[position].to_pydatetime()


def _folds_build(study: Study) -> list[StudyFold]:
    """The study's stages, with their windows, data versions and cache keys (unsaved).

    Only a walk-forward reads the candles here (its windows are bar positions); a study
    over the whole period needs their number alone, and its runners read them."""
    stages: list[StudyFold] = []
    index = study_candles(study).index if study.walk_forward else None
    bars = len(index) if index is not None else study_bar_count(study)
    if bars == 0:
        raise ValueError("The range holds no candles.")
    if study.walk_forward:
        assert index is not None
        windows = fold_windows(
            index,
            end=study.end,
            mode=study.walk_forward["mode"],
            in_sample=parse_length(study.walk_forward["in_sample"]),
            out_of_sample=parse_length(study.walk_forward["out_of_sample"]),
            step=parse_length(study.walk_forward["step"]),
        )
        if not windows:
            raise ValueError("The walk-forward windows do not fit the candles of the range.")
        for window in windows:
            stages.append(
                StudyFold(
                    study=study,
                    role=FoldRole.FOLD,
                    index=window.index,
                    is_first_bar=window.is_start,
                    is_end_bar=window.is_end,
                    oos_end_bar=window.oos_end,
                    is_start=_ts(index, window.is_start, study.end),
                    is_end=_ts(index, window.is_end, study.end),
                    oos_start=_ts(index, window.is_end, study.end),
                    oos_end=_ts(index, window.oos_end, study.end),
                )
            )
    if study.compare_whole_period:
        stages.append(
            StudyFold(
                study=study,
                role=FoldRole.WHOLE,
                index=0,
                is_first_bar=0,
                is_end_bar=bars,
                is_start=study.start,
                is_end=study.end,
            )
        )
    for stage in stages:
        stage.optuna_study_name = f"{study.optuna_prefix}-{stage.role}-{stage.index}"
        stage.data_version = window_data_version(study, start=stage.is_start, end=stage.is_end)
        stage.fold_key = fold_key(study, stage)
    return stages


@transaction.atomic
def _folds_save(*, study_id: int, stages: list[StudyFold]) -> None:
    study = Study.objects.select_for_update().get(pk=study_id)
    if study.status != RunStatus.RUNNING or study.folds.exists():
        return  # cancelled meanwhile, or a redelivered launch whose folds are saved
    StudyFold.objects.bulk_create(stages)
    study.folds_total = sum(stage.role == FoldRole.FOLD for stage in stages)
    study.trials_total = study.n_trials * len(stages)
    study.save(update_fields=["folds_total", "trials_total"])


def _folds_ensure(study_id: int) -> bool:
    """Build and save the study's folds unless it has them (a launch lost before it saved
    them is finished this way); False when they cannot be built, and the study failed."""
    if StudyFold.objects.filter(study_id=study_id).exists():
        return True
    try:
        study = Study.objects.select_related("instrument").get(pk=study_id)
        _folds_save(study_id=study_id, stages=_folds_build(study))
    except Exception as exc:
        logger.exception("study %s could not start", study_id)
        study_fail(study_id=study_id, error=readable_error(exc))
        return False
    return True


def study_launch(*, study_id: int, task_id: str) -> None:
    """Start a queued study (the launch task's body): build its folds, then pump. A launch
    redelivered after its worker died finds the study running and carries on from there."""
    if _study_start(study_id=study_id, task_id=task_id) is None:
        mine = Study.objects.filter(pk=study_id, celery_task_id=task_id, status=RunStatus.RUNNING)
        if not mine.exists():
            return
    if _folds_ensure(study_id):
        study_pump(study_id=study_id)


# --- The pump -------------------------------------------------------------------------


@dataclass
class _Plan:
    study: Study
    again: bool = False
    batch: int = 1
    # The runner that called wants its next batch (the first batch claimed goes to it).
    for_runner: Runner | None = None
    mine: list[StudyTrial] = field(default_factory=list)
    dispatch: list[tuple[str, list[StudyTrial]]] = field(default_factory=list)
    # Folds whose trials have all finished, to append to Optuna before they close.
    sync: list[StudyFold] = field(default_factory=list)
    # Folds with trials in flight, whose Optuna record is brought up to date now and then.
    running: list[StudyFold] = field(default_factory=list)
    watch: bool = False
    # Trials answered without a backtest: their slots are free again.
    answered: int = 0


class _Batcher:
    """Deals queued trials into batches of `plan.batch`, under task ids: the first batch to
    the runner asking for one (its first trial running on it), the others to the queue."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.task_id = ""
        self.size = 0

    def assign(self, trial: StudyTrial, now: datetime) -> None:
        plan, runner = self.plan, self.plan.for_runner
        if not self.task_id or self.size >= plan.batch:
            self.size = 0
            if runner is not None and not plan.mine:
                self.task_id = runner.task_id
            else:
                self.task_id = str(uuid.uuid4())
                plan.dispatch.append((self.task_id, []))
        self.size += 1
        trial.celery_task_id = self.task_id
        trial.heartbeat_at = now
        if runner is not None and self.task_id == runner.task_id:
            if not plan.mine:
                # The runner goes straight on with it: it starts now.
                trial.state = TrialState.RUNNING
                trial.attempts += 1
                trial.worker = runner.worker[:200]
                trial.started_at = now
            plan.mine.append(trial)
        else:
            plan.dispatch[-1][1].append(trial)


def _reap_locked(study: Study, plan: _Plan) -> bool:
    """Trials whose heartbeat is stale: a lost running one is recorded failed; a queued one
    that never started goes to a new batch. True when there were any."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.STUDY_STALE_AFTER_SECONDS)
    stale = list(
        StudyTrial.objects.select_for_update()
        .filter(study=study, state__in=TRIAL_PENDING_STATES, heartbeat_at__lt=stale_before)
        .order_by("fold_id", "slot")
    )
    requeue: list[StudyTrial] = []
    for trial in stale:
        if trial.state == TrialState.QUEUED:
            # It may have been running unrecorded (services.trials.Runner.run): the lost
            # delivery counts as an attempt, so a trial that takes its worker down every
            # time is given up on (STUDY_MAX_ATTEMPTS).
            trial.attempts += 1
            requeue.append(trial)
            continue
        lost = (
            "The worker running this trial was lost."
            if trial.state == TrialState.RUNNING
            else "The process asking for this trial was lost."
        )
        trial_record_locked(study, trial=trial, outcome=TrialOutcome(TrialState.FAILED, error=lost))
    by_fold: dict[int, list[StudyTrial]] = {}
    for trial in requeue:
        by_fold.setdefault(trial.fold_id, []).append(trial)
    for rows in by_fold.values():
        plan.batch = batch_size(study, len(rows))
        batcher = _Batcher(plan)
        for trial in rows:
            batcher.assign(trial, now)
        for trial in rows:
            StudyTrial.objects.filter(pk=trial.pk).update(
                **{name: getattr(trial, name) for name in CLAIM_FIELDS}
            )
    return bool(stale)


# The fields a claim sets on a queued trial (beside its parameters).
CLAIM_FIELDS = ("celery_task_id", "heartbeat_at", "state", "attempts", "worker", "started_at")
# How often one process looks for lost trials while it pumps a study; the watch and the
# periodic reaper always look.
REAP_EVERY_SECONDS = 1.0
_reaped_at: dict[tuple[int, int], float] = {}


def _reap_due(study: Study) -> bool:
    key = (os.getpid(), study.pk)
    now = time.monotonic()
    every = min(REAP_EVERY_SECONDS, settings.STUDY_STALE_AFTER_SECONDS / 4)
    if now - _reaped_at.get(key, -math.inf) < every:
        return False
    if len(_reaped_at) > 1000:
        _reaped_at.clear()
    _reaped_at[key] = now
    return True


# The pump runs once a trial, and its two reads under the lock cost more in Django's query
# compiler than on the server (about 1 ms against 0.2-0.5 ms each, measured on
# PostgreSQL): they are written out once, and their rows still come back as models
# (RawQuerySet, with each field's conversion from the database).


@functools.cache
def _pump_reads(vendor: str) -> tuple[str, str]:
    quote = connection.ops.quote_name
    lock = connection.ops.for_update_sql() if connection.features.has_select_for_update else ""
    # Table and column names only: every value is a parameter.
    study = f"SELECT * FROM {quote(Study._meta.db_table)} WHERE {quote('id')} = %s {lock}"  # noqa: S608
    folds = (
        f"SELECT * FROM {quote(StudyFold._meta.db_table)} WHERE {quote('study_id')} = %s "  # noqa: S608
        f"AND {quote('status')} IN (%s, %s) ORDER BY {quote('role')}, {quote('index')}"
    )
    return study, folds


def _study_locked(study_id: int, runner: Runner | None) -> Study:
    """The study row, locked until the transaction ends. Its instrument is the runner's,
    which the runner's results are computed and keyed with; without a runner (a launch, a
    watch), it is read with the study."""
    if runner is None or runner.study.pk != study_id:
        return Study.objects.select_for_update().select_related("instrument").get(pk=study_id)
    found = list(Study.objects.raw(_pump_reads(connection.vendor)[0], [study_id]))
    if not found:
        raise Study.DoesNotExist(f"Study {study_id} does not exist.")
    study = found[0]
    if study.instrument_id == runner.study.instrument_id:
        study.instrument = runner.study.instrument
    return study


def _open_folds(study: Study) -> list[StudyFold]:
    """The folds not finished, in order."""
    sql = _pump_reads(connection.vendor)[1]
    folds = list(StudyFold.objects.raw(sql, [study.pk, RunStatus.QUEUED, RunStatus.RUNNING]))
    for fold in folds:
        fold.study = study
    return folds


def _in_flight(fold: StudyFold) -> int:
    """The fold's trials claimed and not yet recorded (queued or running): every trial
    claimed is counted in trials_claimed, and once recorded in trials_done, both under the
    study's lock (a trial cancelled with its study stops being counted: so does the fold)."""
    return fold.trials_claimed - fold.trials_done


def _fold_start_locked(study: Study, fold: StudyFold, plan: _Plan) -> bool:
    """Start a queued fold; False when the fold cache answered it (it is closed)."""
    cached = fold_cached(study, fold)
    if cached is not None:
        fold_materialise_locked(study, fold, cached)
        plan.again = True
        return False
    fold.status = RunStatus.RUNNING
    fold.started_at = timezone.now()
    fold.save(update_fields=["status", "started_at"])
    send_on_commit(study.pk, study_message(study, stage=fold))
    return True


def _claim_locked(
    study: Study, fold: StudyFold, *, wanted: int, plan: _Plan, writes: FoldWrites
) -> int:
    """Claim up to `wanted` trials of `fold` from its next slot on: ask each, answer at once
    those that need no backtest (infeasible, cached), queue the others in batches. Returns
    how many were queued; the fold's counters go to `writes`."""
    batcher = _Batcher(plan)
    answers = Answers(study, fold, writes)
    first = fold.trials_claimed
    queued: list[StudyTrial] = []
    rows: list[tuple[StudyTrial, Asked]] = []
    now = timezone.now()
    slot = first
    while len(queued) < wanted and slot < study.n_trials:
        # The first ask reads the fold's rows if another process wrote since; the next
        # ones know every row (those this loop creates are tied to their asks below, once
        # inserted).
        asked = trial_ask(study, fold, slot, refresh=slot == first)
        row = StudyTrial(
            study=study,
            fold=fold,
            slot=slot,
            number=slot,
            params=asked.params,
            sampler_attrs=asked.sampler_attrs,
            state=TrialState.QUEUED,
            heartbeat_at=now,
        )
        quick = trial_quick_outcome(study, fold, asked.params)
        if quick is None:
            batcher.assign(row, now)
            queued.append(row)
        else:
            answers.add(row, quick)
            plan.answered += 1
        rows.append((row, asked))
        slot += 1
    StudyTrial.objects.bulk_create([row for row, _ in rows])
    fold.trials_claimed += len(rows)
    writes.add(fold, ["trials_claimed"])
    answers.save()
    for row, asked in rows:
        trial_asked(study, fold, asked, row.pk, state=row.state, values=row.values)
    return len(queued)


@transaction.atomic
def _pump_plan_locked(
    study_id: int,
    *,
    runner: Runner | None,
    finished: list[tuple[StudyTrial, TrialOutcome]],
    more: bool,
    synced: set[int],
) -> _Plan | None:
    study = _study_locked(study_id, runner)
    outcomes_cache([outcome for _, outcome in finished])
    plan = _Plan(study=study, for_runner=runner if more else None)
    running = study.status == RunStatus.RUNNING
    folds = _open_folds(study) if running else []
    # The folds' counters and best so far, saved once, before anything else reads the folds.
    writes = FoldWrites()
    if finished and runner is not None:
        by_pk = {fold.pk: fold for fold in folds}
        recorded = trials_record_locked(
            study, finished, task_id=runner.task_id, folds=by_pk, writes=writes
        )
        for fold in folds:
            trials_told(fold, [trial for trial in recorded if trial.fold_id == fold.pk])
    if not running:
        writes.save()
        study_progress_save(study)
        return None
    reap = runner is None or _reap_due(study)
    if reap:
        writes.save()  # the reap reads the folds of the trials it records
    if reap and _reap_locked(study, plan):
        folds = _open_folds(study)
    if not folds:
        writes.save()
        study_progress_save(study)
        if not study.folds.exists():
            return None  # the launch has not saved the folds yet
        study_finish_locked(study)
        send_on_commit(study.pk, study_message(study, kind="final"))
        return None
    in_flight = sum(_in_flight(fold) for fold in folds)
    open_folds = []
    for fold in folds:
        if (
            fold.status == RunStatus.RUNNING
            and fold.trials_claimed >= study.n_trials
            and _in_flight(fold) == 0
        ):
            if fold.pk in synced:
                writes.save()
                fold_finish_locked(study, fold)
                plan.again = True
            else:
                plan.sync.append(fold)
        else:
            open_folds.append(fold)
    # Folds are claimed in order, and the next fold's trials start as soon as this one's
    # are all claimed: no runner waits for the slowest trial of a fold.
    unclaimed = next((study.n_trials - f.trials_claimed for f in open_folds), study.n_trials)
    plan.batch = batch_size(study, max(unclaimed, 0) + in_flight)
    free = study.parallelism * plan.batch - in_flight
    for fold in open_folds:
        if free > 0 and fold.trials_claimed < study.n_trials:
            if fold.status == RunStatus.QUEUED:
                writes.save()
                if not _fold_start_locked(study, fold, plan):
                    continue
            wanted = min(free, study.n_trials - fold.trials_claimed)
            free -= _claim_locked(study, fold, wanted=wanted, plan=plan, writes=writes)
        if fold.status == RunStatus.RUNNING:
            plan.running.append(fold)
    now = timezone.now()
    if (
        not plan.mine
        and not plan.dispatch
        and in_flight
        and (study.watch_until is None or study.watch_until < now)
    ):
        study.watch_until = now + timedelta(seconds=settings.STUDY_STALE_AFTER_SECONDS)
        plan.watch = True
    study.heartbeat_at = now
    writes.save()
    study_progress_save(study, "watch_until")
    return plan


def _pump_plan(
    study_id: int,
    *,
    runner: Runner | None,
    finished: list[tuple[StudyTrial, TrialOutcome]],
    more: bool,
    synced: set[int],
) -> _Plan | None:
    try:
        return _pump_plan_locked(
            study_id, runner=runner, finished=finished, more=more, synced=synced
        )
    except BaseException:
        histories_forget()  # they may hold asks whose rows were rolled back
        raise


def _carry_out(plan: _Plan, synced: set[int]) -> bool:
    """The plan's Optuna writes and dispatches, outside any transaction; True to go again."""
    for fold in plan.sync:
        optuna_sync(plan.study, fold)
        synced.add(fold.pk)
    for fold in plan.running:
        if optuna_sync_due(fold):
            try:
                optuna_sync(plan.study, fold)
            except Exception:  # the record catches up later; the fold's close insists
                logger.warning("study %s: Optuna's record lags", plan.study.pk, exc_info=True)
    for task_id, batch in plan.dispatch:
        trials_dispatch(
            study_id=plan.study.pk, trial_ids=[trial.pk for trial in batch], task_id=task_id
        )
    if plan.watch:
        watch_schedule(study_id=plan.study.pk, countdown=settings.STUDY_STALE_AFTER_SECONDS + 1)
    return plan.again or bool(plan.sync) or plan.answered > 0


def study_pump(
    *,
    study_id: int,
    runner: Runner | None = None,
    finished: list[tuple[StudyTrial, TrialOutcome]] | None = None,
    more: bool = False,
) -> list[StudyTrial]:
    """Move the study on as far as it can go now; see the module docstring.

    A runner passes the trials it `finished` last (their results cached and recorded
    here, in the same transaction as the next claims), and with `more` gets its
    next batch back, its first trial already running. A failure here (Optuna's storage, a
    fold's close) fails the study with a readable error."""
    synced: set[int] = set()
    try:
        for _ in range(PUMP_MAX_ROUNDS):
            plan = _pump_plan(
                study_id, runner=runner, finished=finished or [], more=more, synced=synced
            )
            finished = None
            if plan is None:
                return []
            go_on = _carry_out(plan, synced)
            if plan.mine:
                return plan.mine
            if not go_on:
                return []
    except Exception as exc:
        logger.exception("study %s: the pump failed", study_id)
        study_fail(study_id=study_id, error=readable_error(exc))
    return []


def study_watch(*, study_id: int) -> None:
    """The watch task's body: allow the next watch, and pump (which reaps stale trials)."""
    Study.objects.filter(pk=study_id).update(watch_until=None)
    study_pump(study_id=study_id)


def study_reap_stale() -> list[int]:
    """The periodic reaper: pump running studies that have been quiet for a stale period
    (their trials may have lost their workers), and launch again queued studies whose
    launch never started (lost with a worker before it acknowledged nothing)."""
    stale_before = timezone.now() - timedelta(seconds=settings.STUDY_STALE_AFTER_SECONDS)
    running = list(
        Study.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before).values_list(
            "pk", flat=True
        )
    )
    for study_id in running:
        if _folds_ensure(study_id):
            study_pump(study_id=study_id)
    queued = Study.objects.filter(status=RunStatus.QUEUED, created_at__lt=stale_before)
    for study in queued:
        with transaction.atomic():
            study_enqueue_on_commit(study_id=study.pk, task_id=study.celery_task_id)
    return running


# --- Cancel and fail ------------------------------------------------------------------


def _stop_locked(study: Study, *, status: str, error: str) -> list[str]:
    """Stop the locked study: unfinished folds and pending trials end with it. Returns the
    task ids that may still be queued."""
    now = timezone.now()
    pending = study.trials.filter(state__in=TRIAL_PENDING_STATES)
    task_ids = sorted({tid for tid in pending.values_list("celery_task_id", flat=True) if tid})
    pending.update(state=TrialState.CANCELLED, error=error, finished_at=now)
    study.folds.exclude(status__in=FINISHED_STATUSES).update(
        status=status, error=error, finished_at=now
    )
    study.status = status
    study.error = error
    study.finished_at = now
    study.save(update_fields=["status", "error", "finished_at"])
    send_on_commit(study.pk, study_message(study, kind="final"))
    cancel_cleanup_on_commit(study_id=study.pk, task_ids=task_ids)
    return task_ids


@transaction.atomic
def study_cancel(*, study: Study) -> Study:
    """Stop a queued or running study: trials not yet run are dropped, running ones stop
    at their next heartbeat and store nothing. Finished trials and folds stay."""
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if locked.status in FINISHED_STATUSES:
        raise BacktestConflict(f"Study {locked.pk} has already {locked.status}.")
    _stop_locked(locked, status=RunStatus.CANCELLED, error="Cancelled.")
    return locked


@transaction.atomic
def study_fail(*, study_id: int, error: str) -> None:
    """Fail an unfinished study; a finished one is left as it is."""
    study = Study.objects.select_for_update().filter(pk=study_id).first()
    if study is None or study.status in FINISHED_STATUSES:
        return
    _stop_locked(study, status=RunStatus.FAILED, error=error)


def study_cancel_cleanup(*, study_id: int) -> None:
    """Bring Optuna's record of a stopped study's folds up to date (the trials it left
    unfinished are cancelled, and recorded in Optuna as failed), so Optuna's tables hold
    every trial the study ran; best effort, one fold at a time."""
    study = Study.objects.filter(pk=study_id).first()
    if study is None:
        return
    folds = StudyFold.objects.filter(study=study, cache_hit=False, trials__isnull=False).distinct()
    for fold in folds:
        try:
            optuna_sync(study, fold)
        except Exception:  # a fold's record failing must not stop the others'
            logger.warning("study %s: Optuna's record of a fold failed", study_id, exc_info=True)
