"""Submitting, re-running and cancelling backtest runs. A submit whose params hash has a
cached result is answered at once; any other is queued and handed to Celery on commit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from accounts.models import User
from backtests.models import FINISHED_STATUSES, BacktestRun, RunStatus
from backtests.services.dispatch import backtest_enqueue_on_commit, task_revoke_on_commit
from backtests.services.errors import BacktestConflict, BacktestInputError
from backtests.services.execution import final_message_on_commit
from backtests.services.run_settings import (
    BACKTEST_CACHE_KIND,
    RunSettings,
    backtest_key,
    candle_count_check,
    data_check,
    run_settings_resolve,
    stored_overrides,
)
from persistence.services import cache_evict, cache_load, cache_lookup
from strategies.library.registry import get_kind
from strategies.models import Strategy


def cached_source(
    model: type[Model], *, kind: str, params_hash: str
) -> tuple[Any, dict[str, Any]] | None:
    """The succeeded row of `model` (a run of some sort) that computed `params_hash` and its
    cached summary (cache `kind`), if both exist; a summary whose run was deleted is
    evicted, a miss from then on."""
    entry = cache_lookup(kind=kind, params_hash=params_hash)
    if entry is None:
        return None
    summary = json.loads(cache_load(entry=entry))
    source = model.objects.filter(  # type: ignore[attr-defined]
        pk=summary.get("run"), status=RunStatus.SUCCEEDED, params_hash=params_hash
    ).first()
    if source is None:
        # The computing run was deleted, and its trades with it: this entry is a miss now.
        cache_evict(entry=entry)
        return None
    return source, summary


def _run_build(*, user: User, strategy: Strategy, resolved: RunSettings) -> BacktestRun:
    """An unsaved run of `resolved`, keyed by its params hash and validated."""
    params_hash = backtest_key(run_settings=resolved)
    run = BacktestRun(
        owner=user, strategy=strategy, params_hash=params_hash, **resolved.model_fields()
    )
    try:
        # Constraints are checked above field by field (with better messages) and enforced
        # by the database; validating them here would cost a query each on every submit.
        run.full_clean(
            exclude=["owner", "strategy", "instrument", "sweep", "shared_from"],
            validate_constraints=False,
        )
    except ValidationError as exc:
        raise BacktestInputError.from_validation_error(exc) from exc
    return run


def _run_save_as_cache_hit(
    run: BacktestRun, *, source: BacktestRun, summary: Mapping[str, Any]
) -> BacktestRun:
    now = timezone.now()
    run.status = RunStatus.SUCCEEDED
    run.cache_hit = True
    run.shared_from = source
    run.metrics = summary.get("metrics", source.metrics)
    run.bars_total = run.bars_done = source.bars_total
    run.progress = 100
    run.started_at = run.finished_at = now
    run.save()
    return run


@transaction.atomic
def backtest_submit(
    *,
    user: User,
    strategy: Strategy,
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None = None,
    use_cache: bool = True,
    enqueue: bool = True,
) -> BacktestRun:
    """Create a run for `strategy` over [start, end); a cache hit returns it already succeeded.

    On a miss the run is queued and its Celery task is enqueued once this transaction
    commits. `use_cache=False` always recomputes (and does not replace the cached copy).
    `enqueue=False` leaves the queued run for the caller to execute in-process
    (`backtest_execute` with the run's celery_task_id), as `manage.py run_backtest` does.
    """
    if strategy.owner_id != user.pk and not user.is_staff:
        raise BacktestInputError({"strategy": ["Not found."]})
    resolved = run_settings_resolve(strategy=strategy, start=start, end=end, overrides=overrides)
    candle_count_check(
        run_settings=resolved,
        needed=get_kind(resolved.kind).min_bars(resolved.parameters),
        needed_by=f"{resolved.kind} with these parameters",
    )
    data_check(run_settings=resolved)
    run = _run_build(user=user, strategy=strategy, resolved=resolved)

    cached = (
        cached_source(BacktestRun, kind=BACKTEST_CACHE_KIND, params_hash=run.params_hash)
        if use_cache
        else None
    )
    if cached is not None:
        source, summary = cached
        return _run_save_as_cache_hit(run, source=source, summary=summary)

    run.celery_task_id = str(uuid.uuid4())
    run.save()
    if enqueue:
        backtest_enqueue_on_commit(run_id=run.pk, task_id=run.celery_task_id)
    return run


@transaction.atomic
def backtest_rerun(*, user: User, run: BacktestRun) -> BacktestRun:
    """Submit `run`'s settings again, recomputing rather than reading the cache."""
    if run.strategy is None:
        raise BacktestConflict("The strategy of this run no longer exists.")
    return backtest_submit(
        user=user,
        strategy=run.strategy,
        start=run.start,
        end=run.end,
        overrides={**stored_overrides(run), "parameters": run.parameters},
        use_cache=False,
    )


@transaction.atomic
def backtest_cancel(*, run: BacktestRun, reason: str = "Cancelled.") -> BacktestRun:
    """Stop a queued or running run; its execution notices at its next progress tick."""
    locked = BacktestRun.objects.select_for_update().get(pk=run.pk)
    if locked.status in FINISHED_STATUSES:
        raise BacktestConflict(f"Run {locked.pk} has already {locked.status}.")
    locked.status = RunStatus.CANCELLED
    locked.error = reason
    locked.finished_at = timezone.now()
    locked.save(update_fields=["status", "error", "finished_at"])
    task_revoke_on_commit(task_id=locked.celery_task_id)
    final_message_on_commit(locked)
    return locked
