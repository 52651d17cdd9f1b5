"""Executing a queued run: start it, report throttled progress to its row and channel group,
then store its results (or a readable error) and send the final message.

Invariants kept here:

- A run's results (metrics, trades, equity artifact, cache entry) are saved in the same
  transaction that marks it succeeded, so a failed or interrupted run has none of them.
- Only the execution whose task id is on the run may start or finish it. A message
  redelivered after a worker died carries the same id and takes over; a superseded
  message (the run was requeued under a new id, or cancelled) does nothing. At commit the
  status and task id are checked again under a row lock, so results are stored at most once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backtests.engine import (
    HEADLINE_METRICS,
    BacktestResult,
    EngineError,
    ParamValidationError,
    run_backtest,
)
from backtests.models import FINISHED_STATUSES, BacktestRun, RunStatus
from backtests.progress import ProgressThrottle, group_send, run_group
from backtests.selectors import EQUITY_ARTIFACT
from backtests.services.errors import BacktestCancelled, readable_error
from backtests.services.exports import equity_parquet
from backtests.services.run_settings import BACKTEST_CACHE_KIND, run_engine_config
from backtests.services.trade_rows import trades_insert
from marketdata.selectors import candles_load
from persistence.downloads import PARQUET_MIME
from persistence.models import StorageFormat
from persistence.services import artifact_save, cache_store
from strategies.library.base import StrategyRef

logger = logging.getLogger(__name__)

# Share of the progress bar given to reading candles from the database; a parquet hit
# skips it. The engine takes the rest up to SAVE_START, saving takes the last few percent.
LOAD_SHARE = 40.0
SAVE_START = 95.0


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {name: metrics.get(name) for name in HEADLINE_METRICS}


def progress_message(run: BacktestRun, *, eta_seconds: float | None = None) -> dict[str, Any]:
    return {
        "type": "progress",
        "run": run.pk,
        "status": run.status,
        "progress": round(float(run.progress), 2),
        "bars_done": run.bars_done,
        "bars_total": run.bars_total,
        "eta_seconds": eta_seconds,
    }


def final_message(run: BacktestRun) -> dict[str, Any]:
    return {
        "type": "final",
        "run": run.pk,
        "status": run.status,
        "progress": round(float(run.progress), 2),
        "bars_done": run.bars_done,
        "bars_total": run.bars_total,
        "eta_seconds": 0,
        "cache_hit": run.cache_hit,
        "error": run.error,
        "metrics": headline(run.metrics) if run.status == RunStatus.SUCCEEDED else {},
    }


def final_message_on_commit(run: BacktestRun) -> None:
    message = {"type": "run.message", "payload": final_message(run)}
    transaction.on_commit(lambda: group_send(run_group(run.pk), message))


class RunProgress:
    """Turns loading and engine callbacks into throttled progress on the run and its group.

    Each emitted tick is also the run's heartbeat and its cancellation check: the update
    only matches while the run is still running under this execution's task id.
    """

    def __init__(
        self, run: BacktestRun, task_id: str, on_tick: Callable[[float], None] | None = None
    ) -> None:
        self.run = run
        self.task_id = task_id
        self.on_tick = on_tick
        self.throttle = ProgressThrottle(min_interval=settings.BACKTEST_PROGRESS_MIN_INTERVAL)
        self.engine_from = LOAD_SHARE

    def loading(self, rows: int, total: int) -> None:
        percent = LOAD_SHARE * rows / total if total else 0.0
        self._tick(percent, bars_done=0, bars_total=total)

    def loaded(self, *, bars: int, from_cache: bool) -> None:
        # A parquet hit makes loading instant, so the engine gets the whole bar.
        self.engine_from = LOAD_SHARE if not from_cache else 0.0
        self._tick(self.engine_from, bars_done=0, bars_total=bars)

    def simulating(self, done: int, total: int) -> None:
        share = SAVE_START - self.engine_from
        percent = self.engine_from + (share * done / total if total else share)
        self._tick(percent, bars_done=done, bars_total=total)

    def _tick(
        self, percent: float, *, bars_done: int, bars_total: int, final: bool = False
    ) -> None:
        percent = max(0.0, min(100.0, percent))
        if not self.throttle.should_emit(percent, final=final):
            return
        updated = BacktestRun.objects.filter(
            pk=self.run.pk, status=RunStatus.RUNNING, celery_task_id=self.task_id
        ).update(
            progress=percent,
            bars_done=bars_done,
            bars_total=bars_total,
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise BacktestCancelled
        self.run.progress, self.run.bars_done, self.run.bars_total = percent, bars_done, bars_total
        message = progress_message(self.run, eta_seconds=self.throttle.eta_seconds(percent))
        group_send(run_group(self.run.pk), {"type": "run.message", "payload": message})
        if self.on_tick is not None:
            self.on_tick(percent)


@transaction.atomic
def _backtest_start(*, run_id: int, task_id: str) -> BacktestRun | None:
    run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status in FINISHED_STATUSES:
        return None
    if run.celery_task_id and run.celery_task_id != task_id:
        logger.info("run %s: ignoring superseded task %s", run_id, task_id)
        return None
    if run.attempts >= settings.BACKTEST_MAX_ATTEMPTS:
        backtest_fail_locked(
            run, f"Gave up after {run.attempts} attempts: the worker was lost each time."
        )
        return None
    now = timezone.now()
    run.status = RunStatus.RUNNING
    run.celery_task_id = task_id
    run.attempts += 1
    run.started_at = now
    run.heartbeat_at = now
    run.progress = 0
    run.bars_done = 0
    run.error = ""
    run.save(
        update_fields=[
            "status",
            "celery_task_id",
            "attempts",
            "started_at",
            "heartbeat_at",
            "progress",
            "bars_done",
            "error",
        ]
    )
    return run


def backtest_fail_locked(run: BacktestRun, error: str) -> None:
    """Mark `run` failed; the caller holds its row lock inside a transaction."""
    run.status = RunStatus.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    final_message_on_commit(run)


@transaction.atomic
def _backtest_fail(*, run_id: int, task_id: str, error: str) -> None:
    run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
        return
    backtest_fail_locked(run, error)


@transaction.atomic
def _backtest_complete(
    *, run_id: int, task_id: str, result: BacktestResult, equity: bytes
) -> BacktestRun | None:
    run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
        # Cancelled, or taken over by another execution: this one's results are dropped.
        return None
    trades_insert(run_id=run.pk, trades=result.trades)
    artifact_save(
        name=EQUITY_ARTIFACT,
        mime_type=PARQUET_MIME,
        content=equity,
        params_hash=run.params_hash,
    )
    summary = {"run": run.pk, "metrics": result.metrics, "bars": len(result.equity)}
    cache_store(
        kind=BACKTEST_CACHE_KIND,
        params_hash=run.params_hash,
        content=json.dumps(summary).encode(),
        format=StorageFormat.JSON,
        row_count=len(result.trades),
    )
    run.status = RunStatus.SUCCEEDED
    run.metrics = result.metrics
    run.progress = 100
    run.bars_total = run.bars_done = len(result.equity)
    run.finished_at = run.heartbeat_at = timezone.now()
    run.save(
        update_fields=[
            "status",
            "metrics",
            "progress",
            "bars_total",
            "bars_done",
            "finished_at",
            "heartbeat_at",
        ]
    )
    final_message_on_commit(run)
    return run


def backtest_execute(
    *, run_id: int, task_id: str, on_tick: Callable[[float], None] | None = None
) -> BacktestRun | None:
    """Run the backtest for `run_id` as execution `task_id`; the Celery task's body.

    Not atomic as a whole on purpose: progress must be visible while it runs. Starting,
    failing and completing are each their own transaction.
    """
    run = _backtest_start(run_id=run_id, task_id=task_id)
    if run is None:
        return None
    # Sent after the start has committed, so the status it announces is already visible.
    group_send(run_group(run.pk), {"type": "run.message", "payload": progress_message(run)})
    progress = RunProgress(run, task_id, on_tick)
    try:
        candles, from_cache = candles_load(
            instrument_id=run.instrument_id,
            timeframe=run.timeframe,
            start=run.start,
            end=run.end,
            progress=progress.loading,
        )
        progress.loaded(bars=len(candles), from_cache=from_cache)
        result = run_backtest(
            candles,
            StrategyRef(kind=run.kind, params=run.parameters),
            run_engine_config(run),
            progress=progress.simulating,
        )
        equity = equity_parquet(result)
        return _backtest_complete(run_id=run_id, task_id=task_id, result=result, equity=equity)
    except BacktestCancelled:
        logger.info("run %s: stopped, it was cancelled or taken over", run_id)
        return None
    except (EngineError, ParamValidationError, SoftTimeLimitExceeded) as exc:
        _backtest_fail(run_id=run_id, task_id=task_id, error=readable_error(exc))
        return None
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        _backtest_fail(run_id=run_id, task_id=task_id, error=readable_error(exc))
        return None
