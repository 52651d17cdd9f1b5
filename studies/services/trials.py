"""Running trials: a runner runs a batch of trials, each answered from the cache or
backtested, and records each one with the study's counters and the best so far; then it
takes the next batch the pump hands it, and so on for up to RUNNER_SLICE_SECONDS. A study's
trials thus flow through as many runners as it has parallel slots, with one short
transaction per trial and no round trip through the broker between batches.

A runner is the Celery task `run_trials`; the trials it runs carry its task id. Acknowledged
late: a worker process that dies mid-batch has the message redelivered under the same id,
and the batch it was given runs again (attempts counts the tries). Trials the runner took on
later are left running under its id: the pump finds their heartbeat gone cold, records the
one that was running as lost and hands the others to another runner. A message whose
trials have since been handed elsewhere finds none of its own and does nothing; a trial
recorded as lost while it was in fact still running keeps that record (a result is
recorded only on a trial still running under the task that ran it).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backtests.engine import HEADLINE_METRICS, BacktestConfig, EngineError, ParamValidationError
from backtests.models import RunStatus
from backtests.services import BacktestCancelled, readable_error, run_engine_config
from persistence.models import StorageFormat
from persistence.services import cache_peek_content, cache_store_many
from strategies.library.indicators import IndicatorCache
from strategies.library.registry import get_kind
from studies.evaluation import InfeasibleTrial, window_evaluate
from studies.models import Study, StudyFold, StudyTrial, TrialState
from studies.services.keys import TRIAL_CACHE_KIND, study_candles, trial_key
from studies.services.messages import send_on_commit, trial_message

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# Kept on each trial's row besides the headline metrics: WFE reads the annualised return.
ROW_METRICS = ("annualized_return_pct", "sharpe")
# A constraint on a metric the backtest leaves undefined counts as violated by this much.
UNDEFINED_CONSTRAINT = 1e300


def plain(value: Any) -> Any:
    """numpy scalars as Python values, non-finite floats as None: JSON any database takes."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass
