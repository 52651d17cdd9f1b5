"""Writes for backtest runs: submit (with the params-hash cache), execute, cancel, recover.

Invariants the functions here keep:

- A run's results (metrics, trades, equity artifact, cache entry) are saved in the same
  transaction that marks it succeeded, so a failed or interrupted run has none of them.
- Only the execution whose task id is on the run may start or finish it. A message
  redelivered after a worker died carries the same id and takes over; a superseded
  message (the run was requeued under a new id, or cancelled) does nothing. At commit the
  status and task id are checked again under a row lock, so results are stored at most once.
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from backtests.engine import (
    ENGINE_VERSION,
    HEADLINE_METRICS,
    METRIC_DEFINITIONS,
    BacktestConfig,
    BacktestResult,
    EngineError,
    ParamValidationError,
    expand_grid,
    run_backtest,
    run_sweep,
)
from backtests.models import FINISHED_STATUSES, BacktestRun, BacktestTrade, RunStatus, Sweep
from backtests.progress import (
    ProgressThrottle,
    group_send,
    run_group,
    sweep_computed_add,
    sweep_computed_clear,
    sweep_group,
)
from backtests.selectors import TRADE_EXPORT_COLUMNS, trade_frame
from persistence.bulk import copy_insert
from persistence.candles import candle_count_at_least, candle_data_version, candles_load
from persistence.hashing import canonical_json
from persistence.hashing import params_hash as hash_of
from persistence.models import StorageFormat
from persistence.selectors import artifact_for_hash
from persistence.services import (
    artifact_load,
    artifact_save,
    cache_evict,
    cache_load,
    cache_lookup,
    cache_lookup_many,
    cache_store,
    cache_store_many,
    params_record,
)
from strategies.library.base import StrategyRef
from strategies.library.registry import UnknownStrategyKind, get_kind
from strategies.library.timeframes import TIMEFRAME_SECONDS
from strategies.models import Strategy

logger = logging.getLogger(__name__)

BACKTEST_CACHE_KIND = "backtest"
EQUITY_ARTIFACT = "equity.parquet"
EXPORT_ARTIFACT = "export.xlsx"
PARQUET_MIME = "application/vnd.apache.parquet"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Share of the progress bar given to reading candles from the database; a parquet hit
# skips it. The engine takes the rest up to SAVE_START, saving takes the last few percent.
LOAD_SHARE = 40.0
SAVE_START = 95.0

OVERRIDABLE = (
    "parameters",
    "timeframe",
    "initial_capital",
    "fee_rate",
    "slippage_bps",
    "size_fraction",
    "allow_short",
    "stop_loss_pct",
    "take_profit_pct",
)


class BacktestInputError(Exception):
    """The request cannot be run; `errors` maps each field to its messages (a 400)."""

    def __init__(self, errors: Mapping[str, Any]) -> None:
        self.errors = dict(errors)
        super().__init__(f"invalid backtest request: {self.errors}")


class BacktestConflict(Exception):
    """The run is not in a state that allows this (a 409)."""


class BacktestCancelled(Exception):
    """Raised inside an execution once its run has been cancelled or taken over."""


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a backtest's result, resolved and validated."""

    kind: str
    parameters: dict[str, Any]
    instrument_id: int
    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    initial_capital: Decimal
    fee_rate: Decimal
    slippage_bps: Decimal
    size_fraction: Decimal
    allow_short: bool
    stop_loss_pct: Decimal | None
    take_profit_pct: Decimal | None

    def engine_config(self) -> BacktestConfig:
        return BacktestConfig(
            initial_capital=float(self.initial_capital),
            fee_rate=float(self.fee_rate),
            slippage_bps=float(self.slippage_bps),
            size_fraction=float(self.size_fraction),
            allow_short=self.allow_short,
            stop_loss_pct=None if self.stop_loss_pct is None else float(self.stop_loss_pct),
            take_profit_pct=None if self.take_profit_pct is None else float(self.take_profit_pct),
            timeframe=self.timeframe,
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "parameters": self.parameters,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "initial_capital": self.initial_capital,
            "fee_rate": self.fee_rate,
            "slippage_bps": self.slippage_bps,
            "size_fraction": self.size_fraction,
            "allow_short": self.allow_short,
            "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
        }

    def hash_payload(self, *, data_version: str) -> dict[str, Any]:
        """What goes into params_hash: the settings, the engine version, the data version."""
        return {
            **self._settings(),
            "instrument": self.symbol,
            "engine_version": ENGINE_VERSION,
            "candle_data_version": data_version,
        }

    def model_fields(self) -> dict[str, Any]:
        return {**self._settings(), "instrument_id": self.instrument_id}


def _decimal(value: Any, field: str, errors: dict[str, Any]) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[field] = ["Must be a number."]
        return None
    if not number.is_finite():
        errors[field] = ["Must be a finite number."]
        return None
    return number


def _check(errors: dict[str, Any], field: str, ok: bool, message: str) -> None:
    if not ok and field not in errors:
        errors[field] = [message]


