"""Asking for trials, and Optuna's record of them.

Asking. Every slot the pump claims gets its parameters here, inside the pump's transaction,
without a round trip to Optuna's tables:

- grid: the slot-th point of the grid as Optuna's GridSampler shuffles it with the study's
  seed (its trial n takes point n), so parallel claims never repeat a point;
- random: drawn by a RandomSampler seeded for the slot (studies.search.trial_seed);
- tpe, nsga2: asked of Optuna's sampler on an in-memory study holding the fold's trials as
  this app's rows have them (trials in flight anywhere are running trials there, which
  TPE's constant liar counts as poor results). The in-memory study is kept in this process
  and brought up to date from the rows before each ask. The rows are the state every worker
  shares; a sampler asked by any process sees what every process recorded. The fold's
  counters (trials claimed, trials done: every writer of a study's trials changes them
  under the study's lock) tell whether another process has written since: a process that
  wrote the last trials itself (trial_asked, trials_told) asks without reading the rows,
  at the cost of the sampler's own work alone.

Recording. Optuna's tables receive each fold's finished trials in bulk, in slot order
(Optuna's trial number is the slot): `optuna_sync` appends the finished trials that follow
those Optuna already has, up to the first one still pending, so Optuna's numbering has no
gap. The pump syncs a fold before closing it, so a closed fold's Optuna study is complete;
runners sync their folds now and then while they go, for anyone watching in Optuna's tools.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import optuna
from django.db.models import Q
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from studies.models import TRIAL_PENDING_STATES, SamplerName, Study, StudyFold, StudyTrial
from studies.models import TrialState as RowState
from studies.search import distributions, grid_values, sampler_build, trial_seed
from studies.storage import optuna_trial_count, optuna_trials_append

OPTUNA_STATES = {
    RowState.COMPLETE: OptunaState.COMPLETE,
    # Infeasible parameters are pruned trials: the samplers learn to avoid them.
    RowState.INFEASIBLE: OptunaState.PRUNED,
    RowState.FAILED: OptunaState.FAIL,
    RowState.CANCELLED: OptunaState.FAIL,
}
# Optuna's system attribute of one constraint (optuna.trial.Trial.set_constraint).
CONSTRAINT_ATTR = "constraints:{}"
# A fold's running trials are appended to Optuna's tables at most this often by one process
# (each append costs a transaction on Optuna's tables; a fold's close always appends).
OPTUNA_SYNC_SECONDS = 30.0
# In-memory histories kept per process: a worker goes through a study's folds in order.
MAX_HISTORIES = 16


def params_plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's parameter values as JSON-ready Python values."""
    return {
        name: value.item() if hasattr(value, "item") else value for name, value in params.items()
    }


def optuna_state(state: str) -> OptunaState:
    return OPTUNA_STATES.get(RowState(state), OptunaState.RUNNING)


@functools.lru_cache(maxsize=32)
def _space(space_json: str) -> dict[str, BaseDistribution]:
    return distributions(json.loads(space_json))