class TrialOutcome:
    state: str
    params_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    values: list[float] | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    feasible: bool | None = None
    error: str = ""
    cache_hit: bool = False
    # The backtest's own time (window_evaluate), when one ran.
    engine_seconds: float | None = None
    # The result to cache under params_hash, not yet stored (outcomes_cache stores it).
    cache_content: bytes | None = field(default=None, repr=False)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def constraint_values(study: Study, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Optuna's constraint values, named "<metric> >= <min>" or "<metric> <= <max>": the
    amount by which each is violated, 0 or less when it holds."""
    found: dict[str, float] = {}
    for constraint in study.constraints:
        metric = constraint["metric"]
        value = _number(metrics.get(metric))
        if constraint.get("min") is not None:
            bound = float(constraint["min"])
            found[f"{metric} >= {constraint['min']}"] = (
                bound - value if value is not None else UNDEFINED_CONSTRAINT
            )
        if constraint.get("max") is not None:
            bound = float(constraint["max"])
            found[f"{metric} <= {constraint['max']}"] = (
                value - bound if value is not None else UNDEFINED_CONSTRAINT
            )
    return found


def _row_metrics(study: Study, metrics: Mapping[str, Any]) -> dict[str, Any]:
    names = [*HEADLINE_METRICS, *ROW_METRICS]
    names += [objective["metric"] for objective in study.objectives]
    names += [constraint["metric"] for constraint in study.constraints]
    return {name: plain(metrics.get(name)) for name in dict.fromkeys(names)}


def _scored(study: Study, outcome: TrialOutcome, metrics: Mapping[str, Any]) -> TrialOutcome:
    """A computed or cached result turned into objective values and constraints; an
    objective the backtest leaves undefined (a Sharpe ratio without returns) makes the
    trial infeasible rather than failed: a sampler should learn to avoid such parameters."""
    outcome.metrics = _row_metrics(study, metrics)
    values = []
    for objective in study.objectives:
        value = _number(metrics.get(objective["metric"]))
        if value is None:
            outcome.state = TrialState.INFEASIBLE
            outcome.error = (
                f"{objective['metric']} is undefined for these parameters "
                "(no trade, or no variation in the returns)."
            )
            return outcome
        values.append(value)
    outcome.values = values
    outcome.constraints = constraint_values(study, metrics)
    outcome.feasible = all(v <= 0 for v in outcome.constraints.values())
    outcome.state = TrialState.COMPLETE
    return outcome


def trial_quick_outcome(
    study: Study, fold: StudyFold, params: Mapping[str, Any]
) -> TrialOutcome | None:
    """The outcome known without a backtest: infeasible by the kind's rules, or cached.
    None when the trial has to run."""
    full = {**study.parameters, **params}
    try:
        get_kind(study.kind).validate(full)
    except ParamValidationError as exc:
        return TrialOutcome(
            state=TrialState.INFEASIBLE,
            error="; ".join(f"{name}: {' '.join(m)}" for name, m in exc.errors.items()),
        )
    if not study.use_cache:
        return None
    key = trial_key(study, fold, full)
    metrics = _recent_metrics.get(key)
    if metrics is None:
        content = cache_peek_content(kind=TRIAL_CACHE_KIND, params_hash=key)
        if content is None:
            return None
        metrics = _remember(key, json.loads(content)["metrics"])
    return _scored(study, TrialOutcome(TrialState.COMPLETE, key, cache_hit=True), metrics)


# The metrics of trial results this process cached or read lately, by key: a sampler that
# proposes a point again (TPE does, once it converges) is answered without a read. A key
# names its inputs completely, so what it holds never goes stale.
RECENT_RESULTS = 4096
_recent_metrics: OrderedDict[str, dict[str, Any]] = OrderedDict()


def _remember(key: str, metrics: dict[str, Any]) -> dict[str, Any]:
    _recent_metrics[key] = metrics
    _recent_metrics.move_to_end(key)
    while len(_recent_metrics) > RECENT_RESULTS:
        _recent_metrics.popitem(last=False)
    return metrics


def trial_compute(
    study: Study,
    fold: StudyFold,
    params: Mapping[str, Any],
    *,
    candles: pd.DataFrame,
    config: BacktestConfig | None = None,
    indicators: IndicatorCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrialOutcome:
    """Backtest one trial on its fold's window and score it.

    The result is for the cache whatever becomes of the study: the outcome carries it, and
    outcomes_cache stores it (with the other trials recorded at the same time, in one
    write). Raises BacktestCancelled when `progress` finds the study cancelled.
    """
    full = {**study.parameters, **params}
    key = trial_key(study, fold, full)
    began = time.perf_counter()
    try:
        evaluated = window_evaluate(
            candles,
            study.kind,
            full,
            config or run_engine_config(study),
            start=fold.is_first_bar,
            end=fold.is_end_bar,
            periods=settings.STUDY_RETURN_PERIODS,
            cache=indicators,
            progress=progress,
        )
    except InfeasibleTrial as exc:
        return TrialOutcome(TrialState.INFEASIBLE, key, error=str(exc))
    except BacktestCancelled:
        raise
    except (EngineError, ParamValidationError, SoftTimeLimitExceeded) as exc:
        return TrialOutcome(TrialState.FAILED, key, error=readable_error(exc))
    except Exception as exc:
        logger.exception("study %s: trial failed", study.pk)
        return TrialOutcome(TrialState.FAILED, key, error=readable_error(exc))
    seconds = time.perf_counter() - began
    metrics = _remember(key, plain(evaluated.metrics))
    content = json.dumps({"metrics": metrics, "returns": evaluated.returns}).encode()
    outcome = TrialOutcome(TrialState.COMPLETE, key, engine_seconds=seconds, cache_content=content)
    return _scored(study, outcome, metrics)


def outcomes_cache(outcomes: list[TrialOutcome]) -> None:
    """Store the results `outcomes` carry for the cache, in one write. Called in the
    transaction that records them (one commit less a trial); a result is valid whatever
    becomes of the study's records, but one lost with a failed transaction is only
    computed again."""
    contents = {}
    for outcome in outcomes:
        if outcome.cache_content is not None:
            contents[outcome.params_hash] = outcome.cache_content
            outcome.cache_content = None
    if contents:
        cache_store_many(kind=TRIAL_CACHE_KIND, contents=contents, format=StorageFormat.JSON)


# --- Recording ------------------------------------------------------------------------

# The study's fields a recorded trial changes (saved once per transaction).
STUDY_PROGRESS_FIELDS = [
    "trials_done",
    "trials_cached",
    "trials_failed",
    "progress",
    "heartbeat_at",
    "best_values",
    "best_trial_number",
    "best_parameters",
]


def study_progress_save(study: Study, *also: str) -> None:
    """Save the study's progress fields (and `also`) with an UPDATE: no signal, so no audit
    entry, which counters and the best so far do not deserve (studies.apps)."""
    fields = [*STUDY_PROGRESS_FIELDS, *also]
    Study.objects.filter(pk=study.pk).update(**{name: getattr(study, name) for name in fields})


def _better(values: list[float], than: list[float] | None, direction: str) -> bool:
    if than is None:
        return True
    return values[0] > than[0] if direction == "maximize" else values[0] < than[0]


RECORDED_FIELDS = (
    "state",
    "worker",
    "attempts",
    "metrics",
    "values",
    "constraint_values",
    "feasible",
    "error",
    "cache_hit",
    "params_hash",
    "finished_at",
    "started_at",
    "duration_seconds",
    "engine_seconds",
    "heartbeat_at",
)


def _trial_fill(trial: StudyTrial, outcome: TrialOutcome, now: datetime) -> None:
    trial.state = outcome.state
    trial.metrics = outcome.metrics
    trial.values = outcome.values
    trial.constraint_values = outcome.constraints
    trial.feasible = outcome.feasible
    trial.error = outcome.error
    trial.cache_hit = outcome.cache_hit
    trial.engine_seconds = outcome.engine_seconds
    if outcome.params_hash:
        trial.params_hash = outcome.params_hash
    trial.finished_at = now
    if trial.started_at is None:
        trial.started_at = now
    trial.duration_seconds = (now - trial.started_at).total_seconds()
    trial.heartbeat_at = now


def _trial_tally(
    study: Study, trial: StudyTrial, outcome: TrialOutcome, fold: StudyFold, now: datetime
) -> list[str]:
    """Add a recorded trial to its fold's and the study's counters and best so far (in
    memory); the fold's fields it changed."""
    study.trials_done += 1
    study.trials_cached += int(outcome.cache_hit)
    study.trials_failed += int(outcome.state == TrialState.FAILED)
    study.progress = min(99.0, 100.0 * study.trials_done / max(study.trials_total, 1))
    study.heartbeat_at = now
    fold.trials_done += 1
    fold_fields = ["trials_done"]
    if (
        outcome.state == TrialState.COMPLETE
        and outcome.feasible
        and outcome.values is not None
        and _better(outcome.values, fold.best_values, study.objectives[0]["direction"])
    ):
        fold.best_values, fold.best_trial_number = outcome.values, trial.number
        study.best_values, study.best_trial_number = outcome.values, trial.number
        study.best_parameters = {**study.parameters, **trial.params}
        fold_fields += ["best_values", "best_trial_number"]
    return fold_fields


def _fold_save(fold: StudyFold, fields: Iterable[str]) -> None:
    StudyFold.objects.filter(pk=fold.pk).update(**{name: getattr(fold, name) for name in fields})


class FoldWrites:
    """Fold fields changed in memory under the study's lock, saved later in one UPDATE per
    fold: the pump records a trial and claims the next of the same fold in one transaction.
    The caller saves before anything else reads or writes those folds."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[StudyFold, set[str]]] = {}

    def add(self, fold: StudyFold, fields: Iterable[str]) -> None:
        self.pending.setdefault(fold.pk, (fold, set()))[1].update(fields)

    def save(self) -> None:
        for fold, fields in self.pending.values():
            _fold_save(fold, fields)
        self.pending.clear()


def trial_record_locked(
    study: Study,
    *,
    trial: StudyTrial,
    outcome: TrialOutcome,
    fold: StudyFold | None = None,
    running_under: str | None = None,
    writes: FoldWrites | None = None,
) -> bool:
    """Record `outcome` on `trial` (saved, or created if it has no id yet) and add it to its
    fold's counters and best so far, and to the study's. The caller holds the study's lock
    (which every writer of a study's trials takes, so `fold`, read under it, is current)
    and saves the study's STUDY_PROGRESS_FIELDS once. With `running_under`, the trial is
    recorded only if its row is still queued or running under that task id (a runner
    starts the trials of a batch without a write each: see Runner.run); False if it was
    not. The fold's fields are saved at once, or added to `writes`. Tells the study's group
    on commit."""
    now = timezone.now()
    _trial_fill(trial, outcome, now)
    if trial.pk is None:
        trial.save()
    else:
        rows = StudyTrial.objects.filter(pk=trial.pk)
        if running_under is not None:
            rows = rows.filter(
                state__in=[TrialState.QUEUED, TrialState.RUNNING], celery_task_id=running_under
            )
        if not rows.update(**{name: getattr(trial, name) for name in RECORDED_FIELDS}):
            return False
    fold = fold if fold is not None else StudyFold.objects.get(pk=trial.fold_id)
    changed = _trial_tally(study, trial, outcome, fold, now)
    if writes is None:
        _fold_save(fold, changed)
    else:
        writes.add(fold, changed)
    send_on_commit(study.pk, trial_message(study, trial, fold))
    return True


class Answers:
    """Trials of one fold answered as they are claimed (infeasible, or cached), recorded
    together: `add` each (in memory, counted in the fold's and the study's progress, the
    fold's fields added to `writes`), then `save` once their rows are inserted (with the
    fold's queued ones, in one insert): each trial told to the study's group on commit.
    The caller holds the study's lock and saves the study's STUDY_PROGRESS_FIELDS and
    `writes` (after the insert)."""

    def __init__(self, study: Study, fold: StudyFold, writes: FoldWrites) -> None:
        self.study, self.fold, self.writes = study, fold, writes
        self.told: list[tuple[StudyTrial, dict[str, Any]]] = []

    def add(self, trial: StudyTrial, outcome: TrialOutcome) -> None:
        now = timezone.now()
        _trial_fill(trial, outcome, now)
        self.writes.add(self.fold, _trial_tally(self.study, trial, outcome, self.fold, now))
        # The message as it stands now (the progress it reports); the id once inserted.
        self.told.append((trial, trial_message(self.study, trial, self.fold)))

    def save(self) -> None:
        for trial, payload in self.told:
            payload["trial"]["id"] = trial.pk
            send_on_commit(self.study.pk, payload)


def trial_record_if(
    study: Study, *, trial_id: int, outcome: TrialOutcome, expect: Callable[[StudyTrial], bool]
) -> StudyTrial | None:
    """Record `outcome` on the trial if `expect(row)` still holds under the row's lock (it
    is in the state, and under the task id, of whoever ran it); None if it did not. The
    caller holds the study's lock and saves it."""
    trial = StudyTrial.objects.select_for_update().filter(pk=trial_id).first()
    if trial is None or not expect(trial):
        return None
    trial_record_locked(study, trial=trial, outcome=outcome)
    return trial


@transaction.atomic
def trial_finish(
    *, study_id: int, trial_id: int, outcome: TrialOutcome, expect: Callable[[StudyTrial], bool]
) -> StudyTrial | None:
    """trial_record_if in a transaction of its own, under the study's lock."""
    study = Study.objects.select_for_update().get(pk=study_id)
    trial = trial_record_if(study, trial_id=trial_id, outcome=outcome, expect=expect)
    if trial is not None:
        study_progress_save(study)
    return trial


def trial_start_locked(trial: StudyTrial, *, task_id: str, worker: str) -> bool:
    """Mark `trial` running on `worker` if it is still queued (or running, redelivered)
    under `task_id`; `trial` is updated to match. The caller holds the study's lock."""
    now = timezone.now()
    started = StudyTrial.objects.filter(
        pk=trial.pk,
        celery_task_id=task_id,
        state__in=[TrialState.QUEUED, TrialState.RUNNING],
    ).update(
        state=TrialState.RUNNING,
        attempts=F("attempts") + 1,
        worker=worker[:200],
        started_at=now,
        heartbeat_at=now,
    )
    if started:
        trial.state = TrialState.RUNNING
        trial.attempts += 1
        trial.worker = worker[:200]
        trial.started_at = trial.heartbeat_at = now
    return bool(started)


@transaction.atomic
def trial_start(*, study_id: int, trial_id: int, task_id: str, worker: str) -> StudyTrial | None:
    """Mark one queued trial running under `task_id` on `worker`, in a transaction of its
    own; None when it is no longer queued under that task."""
    Study.objects.select_for_update().get(pk=study_id)
    trial = StudyTrial.objects.filter(pk=trial_id).first()
    if trial is None or not trial_start_locked(trial, task_id=task_id, worker=worker):
        return None
    return trial


@dataclass
class _Step:
    stopped: bool = False
    started: StudyTrial | None = None


def trials_record_locked(
    study: Study,
    finished: list[tuple[StudyTrial, TrialOutcome]],
    *,
    task_id: str,
    folds: Mapping[int, StudyFold] | None = None,
    writes: FoldWrites | None = None,
) -> list[StudyTrial]:
    """Record the trials a runner `finished` (those still queued or running under its
    task); the ones recorded. `folds` by id, when the caller has read them under the lock
    (their counters are updated in place), else they are read here; their fields are saved
    at once, or added to `writes`. The caller holds the study's lock and saves it."""
    if folds is None:
        folds = StudyFold.objects.in_bulk({trial.fold_id for trial, _ in finished})
    recorded = []
    for trial, outcome in finished:
        fold = folds.get(trial.fold_id)
        if trial_record_locked(
            study, trial=trial, outcome=outcome, fold=fold, running_under=task_id, writes=writes
        ):
            recorded.append(trial)
    return recorded


@transaction.atomic
def _step(
    *,
    study_id: int,
    task_id: str,
    worker: str,
    finished: list[tuple[StudyTrial, TrialOutcome]],
    upcoming: list[StudyTrial],
) -> _Step:
    """One transaction between two trials of a batch: record those finished since the last
    step, start the next of `upcoming` still queued under this task (those passed over are
    removed)."""
    study = Study.objects.select_for_update().get(pk=study_id)
    outcomes_cache([outcome for _, outcome in finished])
    recorded = bool(trials_record_locked(study, finished, task_id=task_id))
    step = _Step(stopped=study.status != RunStatus.RUNNING)
    while upcoming and not step.stopped:
        trial = upcoming.pop(0)
        if trial_start_locked(trial, task_id=task_id, worker=worker):
            step.started = trial
            study.heartbeat_at = trial.started_at
            break
    if recorded or step.started is not None:
        study_progress_save(study)
    return step


# --- The runner -----------------------------------------------------------------------

# A runner takes no new batch after this long, and leaves the study's next batches to the
# queue: the worker serves other work in turn, and a task stays well inside its time limit.
RUNNER_SLICE_SECONDS = min(300.0, settings.CELERY_TASK_SOFT_TIME_LIMIT / 4)
# A trial that starts within this long of the runner's last record starts without a write
# of its own, and is recorded with the next ones: short trials (a walk-forward's windows)
# share one transaction and one cache write. A lost worker loses them with its running
# trial: their rows are still queued, and go to another runner.
RECORD_EVERY_SECONDS = 0.25
# Indicator arrays a runner keeps for one window, in bytes: the trials of a fold share their
# moving averages (as a sweep's combinations do) within this budget.
INDICATOR_BUDGET_BYTES = 128 * 2**20


class _Heartbeat:
    """The runner's sign of life, and its cancellation check: at most every
    STUDY_HEARTBEAT_SECONDS, from the engine's progress callback and between trials."""

    def __init__(self, study_id: int, task_id: str) -> None:
        self.study_id = study_id
        self.task_id = task_id
        self.last = time.monotonic()

    def __call__(self, done: int = 0, total: int = 0) -> None:
        now = time.monotonic()
        if now - self.last < settings.STUDY_HEARTBEAT_SECONDS:
            return
        self.last = now
        StudyTrial.objects.filter(
            celery_task_id=self.task_id, state__in=[TrialState.QUEUED, TrialState.RUNNING]
        ).update(heartbeat_at=timezone.now())
        status = Study.objects.filter(pk=self.study_id).values_list("status", flat=True).first()
        if status != RunStatus.RUNNING:
            raise BacktestCancelled


class Runner:
    """What one runner keeps from batch to batch: the study, its candles and engine
    configuration, and the indicators of the window it is working on."""

    def __init__(self, study: Study, *, task_id: str, worker: str) -> None:
        self.study = study
        self.task_id = task_id
        self.worker = worker
        self.heartbeat = _Heartbeat(study.pk, task_id)
        self._candles: pd.DataFrame | None = None
        self._config: BacktestConfig | None = None
        self._window: tuple[int, int] | None = None
        self._indicators = IndicatorCache()
        self.recorded_at = time.monotonic()
        # Trials run before (a lost worker's, redelivered) are each recorded running
        # before they start: one that takes its worker down every time is found out
        # (STUDY_MAX_ATTEMPTS), never run again unrecorded.
        self.record_every = RECORD_EVERY_SECONDS

    @property
    def candles(self) -> pd.DataFrame:
        if self._candles is None:
            self._candles = study_candles(self.study)
        return self._candles

    def indicators(self, fold: StudyFold) -> IndicatorCache:
        # An indicator cache belongs to one window (studies.evaluation).
        window = (fold.is_first_bar, fold.is_end_bar)
        per_entry = 8 * max(fold.is_end_bar - fold.is_first_bar, 1) * 1.2
        if window != self._window or len(self._indicators) * per_entry > INDICATOR_BUDGET_BYTES:
            self._window = window
            self._indicators = IndicatorCache()
        return self._indicators

    def outcome(self, trial: StudyTrial) -> TrialOutcome:
        if trial.attempts > settings.STUDY_MAX_ATTEMPTS:
            return TrialOutcome(
                TrialState.FAILED,
                error=f"Gave up after {trial.attempts - 1} attempts: "
                "the worker was lost each time.",
            )
        fold = trial.fold
        if trial.attempts > 1:
            # Run before by a worker that was lost: that run may have cached its result.
            quick = trial_quick_outcome(self.study, fold, trial.params)
            if quick is not None:
                return quick
        if self._config is None:
            self._config = run_engine_config(self.study)
        return trial_compute(
            self.study,
            fold,
            trial.params,
            candles=self.candles,
            config=self._config,
            indicators=self.indicators(fold),
            progress=self.heartbeat,
        )

    def run(
        self, batch: list[StudyTrial], *, started: bool
    ) -> list[tuple[StudyTrial, TrialOutcome]]:
        """Run `batch` (its first trial already marked running when `started`). Trials
        finished are recorded as the next one starts, in one transaction, which marks that
        one running; within RECORD_EVERY_SECONDS of the last record, the next one starts
        without it. The trials finished and not yet recorded are returned for the pump to
        record."""
        if any(trial.attempts > int(started and i == 0) for i, trial in enumerate(batch)):
            self.record_every = 0.0  # a trial of it was started before (see __init__)
        upcoming = list(batch)
        finished: list[tuple[StudyTrial, TrialOutcome]] = []
        current = upcoming.pop(0) if started else self._step(finished, upcoming)
        while current is not None:
            self.heartbeat()
            finished.append((current, self.outcome(current)))
            if not upcoming:
                break
            if time.monotonic() - self.recorded_at < self.record_every:
                current = self._start_unrecorded(upcoming.pop(0))
            else:
                current = self._step(finished, upcoming)
                finished = []
        return finished

    def _start_unrecorded(self, trial: StudyTrial) -> StudyTrial:
        """Start `trial` as trial_start_locked would, in memory only: its row stays queued
        under this task until it is recorded."""
        trial.state = TrialState.RUNNING
        trial.attempts += 1
        trial.worker = self.worker[:200]
        trial.started_at = trial.heartbeat_at = timezone.now()
        return trial

    def _step(
        self, finished: list[tuple[StudyTrial, TrialOutcome]], upcoming: list[StudyTrial]
    ) -> StudyTrial | None:
        self.recorded_at = time.monotonic()
        step = _step(
            study_id=self.study.pk,
            task_id=self.task_id,
            worker=self.worker,
            finished=finished,
            upcoming=upcoming,
        )
        if step.stopped:
            raise BacktestCancelled
        return step.started


def trials_execute(*, study_id: int, trial_ids: list[int], task_id: str, worker: str) -> None:
    """Run the batch `task_id` and the batches the pump hands on (the Celery task's body);
    see the module docstring."""
    from studies.services.driver import study_pump

    study = Study.objects.select_related("instrument").filter(pk=study_id).first()
    if study is None or study.status != RunStatus.RUNNING:
        return
    batch = list(
        StudyTrial.objects.select_related("fold")
        .filter(
            pk__in=trial_ids,
            celery_task_id=task_id,
            state__in=[TrialState.QUEUED, TrialState.RUNNING],
        )
        .order_by("slot")
    )
    if not batch:
        return
    runner = Runner(study, task_id=task_id, worker=worker)
    slice_ends = time.monotonic() + RUNNER_SLICE_SECONDS
    started = False
    try:
        while batch:
            finished = runner.run(batch, started=started)
            batch = study_pump(
                study_id=study_id,
                runner=runner,
                finished=finished,
                more=time.monotonic() < slice_ends,
            )
            started = True
        return
    except BacktestCancelled:
        logger.info("study %s: runner %s stopped, the study was cancelled", study_id, task_id)
        return
    except Exception as exc:
        # Not one trial's failure (those are recorded as such): the candles could not be
        # read, or the database is away. The runner's unfinished trials fail with it.
        logger.exception("study %s: runner %s failed", study_id, task_id)
        _batch_fail(study_id=study_id, task_id=task_id, error=readable_error(exc))
    study_pump(study_id=study_id)


def _batch_fail(*, study_id: int, task_id: str, error: str) -> None:
    left = StudyTrial.objects.filter(
        celery_task_id=task_id, state__in=[TrialState.QUEUED, TrialState.RUNNING]
    ).values_list("pk", flat=True)
    for trial_id in left:
        trial_finish(
            study_id=study_id,
            trial_id=trial_id,
            outcome=TrialOutcome(TrialState.FAILED, error=error),
            expect=lambda row: (
                row.celery_task_id == task_id
                and row.state in (TrialState.QUEUED, TrialState.RUNNING)
            ),
        )