def run_settings_resolve(
    *,
    strategy: Strategy,
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None = None,
) -> RunSettings:
    """The strategy's settings with `overrides` applied, validated field by field.

    Parameter overrides are merged over the strategy's parameters; then the kind's spec
    cleans them, so every rule of the spec applies and defaults are filled in.
    """
    overrides = dict(overrides or {})
    errors: dict[str, Any] = {}
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    for name in unknown:
        errors[name] = [f"Cannot be overridden. Allowed: {', '.join(OVERRIDABLE)}."]

    try:
        kind = get_kind(strategy.kind)
    except UnknownStrategyKind as exc:
        raise BacktestInputError({"strategy": [str(exc)]}) from exc
    raw_params = {**(strategy.parameters or {}), **(overrides.get("parameters") or {})}
    parameters: dict[str, Any] = {}
    if not isinstance(overrides.get("parameters") or {}, Mapping):
        errors["parameters"] = ["Must be an object of parameter values."]
    else:
        try:
            parameters = dict(kind.validate(raw_params))
        except ParamValidationError as exc:
            errors["parameters"] = exc.errors

    timeframe = overrides.get("timeframe") or strategy.timeframe
    _check(errors, "timeframe", timeframe in TIMEFRAME_SECONDS, f"Unknown timeframe {timeframe!r}.")

    def pick(name: str, default: Any) -> Decimal | None:
        return _decimal(overrides.get(name, default), name, errors)

    capital = pick("initial_capital", strategy.initial_capital)
    fee = pick("fee_rate", strategy.fee_rate)
    slippage = pick("slippage_bps", strategy.slippage_bps)
    size = pick("size_fraction", Decimal("1"))
    stop = pick("stop_loss_pct", None)
    target = pick("take_profit_pct", None)
    allow_short = overrides.get("allow_short", kind.allows_short)
    _check(errors, "initial_capital", capital is not None and capital > 0, "Must be positive.")
    _check(errors, "fee_rate", fee is not None and 0 <= fee < 1, "Must be at least 0 and below 1.")
    _check(
        errors,
        "slippage_bps",
        slippage is not None and 0 <= slippage < 10_000,
        "Must be at least 0 and below 10000.",
    )
    _check(
        errors,
        "size_fraction",
        size is not None and 0 < size <= 1,
        "Must be above 0 and at most 1.",
    )
    _check(
        errors, "stop_loss_pct", stop is None or 0 < stop < 100, "Must be above 0 and below 100."
    )
    _check(errors, "take_profit_pct", target is None or target > 0, "Must be positive.")
    _check(errors, "allow_short", isinstance(allow_short, bool), "Must be true or false.")
    if allow_short is True and not kind.allows_short:
        errors.setdefault("allow_short", [f"{kind.name} never goes short."])
    for name, value in (("start", start), ("end", end)):
        _check(errors, name, timezone.is_aware(value), "Must include a time zone.")
    if "start" not in errors and "end" not in errors:
        _check(errors, "end", end > start, "Must be after start.")
    if errors:
        raise BacktestInputError(errors)
    assert capital is not None and fee is not None and slippage is not None and size is not None
    return RunSettings(
        kind=kind.name,
        parameters=parameters,
        instrument_id=strategy.instrument_id,
        symbol=strategy.instrument.symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        initial_capital=capital,
        fee_rate=fee,
        slippage_bps=slippage,
        size_fraction=size,
        allow_short=bool(allow_short),
        stop_loss_pct=stop,
        take_profit_pct=target,
    )


def _validation_errors(exc: ValidationError) -> dict[str, Any]:
    return {
        field: [str(message) for message in messages]
        for field, messages in exc.message_dict.items()
    }


def backtest_key(*, run_settings: RunSettings) -> str:
    """params_hash of a resolved request, with the current candle data version."""
    data_version = candle_data_version(
        instrument_id=run_settings.instrument_id,
        timeframe=run_settings.timeframe,
        start=run_settings.start,
        end=run_settings.end,
    )
    return params_record(payload=run_settings.hash_payload(data_version=data_version))


def _cached_source(params_hash: str) -> tuple[BacktestRun, dict[str, Any]] | None:
    """The succeeded run that computed `params_hash` and its cached summary, if both exist."""
    entry = cache_lookup(kind=BACKTEST_CACHE_KIND, params_hash=params_hash)
    if entry is None:
        return None
    summary = json.loads(cache_load(entry=entry))
    source = BacktestRun.objects.filter(
        pk=summary.get("run"), status=RunStatus.SUCCEEDED, params_hash=params_hash
    ).first()
    if source is None:
        # The computing run was deleted, and its trades with it: this entry is a miss now.
        cache_evict(entry=entry)
        return None
    return source, summary


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
    needed = get_kind(resolved.kind).min_bars(resolved.parameters)
    available = candle_count_at_least(
        instrument_id=resolved.instrument_id,
        timeframe=resolved.timeframe,
        start=start,
        end=end,
        bars=needed,
    )
    if available < needed:
        raise BacktestInputError(
            {
                "end": [
                    f"The range has {available} {resolved.timeframe} candle(s) of "
                    f"{resolved.symbol}; {resolved.kind} with these parameters needs at "
                    f"least {needed}."
                ]
            }
        )
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
        raise BacktestInputError(_validation_errors(exc)) from exc

    cached = _cached_source(params_hash) if use_cache else None
    if cached is not None:
        source, summary = cached
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

    run.celery_task_id = str(uuid.uuid4())
    run.save()
    if enqueue:
        _enqueue_on_commit(run.pk, run.celery_task_id)
    return run