def study_distributions(study: Study) -> dict[str, BaseDistribution]:
    return _space(json.dumps(study.search_space, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _grid(space_json: str, seed: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    # GridSampler's order: names sorted, their product, shuffled by numpy's RandomState
    # seeded as GridSampler seeds it.
    grid = grid_values(json.loads(space_json))
    names = sorted(grid)
    points = list(itertools.product(*(grid[name] for name in names)))
    np.random.RandomState(seed or 0).shuffle(points)  # type: ignore[arg-type]
    return names, points


def _random_point(study: Study, fold: StudyFold, slot: int) -> dict[str, Any]:
    sampler = optuna.samplers.RandomSampler(
        seed=trial_seed(study.seed, fold.role, fold.index, slot)
    )
    # The random sampler draws each parameter from its own generator alone: no study needed.
    return {
        name: sampler.sample_independent(None, None, name, distribution)  # type: ignore[arg-type]
        for name, distribution in study_distributions(study).items()
    }


# --- The adaptive samplers' history -----------------------------------------------------


class _History:
    """A fold's trials as an in-memory Optuna study, kept up to date from the rows."""

    def __init__(self, study: Study, fold: StudyFold) -> None:
        self.fold_id = fold.pk
        self.memory = optuna.create_study(
            directions=[objective["direction"] for objective in study.objectives],
            storage=optuna.storages.InMemoryStorage(),
            sampler=optuna.samplers.RandomSampler(),
        )
        self.space = study_distributions(study)
        # Row id -> (the in-memory trial id, whether the row had finished when last read).
        self.rows: dict[int, tuple[int, bool]] = {}
        self.last_row = 0
        # The fold's (trials_claimed, trials_done) the in-memory study matches; None when
        # unknown (read the rows).
        self.version: tuple[int, int] | None = None

    def current(self, fold: StudyFold) -> bool:
        return self.version == _counters(fold)

    def refresh(self) -> None:
        """Read the rows created since the last refresh and those that were still pending.
        Rows are created under the study row's lock, so ids grow in commit order."""
        pending = [pk for pk, (_, finished) in self.rows.items() if not finished]
        rows = StudyTrial.objects.filter(fold_id=self.fold_id).filter(
            Q(pk__gt=self.last_row) | Q(pk__in=pending)
        )
        storage = self.memory._storage
        study_id = self.memory._study_id
        for pk, state, params, values, attrs in rows.values_list(
            "pk", "state", "params", "values", "sampler_attrs"
        ).order_by("pk"):
            self.last_row = max(self.last_row, pk)
            new_state = optuna_state(state)
            known = self.rows.get(pk)
            if known is None:
                if not params:
                    continue  # claimed before the sampler answered: nothing to learn yet
                trial = _frozen(self.space, new_state, params, values, attrs)
                trial_id = storage.create_new_trial(study_id, template_trial=trial)
                self.rows[pk] = (trial_id, new_state.is_finished())
            elif not known[1] and new_state.is_finished():
                self.finish(pk, new_state, values)

    def finish(self, row: int, state: OptunaState, values: list[float] | None) -> None:
        """Row `row`, known running here, has finished in `state` with `values`."""
        trial_id = self.rows[row][0]
        self.memory._storage.set_trial_state_values(
            trial_id, state, values if state == OptunaState.COMPLETE else None
        )
        self.rows[row] = (trial_id, True)

    def ask(self, sampler: optuna.samplers.BaseSampler) -> Asked:
        self.memory.sampler = sampler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.memory.ask(fixed_distributions=self.space)
        attrs = self.memory._storage.get_trial_system_attrs(trial._trial_id)
        return Asked(params_plain(trial.params), dict(attrs), memory_trial=trial._trial_id)


def _frozen(
    space: Mapping[str, BaseDistribution],
    state: OptunaState,
    params: Mapping[str, Any],
    values: list[float] | None,
    system_attrs: Mapping[str, Any],
) -> FrozenTrial:
    return optuna.trial.create_trial(
        state=state,
        params={name: value for name, value in params.items() if name in space},
        distributions={name: space[name] for name in params if name in space},
        values=values if state == OptunaState.COMPLETE else None,
        system_attrs=dict(system_attrs),
    )


def _counters(fold: StudyFold) -> tuple[int, int]:
    return (fold.trials_claimed, fold.trials_done)


_histories: dict[tuple[int, str, int], _History] = {}


def _history_key(fold: StudyFold) -> tuple[int, str, int]:
    return (os.getpid(), fold.optuna_study_name, fold.pk)


def _history(study: Study, fold: StudyFold) -> _History:
    key = _history_key(fold)
    found = _histories.get(key)
    if found is None:
        if len(_histories) >= MAX_HISTORIES:
            _histories.clear()
        found = _histories[key] = _History(study, fold)
    return found


def histories_forget() -> None:
    """Drop this process's histories: a transaction that asked has rolled back, and they
    may hold trials whose rows were never committed."""
    _histories.clear()


# --- Asking ---------------------------------------------------------------------------


@dataclass
class Asked:
    params: dict[str, Any]
    sampler_attrs: dict[str, Any]
    memory_trial: int | None = None


def trial_ask(study: Study, fold: StudyFold, slot: int, *, refresh: bool = True) -> Asked:
    """The parameters of the fold's trial in `slot`; see the module docstring. Called
    under the study row's lock, with the rows claimed before it in this transaction.

    The rows are read again when the fold's counters show writes this process has not
    seen. `refresh=False` skips that check: only for the asks after the first in one
    claim, whose rows are created after the asks (trial_asked); every writer of a study's
    trials holds its lock, so no other process has changed them meanwhile."""
    if study.sampler == SamplerName.GRID:
        names, points = _grid(json.dumps(study.search_space, sort_keys=True), study.seed)
        return Asked(dict(zip(names, points[slot % len(points)], strict=True)), {})
    if study.sampler == SamplerName.RANDOM:
        return Asked(params_plain(_random_point(study, fold, slot)), {})
    history = _history(study, fold)
    if history.version is None or (refresh and not history.current(fold)):
        history.refresh()
        history.version = _counters(fold)
    return history.ask(
        sampler_build(
            study.sampler,
            space=study.search_space,
            seed=trial_seed(study.seed, fold.role, fold.index, slot),
            n_trials=study.n_trials,
            parallelism=study.parallelism,
        )
    )


def trial_asked(
    study: Study,
    fold: StudyFold,
    asked: Asked,
    trial_id: int,
    *,
    state: str = RowState.QUEUED,
    values: list[float] | None = None,
) -> None:
    """Tie the in-memory trial an ask created to the row saved for it, in `state` (a trial
    answered at once, from the cache or infeasible, is finished already); the row counts
    in the fold's trials_claimed (and trials_done when finished)."""
    if asked.memory_trial is None:
        return
    history = _history(study, fold)
    known = optuna_state(state)
    history.rows[trial_id] = (asked.memory_trial, False)
    if known.is_finished():
        history.finish(trial_id, known, values)
    history.last_row = max(history.last_row, trial_id)
    if history.version is not None:
        claimed, done = history.version
        history.version = (claimed + 1, done + int(known.is_finished()))


def trials_told(fold: StudyFold, trials: list[StudyTrial]) -> None:
    """`trials` of `fold`, recorded by this process under the study's lock (counted in the
    fold's trials_done): its history, if it knew everything before them, learns their
    results without reading them back."""
    history = _histories.get(_history_key(fold))
    if history is None or not trials:
        return
    claimed, done = _counters(fold)
    if history.version != (claimed, done - len(trials)):
        return  # it has missed other writes, and reads the rows at its next ask
    for trial in trials:
        state = optuna_state(trial.state)
        known = history.rows.get(trial.pk)
        if known is None or not state.is_finished():
            history.version = None
            return
        if not known[1]:
            history.finish(trial.pk, state, trial.values)
    history.version = (claimed, done)


# --- Optuna's record ------------------------------------------------------------------


def _recorded(study: Study, row: Mapping[str, Any]) -> FrozenTrial:
    state = optuna_state(row["state"])
    attrs = dict(row["sampler_attrs"] or {})
    if state == OptunaState.COMPLETE:
        for name, value in (row["constraint_values"] or {}).items():
            attrs[CONSTRAINT_ATTR.format(name)] = float(value)
    trial = _frozen(study_distributions(study), state, row["params"] or {}, row["values"], attrs)
    started: datetime | None = row["started_at"] or row["finished_at"]
    if started is not None and row["finished_at"] is not None:
        trial.datetime_start = started
        trial.datetime_complete = row["finished_at"]
    return trial


_synced_at: dict[tuple[int, int], float] = {}


def optuna_sync(study: Study, fold: StudyFold) -> int:
    """Append the fold's finished trials that Optuna lacks, up to the first pending one, to
    its Optuna study (created if need be); how many were appended. Never inside a Django
    transaction that has written rows (studies.storage)."""
    _synced_at[(os.getpid(), fold.pk)] = time.monotonic()
    have = optuna_trial_count(fold.optuna_study_name) or 0
    rows = fold.trials.filter(slot__gte=have).order_by("slot")
    trials: list[FrozenTrial] = []
    for expected, row in enumerate(
        rows.values(
            "slot",
            "state",
            "params",
            "values",
            "constraint_values",
            "sampler_attrs",
            "started_at",
            "finished_at",
        ),
        start=have,
    ):
        if row["slot"] != expected or row["state"] in TRIAL_PENDING_STATES:
            break
        trials.append(_recorded(study, row))
    if not trials:
        return 0
    return optuna_trials_append(
        study_name=fold.optuna_study_name,
        directions=[objective["direction"] for objective in study.objectives],
        first_number=have,
        trials=trials,
    )


def optuna_sync_due(fold: StudyFold) -> bool:
    last = _synced_at.get((os.getpid(), fold.pk))
    return last is None or time.monotonic() - last >= OPTUNA_SYNC_SECONDS
