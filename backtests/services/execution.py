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

import pandas as pd
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
from strategies.library.indicators import IndicatorCache

logger = logging.getLogger(__name__)

# Share of the progress bar given to reading candles from the database; a parquet hit
# skips it. The engine takes the rest up to SAVE_START, saving takes the last few percent.
LOAD_SHARE = 40.0
SAVE_START = 95.0
# Share of the engine's part of the bar given to training an ML predictor's folds.
TRAIN_SHARE = 0.9

# What a running run is doing, sent with every progress message so the page's text names the
# phase the bar is in and counts that phase's own units: candles loaded, bars simulated.
PHASE_QUEUED = "queued"
PHASE_LOADING = "loading candles"
PHASE_TRAINING = "training models"  # ML predictor runs only: one tick per fold
PHASE_SIMULATING = "simulating"
PHASE_SAVING = "saving"
PHASE_FINISHED = "finished"


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {name: metrics.get(name) for name in HEADLINE_METRICS}


def _phase_of(run: BacktestRun) -> tuple[str, int, int]:
    """(phase, done, total) as the run's row tells it, for a subscriber arriving late: while
    loading, the row keeps the candle count in bars_total and the bar at its loading share."""
    if run.status == RunStatus.QUEUED:
        return PHASE_QUEUED, 0, 0
    if run.status != RunStatus.RUNNING:
        return PHASE_FINISHED, run.bars_done, run.bars_total
    if run.progress >= SAVE_START:
        return PHASE_SAVING, 0, 0
    if run.bars_done > 0:
        return PHASE_SIMULATING, run.bars_done, run.bars_total
    loaded = round(run.bars_total * min(float(run.progress), LOAD_SHARE) / LOAD_SHARE)
    return PHASE_LOADING, loaded, run.bars_total


def progress_message(
    run: BacktestRun,
    *,
    eta_seconds: float | None = None,
    phase: tuple[str, int, int] | None = None,
) -> dict[str, Any]:
    """The run's progress for its channel group; `phase` is (name, done, total) in that
    phase's units (candles while loading, bars while simulating), from the row if not given.

    bars_done and bars_total are the bars simulated, as before (the admin page shows them).
    """
    name, done, total = phase if phase is not None else _phase_of(run)
    return {
        "type": "progress",
        "run": run.pk,
        "status": run.status,
        "progress": round(float(run.progress), 2),
        "bars_done": run.bars_done,
        "bars_total": run.bars_total,
        "eta_seconds": eta_seconds,
        "phase": name,
        "phase_done": done,
        "phase_total": total,
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
    only matches while the run is still running under this execution's task id. The bar
    moves through the phases in order (loading up to LOAD_SHARE, simulating up to
    SAVE_START, then saving) and the first tick of each phase always goes out, so the text
    never names a phase the bar has left.
    """

    def __init__(
        self, run: BacktestRun, task_id: str, on_tick: Callable[[float], None] | None = None
    ) -> None:
        self.run = run
        self.task_id = task_id
        self.on_tick = on_tick
        self.throttle = ProgressThrottle(min_interval=settings.BACKTEST_PROGRESS_MIN_INTERVAL)
        self.engine_from = LOAD_SHARE
        self.phase = PHASE_QUEUED

    def loading(self, rows: int, total: int) -> None:
        percent = LOAD_SHARE * rows / total if total else 0.0
        self._tick(percent, bars_done=0, bars_total=total, phase=(PHASE_LOADING, rows, total))

    def loaded(self, *, bars: int, from_cache: bool, trains: bool = False) -> None:
        # A parquet hit makes loading instant, so the engine gets the whole bar.
        self.engine_from = LOAD_SHARE if not from_cache else 0.0
        # An ML predictor trains its folds first; their count comes with the first fold.
        phase = (PHASE_TRAINING, 0, 0) if trains else (PHASE_SIMULATING, 0, bars)
        self._tick(self.engine_from, bars_done=0, bars_total=bars, phase=phase)

    def training(self, done: int, total: int) -> None:
        """An ML predictor's folds, trained before the simulation: most of the engine's share.

        Once every fold is trained the simulation continues the bar from where training left
        it, so the bar never moves back.
        """
        share = (SAVE_START - self.engine_from) * TRAIN_SHARE
        percent = self.engine_from + (share * done / total if total else share)
        self._tick(
            percent,
            bars_done=0,
            bars_total=self.run.bars_total,
            phase=(PHASE_TRAINING, done, total),
        )
        if total and done >= total:
            self.engine_from = percent

    def simulating(self, done: int, total: int) -> None:
        if self.phase == PHASE_SAVING:
            return  # the engine's closing calls, after the simulation reached its end
        if total and done >= total:
            # The engine has walked every bar; what follows is the metrics and the saving.
            self._tick(SAVE_START, bars_done=total, bars_total=total, phase=(PHASE_SAVING, 0, 0))
            return
        share = SAVE_START - self.engine_from
        percent = self.engine_from + (share * done / total if total else share)
        self._tick(percent, bars_done=done, bars_total=total, phase=(PHASE_SIMULATING, done, total))

    def _tick(
        self,
        percent: float,
        *,
        bars_done: int,
        bars_total: int,
        phase: tuple[str, int, int],
        final: bool = False,
    ) -> None:
        percent = max(0.0, min(100.0, percent))
        # A new phase always goes out, however close to the last tick it comes.
        new_phase = phase[0] != self.phase
        if not self.throttle.should_emit(percent, final=final or new_phase):
            return
        self.phase = phase[0]
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
        message = progress_message(
            self.run, eta_seconds=self.throttle.eta_seconds(percent), phase=phase
        )
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
    *,
    run_id: int,
    task_id: str,
    result: BacktestResult,
    equity: bytes,
    ml: tuple[pd.DataFrame, IndicatorCache] | None = None,
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
    if ml is not None:  # an ML predictor's per-fold diagnostics, with the rest of its results
        from backtests.ml import ml_diagnostics_save

        ml_diagnostics_save(run=run, candles=ml[0], cache=ml[1])
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
        # An ML predictor reuses stored models through the cache and reports its folds.
        # (Imported here: backtests.ml imports this package's errors, whose __init__ is us.)
        from backtests.ml import ML_KIND, ml_cache

        trains = run.kind == ML_KIND
        progress.loaded(bars=len(candles), from_cache=from_cache, trains=trains)
        cache = ml_cache(on_fold=progress.training) if trains else None
        result = run_backtest(
            candles,
            StrategyRef(kind=run.kind, params=run.parameters),
            run_engine_config(run),
            progress=progress.simulating,
            cache=cache,
        )
        equity = equity_parquet(result)
        return _backtest_complete(
            run_id=run_id,
            task_id=task_id,
            result=result,
            equity=equity,
            ml=(candles, cache) if cache is not None else None,
        )
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