def _enqueue_on_commit(run_id: int, task_id: str) -> None:
    def enqueue() -> None:
        from backtests.tasks import execute_backtest

        execute_backtest.apply_async(args=[run_id], task_id=task_id)

    transaction.on_commit(enqueue)


@transaction.atomic
def backtest_rerun(*, user: User, run: BacktestRun) -> BacktestRun:
    """Submit `run`'s settings again, recomputing rather than reading the cache."""
    if run.strategy is None:
        raise BacktestConflict("The strategy of this run no longer exists.")
    overrides = {name: getattr(run, name) for name in OVERRIDABLE}
    return backtest_submit(
        user=user,
        strategy=run.strategy,
        start=run.start,
        end=run.end,
        overrides=overrides,
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
    task_id = locked.celery_task_id
    transaction.on_commit(lambda: _revoke(task_id))
    _final_message_on_commit(locked)
    return locked


def _revoke(task_id: str) -> None:
    # Revoking only saves a worker from picking a queued message up; correctness does not
    # depend on it, since a cancelled run's execution stops and stores nothing.
    if not task_id or settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        return
    try:
        from config.celery import app

        app.control.revoke(task_id)
    except Exception:  # the broker being away must not turn a cancel into an error
        logger.warning("could not revoke task %s", task_id, exc_info=True)


# --- Execution ------------------------------------------------------------------------


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


def _final_message_on_commit(run: BacktestRun) -> None:
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
        _fail_locked(run, f"Gave up after {run.attempts} attempts: the worker was lost each time.")
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


def _fail_locked(run: BacktestRun, error: str) -> None:
    run.status = RunStatus.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    _final_message_on_commit(run)


@transaction.atomic
def _backtest_fail(*, run_id: int, task_id: str, error: str) -> None:
    run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
        return
    _fail_locked(run, error)


def equity_parquet(result: BacktestResult) -> bytes:
    frame = pd.DataFrame({"equity": result.equity, "drawdown": result.drawdown})
    frame.index.name = "ts"
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


# Insert order for stored trades: the run, then the columns every trade view shows.
TRADE_COLUMNS = ("run_id", *TRADE_EXPORT_COLUMNS)


def _nullable(values: list[Any], missing: np.ndarray) -> list[Any]:
    if missing.any():
        for i in np.flatnonzero(missing):
            values[i] = None
    return values


def _sqlite_datetimes(values: np.ndarray) -> list[Any]:
    """Naive UTC datetime64 values as the text Django binds on SQLite: str(datetime), i.e.
    "YYYY-MM-DD HH:MM:SS" with ".ffffff" only when there are microseconds."""
    seconds = np.datetime_as_string(values, unit="s")
    micros = np.datetime_as_string(values, unit="us")
    has_micros = values.astype(np.int64) % 1_000_000 != 0
    text = np.char.replace(np.where(has_micros, micros, seconds), "T", " ")
    return text.tolist()


def _trade_rows(run_id: int, trades: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The engine's trades as insert-ready tuples in TRADE_COLUMNS order, column at a time.

    A run can have tens of thousands of trades; converting whole columns once (rather than
    a pandas row and a Timestamp per trade) keeps this a small share of the save.
    """
    count = len(trades)

    def floats(name: str) -> list[Any]:
        return trades[name].to_numpy(dtype=np.float64).tolist()

    def maybe_floats(name: str) -> list[Any]:
        column = trades[name].to_numpy(dtype=np.float64)
        return _nullable(column.tolist(), np.isnan(column))

    def times(name: str) -> list[Any]:
        column = trades[name]
        stamps = column.dt.tz_convert("UTC") if column.dt.tz is not None else column
        if connection.vendor == "postgresql":
            converted = list(stamps.dt.to_pydatetime())
        else:
            converted = _sqlite_datetimes(stamps.dt.tz_localize(None).to_numpy("datetime64[us]"))
        return _nullable(converted, column.isna().to_numpy())

    columns = [
        [run_id] * count,
        trades["direction"].astype(str).tolist(),
        times("entry_time"),
        times("exit_time"),
        floats("entry_price"),
        maybe_floats("exit_price"),
        floats("quantity"),
        floats("pnl"),
        floats("pnl_pct"),
        floats("fees"),
        maybe_floats("duration"),
        trades["exit_reason"].astype(str).tolist(),
        trades["is_open"].to_numpy(dtype=bool).tolist(),
    ]
    return list(zip(*columns, strict=True))


def trades_insert(*, run_id: int, trades: pd.DataFrame) -> int:
    """Insert a run's trades in bulk: COPY on PostgreSQL, one executemany elsewhere.

    Both skip the ORM's per-value preparation, which on tens of thousands of trades took
    most of a recompute. Values are prepared above as Django would; the table's check
    constraints still apply. Runs inside the caller's transaction.
    """
    rows = _trade_rows(run_id, trades)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        copy_insert(BacktestTrade, TRADE_COLUMNS, rows)
        return len(rows)
    quote = connection.ops.quote_name
    table = quote(BacktestTrade._meta.db_table)
    names = ", ".join(quote(BacktestTrade._meta.get_field(c).column) for c in TRADE_COLUMNS)  # type: ignore[union-attr,arg-type]
    marks = ", ".join(["%s"] * len(TRADE_COLUMNS))
    with connection.cursor() as cursor:
        # Names come from the model's meta, values are bound: nothing user-given is spliced.
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
        cursor.executemany(sql, rows)
    return len(rows)


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
    _final_message_on_commit(run)
    return run


def readable_error(exc: BaseException) -> str:
    if isinstance(exc, ParamValidationError):
        return "Invalid parameters: " + "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.errors.items()
        )
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"Stopped: the backtest ran longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s."
    if isinstance(exc, EngineError):
        return str(exc)
    return f"Internal error ({type(exc).__name__}): {exc}"


def run_engine_config(run: BacktestRun | Any) -> BacktestConfig:
    """The engine config of a stored run or sweep."""

    def optional(value: Decimal | None) -> float | None:
        return None if value is None else float(value)

    return BacktestConfig(
        initial_capital=float(run.initial_capital),
        fee_rate=float(run.fee_rate),
        slippage_bps=float(run.slippage_bps),
        size_fraction=float(run.size_fraction),
        allow_short=run.allow_short,
        stop_loss_pct=optional(run.stop_loss_pct),
        take_profit_pct=optional(run.take_profit_pct),
        timeframe=run.timeframe,
    )


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
        config = run_engine_config(run)
        result = run_backtest(
            candles,
            StrategyRef(kind=run.kind, params=run.parameters),
            config,
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


def backtest_reap_stale(*, stale_after: timedelta | None = None) -> list[int]:
    """Recover runs whose worker died without a word: requeue them, or fail them for good.

    A run counts as lost when it is running and its heartbeat is older than `stale_after`.
    Requeueing gives it a new task id, so the dead worker's message, should the broker
    ever redeliver it, is recognised as superseded.
    """
    if stale_after is None:
        stale_after = timedelta(seconds=settings.BACKTEST_STALE_AFTER_SECONDS)
    cutoff = timezone.now() - stale_after
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
        _fail_locked(run, f"The worker was lost {run.attempts} times; giving up.")
        return True
    run.status = RunStatus.QUEUED
    run.celery_task_id = str(uuid.uuid4())
    run.error = f"Requeued after the worker was lost (attempt {run.attempts})."
    run.save(update_fields=["status", "celery_task_id", "error"])
    _enqueue_on_commit(run.pk, run.celery_task_id)
    return True


def backtest_requeue_orphans() -> list[int]:
    """Requeue every unfinished run; for a broker that has just started empty.

    `make run`'s embedded Redis keeps nothing across restarts, so whatever was queued or
    running when it stopped has no message left anywhere. Sweeps cannot be resumed
    mid-chord and are failed instead.
    """
    requeued = []
    for run_id in list(
        BacktestRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).values_list(
            "pk", flat=True
        )
    ):
        with transaction.atomic():
            run = BacktestRun.objects.select_for_update().get(pk=run_id)
            if run.status in FINISHED_STATUSES:
                continue
            run.status = RunStatus.QUEUED
            run.celery_task_id = str(uuid.uuid4())
            run.save(update_fields=["status", "celery_task_id"])
            _enqueue_on_commit(run.pk, run.celery_task_id)
            requeued.append(run.pk)
    for sweep_id in Sweep.objects.filter(
        status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
    ).values_list("pk", flat=True):
        _sweep_fail(sweep_id=sweep_id, error="Interrupted: the server restarted.")
    return requeued


# --- Exports --------------------------------------------------------------------------


def result_run(run: BacktestRun) -> BacktestRun:
    """The run whose trades a run shows: itself, or the run its cache hit shares."""
    return run.shared_from if run.cache_hit and run.shared_from is not None else run


def equity_frame(run: BacktestRun) -> pd.DataFrame:
    artifact = artifact_for_hash(params_hash=run.params_hash, name=EQUITY_ARTIFACT)
    if artifact is None:
        return pd.DataFrame({"equity": [], "drawdown": []})
    return pd.read_parquet(io.BytesIO(artifact_load(artifact=artifact)))


def _thin(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    step = -(-len(frame) // max_rows)
    picked = frame.iloc[step - 1 :: step]
    # Keep the final row, so the thinned curve still ends on the final equity.
    if picked.index[-1] != frame.index[-1]:
        picked = pd.concat([picked.iloc[:-1], frame.iloc[[-1]]])
    return picked


def backtest_export_xlsx(*, run: BacktestRun) -> bytes:
    """The run's workbook (metrics, trades, equity); built once per params hash, then reused."""
    if run.status != RunStatus.SUCCEEDED:
        raise BacktestConflict(f"Run {run.pk} has no results to export ({run.status}).")
    existing = artifact_for_hash(params_hash=run.params_hash, name=EXPORT_ARTIFACT)
    if existing is not None:
        return artifact_load(artifact=existing)
    content = workbook_bytes(
        metrics=run.metrics,
        trades=trade_frame(run),
        equity=equity_frame(run),
        max_equity_rows=settings.EXPORT_MAX_EQUITY_ROWS,
    )
    with transaction.atomic():
        artifact_save(
            name=EXPORT_ARTIFACT, mime_type=XLSX_MIME, content=content, params_hash=run.params_hash
        )
    return content


def workbook_bytes(
    *, metrics: Mapping[str, Any], trades: pd.DataFrame, equity: pd.DataFrame, max_equity_rows: int
) -> bytes:
    from openpyxl import Workbook

    # write_only streams rows instead of building every cell object first.
    book = Workbook(write_only=True)
    sheet = book.create_sheet("metrics")
    sheet.append(["metric", "value"])
    for name, value in metrics.items():
        sheet.append([name, value])
    thinned = _thin(equity, max_equity_rows)
    if len(thinned) < len(equity):
        sheet.append(["equity_rows_in_sheet", f"{len(thinned)} of {len(equity)} (thinned)"])

    sheet = book.create_sheet("trades")
    sheet.append(list(trades.columns))
    for row in _excel_rows(trades):
        sheet.append(row)

    sheet = book.create_sheet("equity")
    sheet.append(["ts", "equity", "drawdown"])
    curve = thinned[["equity", "drawdown"]].copy()
    curve.insert(0, "ts", thinned.index)
    for row in _excel_rows(curve):
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _excel_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows of plain Python values, converted a column at a time (per-cell conversion
    dominated the export): Excel has no time zones, so timestamps go in as naive UTC,
    and missing values become empty cells."""
    columns: list[list[Any]] = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            naive = column.dt.tz_convert("UTC").dt.tz_localize(None)
            values = [None if pd.isna(v) else v for v in naive.dt.to_pydatetime()]
        elif pd.api.types.is_float_dtype(column.dtype):
            values = [None if v != v else v for v in column.tolist()]  # NaN != NaN
        else:
            values = [None if v is None or v is pd.NaT else v for v in column.tolist()]
        columns.append(values)
    return zip(*columns, strict=True)


# --- Sweeps ---------------------------------------------------------------------------

SWEEP_ROW_KIND = "metrics"
# Metrics where smaller is better; every other metric is ranked largest first.
MINIMIZED_METRICS = frozenset(
    {
        "annualized_volatility_pct",
        "max_drawdown_duration_s",
        "avg_drawdown_duration_s",
        "commissions",
        "max_consecutive_losses",
        "losing_days",
        "min_equity",
    }
)
RANKABLE_METRICS = tuple(name for name in METRIC_DEFINITIONS if name not in ("start", "end"))
AUTO_CHUNKS = 8


def _sweep_combinations(kind: str, grid: Mapping[str, list[Any]], samples: int | None, seed: str):
    combos = expand_grid(kind, grid)
    if samples is not None and samples < len(combos):
        # Seeded by the request, so the same sweep samples the same combinations.
        combos = random.Random(seed).sample(combos, samples)
    return combos


@transaction.atomic
def sweep_submit(
    *,
    user: User,
    strategy: Strategy,
    start: datetime,
    end: datetime,
    grid: Mapping[str, Any],
    samples: int | None = None,
    rank_metric: str = "sharpe",
    overrides: Mapping[str, Any] | None = None,
) -> Sweep:
    """Create a sweep of `strategy` over `grid` (or `samples` random combinations of it).

    Parameters the grid leaves out keep the strategy's (or the overrides') values. The
    full grid, with those fixed values as one-element lists, is stored on the sweep.
    """
    if strategy.owner_id != user.pk and not user.is_staff:
        raise BacktestInputError({"strategy": ["Not found."]})
    resolved = run_settings_resolve(strategy=strategy, start=start, end=end, overrides=overrides)
    errors: dict[str, Any] = {}
    if not isinstance(grid, Mapping) or not grid:
        raise BacktestInputError({"grid": ["Must map parameter names to lists of values."]})
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            errors.setdefault("grid", {})[name] = ["Must be a non-empty list of values."]
    if rank_metric not in RANKABLE_METRICS:
        errors["rank_metric"] = [f"Unknown metric. Choose one of: {', '.join(RANKABLE_METRICS)}."]
    if samples is not None and samples < 1:
        errors["samples"] = ["Must be at least 1."]
    if errors:
        raise BacktestInputError(errors)
    full_grid = {name: [value] for name, value in resolved.parameters.items()}
    full_grid.update({name: list(values) for name, values in grid.items()})
    try:
        combos = _sweep_combinations(resolved.kind, full_grid, samples, canonical_json(full_grid))
    except ParamValidationError as exc:
        raise BacktestInputError({"grid": exc.errors}) from exc
    if not combos:
        raise BacktestInputError(
            {"grid": [f"No combination satisfies the parameter rules of {resolved.kind}."]}
        )
    if len(combos) > settings.SWEEP_MAX_COMBINATIONS:
        raise BacktestInputError(
            {
                "grid": [
                    f"{len(combos)} combinations; at most {settings.SWEEP_MAX_COMBINATIONS} "
                    "run in one sweep. Narrow the grid or set samples."
                ]
            }
        )
    kind = get_kind(resolved.kind)
    needed = max(kind.min_bars(combo) for combo in combos)
    available = candle_count_at_least(
        instrument_id=resolved.instrument_id,
        timeframe=resolved.timeframe,
        start=start,
        end=end,
        bars=needed,
    )
    if available < needed:
        raise BacktestInputError(
            {"end": [f"The range has {available} candle(s); the grid needs at least {needed}."]}
        )
    fields = resolved.model_fields()
    fields.pop("parameters")
    sweep = Sweep(
        owner=user,
        strategy=strategy,
        grid=full_grid,
        samples=samples,
        rank_metric=rank_metric,
        combinations_total=len(combos),
        celery_task_id=str(uuid.uuid4()),
        **fields,
    )
    try:
        sweep.full_clean(exclude=["owner", "strategy", "instrument"], validate_constraints=False)
    except ValidationError as exc:
        raise BacktestInputError(_validation_errors(exc)) from exc
    sweep.save()
    sweep_id, task_id = sweep.pk, sweep.celery_task_id

    def enqueue() -> None:
        from backtests.tasks import launch_sweep

        launch_sweep.apply_async(args=[sweep_id], task_id=task_id)

    transaction.on_commit(enqueue)
    return sweep


def _sweep_settings(sweep: Sweep, parameters: Mapping[str, Any]) -> RunSettings:
    return RunSettings(
        kind=sweep.kind,
        parameters=dict(parameters),
        instrument_id=sweep.instrument_id,
        symbol=sweep.instrument.symbol,
        timeframe=sweep.timeframe,
        start=sweep.start,
        end=sweep.end,
        initial_capital=sweep.initial_capital,
        fee_rate=sweep.fee_rate,
        slippage_bps=sweep.slippage_bps,
        size_fraction=sweep.size_fraction,
        allow_short=sweep.allow_short,
        stop_loss_pct=sweep.stop_loss_pct,
        take_profit_pct=sweep.take_profit_pct,
    )


def sweep_combo_hash(sweep: Sweep, parameters: Mapping[str, Any], data_version: str) -> str:
    """The params hash a single backtest with these parameters would have: shared keys."""
    return hash_of(_sweep_settings(sweep, parameters).hash_payload(data_version=data_version))


def sweep_message(sweep: Sweep, *, kind: str = "progress", eta: float | None = None) -> dict:
    message: dict[str, Any] = {
        "type": kind,
        "sweep": sweep.pk,
        "status": sweep.status,
        "progress": round(float(sweep.progress), 2),
        "combinations_done": sweep.combinations_done,
        "combinations_total": sweep.combinations_total,
        "combinations_cached": sweep.combinations_cached,
        "eta_seconds": eta,
    }
    if kind == "final":
        message.update(
            {
                "error": sweep.error,
                "rank_metric": sweep.rank_metric,
                "best_parameters": sweep.best_parameters,
                "best_value": sweep.best_value,
            }
        )
    return message


def _sweep_send_on_commit(sweep: Sweep, kind: str = "progress") -> None:
    message = {"type": "run.message", "payload": sweep_message(sweep, kind=kind)}
    transaction.on_commit(lambda: group_send(sweep_group(sweep.pk), message))


def _summary(metrics: Mapping[str, Any], rank_metric: str) -> dict[str, Any]:
    # Rows keep the headline metrics and the ranking one; a full row is ~45 numbers.
    return {name: metrics.get(name) for name in (*HEADLINE_METRICS, rank_metric)}


def sweep_launch(*, sweep_id: int, task_id: str) -> None:
    """Start a sweep: answer cached combinations, then fan the rest out as a chord."""
    with transaction.atomic():
        sweep = Sweep.objects.select_for_update().select_related("instrument").get(pk=sweep_id)
        if sweep.status != RunStatus.QUEUED or sweep.celery_task_id != task_id:
            return
        sweep.status = RunStatus.RUNNING
        sweep.started_at = sweep.heartbeat_at = timezone.now()
        sweep.save(update_fields=["status", "started_at", "heartbeat_at"])
    # Ids can come back (SQLite after a rollback); a counter must start from nothing.
    sweep_computed_clear(sweep_id)
    try:
        combos = _sweep_combinations(
            sweep.kind, sweep.grid, sweep.samples, canonical_json(sweep.grid)
        )
        data_version = candle_data_version(
            instrument_id=sweep.instrument_id,
            timeframe=sweep.timeframe,
            start=sweep.start,
            end=sweep.end,
        )
        hashes = [sweep_combo_hash(sweep, combo, data_version) for combo in combos]
        found = cache_lookup_many(kinds=[SWEEP_ROW_KIND, BACKTEST_CACHE_KIND], params_hashes=hashes)
        cached_rows, remaining = [], []
        for combo, digest in zip(combos, hashes, strict=True):
            entry = found.get(digest)
            if entry is None:
                remaining.append(combo)
                continue
            payload = json.loads(cache_load(entry=entry))
            metrics = payload["metrics"] if entry.kind == BACKTEST_CACHE_KIND else payload
            cached_rows.append(
                {"params": combo, "metrics": _summary(metrics, sweep.rank_metric), "cached": True}
            )
        if remaining:
            # Read the candles once here, so the chunks all find the parquet copy.
            candles_load(
                instrument_id=sweep.instrument_id,
                timeframe=sweep.timeframe,
                start=sweep.start,
                end=sweep.end,
                data_version=data_version,
            )
    except Exception as exc:
        logger.exception("sweep %s could not start", sweep_id)
        _sweep_fail(sweep_id=sweep_id, error=readable_error(exc))
        return
    with transaction.atomic():
        Sweep.objects.filter(pk=sweep_id).update(
            combinations_total=len(combos),
            combinations_cached=len(cached_rows),
            combinations_done=len(cached_rows),
            progress=100.0 * len(cached_rows) / len(combos),
            results=cached_rows,
        )
    sweep.refresh_from_db()
    group_send(sweep_group(sweep_id), {"type": "run.message", "payload": sweep_message(sweep)})
    if not remaining:
        sweep_finish(sweep_id=sweep_id, chunk_results=[])
        return
    from celery import chord, group

    from backtests.tasks import finish_sweep, run_sweep_chunk

    size = settings.SWEEP_CHUNK_SIZE or -(-len(remaining) // AUTO_CHUNKS)
    chunks = [remaining[i : i + size] for i in range(0, len(remaining), size)]
    chord(group(run_sweep_chunk.s(sweep_id, chunk, data_version) for chunk in chunks))(
        finish_sweep.s(sweep_id)
    )


# How often one worker process may write a sweep's progress and heartbeat to its row. The
# WebSocket gets every throttled tick; the row only needs to show the reaper the sweep is
# alive (BACKTEST_STALE_AFTER_SECONDS) and a poller roughly where it is. On SQLite each of
# these writes holds the one database lock that every worker queues for.
SWEEP_ROW_WRITE_INTERVAL = 2.0
# Per sweep id, when this process last wrote that sweep's row; shared by its chunks.
_sweep_row_written: dict[int, float] = {}


class _SweepProgress:
    """A chunk's progress: a shared counter and channel messages; rarely a row write.

    Each throttled tick reads the sweep's status (a read takes no write lock), so a
    cancelled sweep's chunks stop at their next tick.
    """

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.throttle = ProgressThrottle(min_interval=settings.BACKTEST_PROGRESS_MIN_INTERVAL)
        self.reported = 0
        _sweep_row_written.setdefault(sweep.pk, time.monotonic())

    def __call__(self, done: int, total: int) -> None:
        if not self.throttle.should_emit(
            100.0 * done / total if total else 0.0, final=done == total
        ):
            return
        status = Sweep.objects.filter(pk=self.sweep.pk).values_list("status", flat=True).first()
        if status != RunStatus.RUNNING:
            raise BacktestCancelled
        delta, self.reported = done - self.reported, done
        computed = sweep_computed_add(self.sweep.pk, delta) if delta else None
        if computed is None:
            return
        sweep = self.sweep
        total_combos = max(sweep.combinations_total, 1)
        sweep.combinations_done = min(total_combos, sweep.combinations_cached + computed)
        sweep.progress = 100.0 * sweep.combinations_done / total_combos
        now = time.monotonic()
        if now - _sweep_row_written[sweep.pk] >= SWEEP_ROW_WRITE_INTERVAL:
            _sweep_row_written[sweep.pk] = now
            Sweep.objects.filter(pk=sweep.pk, status=RunStatus.RUNNING).update(
                combinations_done=sweep.combinations_done,
                progress=sweep.progress,
                heartbeat_at=timezone.now(),
            )
        message = sweep_message(sweep, eta=self.throttle.eta_seconds(sweep.progress))
        group_send(sweep_group(sweep.pk), {"type": "run.message", "payload": message})


def sweep_run_chunk(
    *, sweep_id: int, combinations: list[dict[str, Any]], data_version: str
) -> dict[str, Any]:
    """Backtest a chunk of a sweep's combinations with the engine's run_sweep.

    Compute only: the rows (with each combination's params hash and full metrics, JSON-safe)
    go back to the chord callback, which stores them all in one transaction. Parallel
    chunks therefore never queue for the database's write lock, and a failed sweep leaves
    no cache entries behind.
    """
    sweep = Sweep.objects.select_related("instrument").get(pk=sweep_id)
    if sweep.status != RunStatus.RUNNING:
        return {"rows": [], "error": None}
    try:
        candles, _ = candles_load(
            instrument_id=sweep.instrument_id,
            timeframe=sweep.timeframe,
            start=sweep.start,
            end=sweep.end,
            data_version=data_version,
            keep_in_memory=True,
        )
        frame = run_sweep(
            candles,
            sweep.kind,
            combinations,
            run_engine_config(sweep),
            progress=_SweepProgress(sweep),
        )
    except BacktestCancelled:
        return {"rows": [], "error": None}
    except Exception as exc:
        logger.exception("sweep %s: chunk failed", sweep_id)
        return {"rows": [], "error": readable_error(exc)}
    names = get_kind(sweep.kind).params.names()
    rows = []
    for record in frame.to_dict(orient="records"):
        params = {name: _plain(record[name]) for name in names}
        rows.append(
            {
                "params": params,
                "params_hash": sweep_combo_hash(sweep, params, data_version),
                "metrics": {name: _plain(record[name]) for name in METRIC_DEFINITIONS},
            }
        )
    return {"rows": rows, "error": None}


def _plain(value: Any) -> Any:
    """numpy scalars and NaN from a DataFrame row as JSON-ready Python values."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sweep_rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows best first by `metric`; rows without a value for it go last."""
    sign = 1.0 if metric in MINIMIZED_METRICS else -1.0

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row["metrics"].get(metric)
        return (1, 0.0) if value is None else (0, sign * float(value))

    return sorted(rows, key=key)


def sweep_finish(*, sweep_id: int, chunk_results: list[dict[str, Any]]) -> None:
    """The chord callback: store the computed rows, merge them with the cached ones, rank.

    One transaction stores every computed combination's cache entry and the ranked results,
    so a sweep either finishes with all of them or (failed, cancelled) with none.
    """
    try:
        _sweep_finish(sweep_id=sweep_id, chunk_results=chunk_results)
    finally:
        _sweep_row_written.pop(sweep_id, None)
        sweep_computed_clear(sweep_id)


@transaction.atomic
def _sweep_finish(*, sweep_id: int, chunk_results: list[dict[str, Any]]) -> None:
    sweep = Sweep.objects.select_for_update().get(pk=sweep_id)
    if sweep.status != RunStatus.RUNNING:
        return
    errors = [result["error"] for result in chunk_results if result.get("error")]
    if errors:
        _sweep_fail_locked(sweep, errors[0])
        return
    computed = [row for result in chunk_results for row in result["rows"]]
    cache_store_many(
        kind=SWEEP_ROW_KIND,
        contents={row["params_hash"]: json.dumps(row["metrics"]).encode() for row in computed},
        format=StorageFormat.JSON,
    )
    rows = list(sweep.results or [])
    rows.extend(
        {
            "params": row["params"],
            "metrics": _summary(row["metrics"], sweep.rank_metric),
            "cached": False,
        }
        for row in computed
    )
    ranked = sweep_rank(rows, sweep.rank_metric)
    best = ranked[0] if ranked and ranked[0]["metrics"].get(sweep.rank_metric) is not None else None
    sweep.results = ranked
    sweep.best_parameters = best["params"] if best else None
    sweep.best_value = best["metrics"][sweep.rank_metric] if best else None
    sweep.combinations_done = len(rows)
    sweep.status = RunStatus.SUCCEEDED
    sweep.progress = 100
    sweep.finished_at = timezone.now()
    sweep.save(
        update_fields=[
            "results",
            "best_parameters",
            "best_value",
            "combinations_done",
            "status",
            "progress",
            "finished_at",
        ]
    )
    _sweep_send_on_commit(sweep, kind="final")


def _sweep_fail_locked(sweep: Sweep, error: str) -> None:
    sweep.status = RunStatus.FAILED
    sweep.error = error
    sweep.finished_at = timezone.now()
    sweep.save(update_fields=["status", "error", "finished_at"])
    _sweep_send_on_commit(sweep, kind="final")


@transaction.atomic
def _sweep_fail(*, sweep_id: int, error: str) -> None:
    sweep = Sweep.objects.select_for_update().get(pk=sweep_id)
    if sweep.status in FINISHED_STATUSES:
        return
    _sweep_fail_locked(sweep, error)


@transaction.atomic
def sweep_cancel(*, sweep: Sweep) -> Sweep:
    locked = Sweep.objects.select_for_update().get(pk=sweep.pk)
    if locked.status in FINISHED_STATUSES:
        raise BacktestConflict(f"Sweep {locked.pk} has already {locked.status}.")
    locked.status = RunStatus.CANCELLED
    locked.error = "Cancelled."
    locked.finished_at = timezone.now()
    locked.save(update_fields=["status", "error", "finished_at"])
    _sweep_send_on_commit(locked, kind="final")
    return locked


def sweep_reap_stale(*, stale_after: timedelta | None = None) -> list[int]:
    """Fail sweeps whose workers have been silent too long; a chord cannot be resumed."""
    if stale_after is None:
        stale_after = timedelta(seconds=settings.BACKTEST_STALE_AFTER_SECONDS)
    cutoff = timezone.now() - stale_after
    stale = list(
        Sweep.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for sweep_id in stale:
        _sweep_fail(sweep_id=sweep_id, error="The workers running this sweep were lost.")
    return stale
