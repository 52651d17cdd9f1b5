"""Parameter sweeps: submit, launch (cached combinations answered at once, the rest fanned
out as a chord of chunks), chunk progress, ranking and storing the results, cancel, fail.

A sweep's combinations share the params-hash cache with single backtests: a combination
that was ever computed, as a run or in a sweep, is never computed again.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from backtests.engine import (
    HEADLINE_METRICS,
    METRIC_DEFINITIONS,
    ParamValidationError,
    expand_grid,
    grid_size,
    run_sweep,
    sample_grid,
)
from backtests.models import FINISHED_STATUSES, RunStatus, Sweep
from backtests.progress import (
    ProgressThrottle,
    group_send,
    sweep_computed_add,
    sweep_computed_clear,
    sweep_group,
)
from backtests.services.dispatch import sweep_chunks_dispatch, sweep_enqueue_on_commit
from backtests.services.errors import (
    BacktestCancelled,
    BacktestConflict,
    BacktestInputError,
    readable_error,
)
from backtests.services.run_settings import (
    BACKTEST_CACHE_KIND,
    RunSettings,
    candle_count_check,
    run_engine_config,
    run_settings_resolve,
)
from marketdata.selectors import candle_data_version, candles_load
from persistence.hashing import canonical_json
from persistence.hashing import params_hash as hash_of
from persistence.models import StorageFormat
from persistence.services import cache_load, cache_lookup_many, cache_store_many
from strategies.library.registry import get_kind
from strategies.models import Strategy

logger = logging.getLogger(__name__)

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
    }
)
RANKABLE_METRICS = tuple(name for name in METRIC_DEFINITIONS if name not in ("start", "end"))
AUTO_CHUNKS = 8


def _sweep_combinations(
    kind: str, grid: Mapping[str, list[Any]], samples: int | None, seed: str
) -> list[dict[str, Any]]:
    if samples is None:
        return expand_grid(kind, grid)
    # Seeded by the request, so the same sweep samples the same combinations: the launch
    # draws again exactly what the submit counted.
    return sample_grid(kind, grid, samples, seed)


# --- Submit ---------------------------------------------------------------------------


def _sweep_request_check(grid: Any, rank_metric: str, samples: int | None) -> None:
    errors: dict[str, Any] = {}
    if not isinstance(grid, Mapping):
        raise BacktestInputError({"grid": ["Must map parameter names to lists of values."]})
    if not grid:
        raise BacktestInputError(
            {"grid": ["The grid is empty: give at least one parameter a list of values to try."]}
        )
    for name, values in grid.items():
        if not isinstance(values, list):
            errors.setdefault("grid", {})[name] = ["Must be a list of values."]
        elif not values:
            errors.setdefault("grid", {})[name] = [
                f"The grid is empty: {name} has no value to try; give it at least one."
            ]
    if rank_metric not in RANKABLE_METRICS:
        errors["rank_metric"] = [f"Unknown metric. Choose one of: {', '.join(RANKABLE_METRICS)}."]
    if samples is not None and samples < 1:
        errors["samples"] = ["Must be at least 1."]
    if errors:
        raise BacktestInputError(errors)


def _sweep_grid_expand(
    resolved: RunSettings, grid: Mapping[str, Any], samples: int | None
) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """The full grid (fixed parameters as one-element lists) and the combinations it runs.

    The grid's size is counted (the product of its lists' lengths) before any combination
    is built: a grid over SWEEP_MAX_COMBINATIONS is refused unless `samples` draws at most
    that many from it, which sample_grid does without building the grid.
    """
    full_grid = {name: [value] for name, value in resolved.parameters.items()}
    full_grid.update({name: list(values) for name, values in grid.items()})
    limit = settings.SWEEP_MAX_COMBINATIONS
    size = grid_size(full_grid)
    if size > limit and samples is None:
        raise BacktestInputError(
            {
                "grid": [
                    f"{size} combinations; at most {limit} run in one sweep. "
                    "Narrow the grid or set samples."
                ]
            }
        )
    if size > limit and samples is not None and samples > limit:
        raise BacktestInputError(
            {
                "samples": [
                    f"samples is {samples}, above the cap: at most {limit} combinations run "
                    f"in one sweep, and this grid has {size}. Set samples to {limit} or fewer."
                ]
            }
        )
    try:
        combos = _sweep_combinations(resolved.kind, full_grid, samples, canonical_json(full_grid))
    except ParamValidationError as exc:
        raise BacktestInputError({"grid": exc.errors}) from exc
    if not combos:
        raise BacktestInputError(
            {"grid": [f"No combination satisfies the parameter rules of {resolved.kind}."]}
        )
    return full_grid, combos


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
    _sweep_request_check(grid, rank_metric, samples)
    full_grid, combos = _sweep_grid_expand(resolved, grid, samples)
    kind = get_kind(resolved.kind)
    candle_count_check(
        run_settings=resolved,
        needed=max(kind.min_bars(combo) for combo in combos),
        needed_by="the grid",
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
        raise BacktestInputError.from_validation_error(exc) from exc
    sweep.save()
    sweep_enqueue_on_commit(sweep_id=sweep.pk, task_id=sweep.celery_task_id)
    return sweep


# --- Messages -------------------------------------------------------------------------


def sweep_combo_hash(sweep: Sweep, parameters: Mapping[str, Any], data_version: str) -> str:
    """The params hash a single backtest with these parameters would have: shared keys."""
    run_settings = RunSettings.from_stored(sweep, parameters=parameters)
    return hash_of(run_settings.hash_payload(data_version=data_version))


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


# --- Launch ---------------------------------------------------------------------------


@transaction.atomic
def _sweep_start(*, sweep_id: int, task_id: str) -> Sweep | None:
    sweep = Sweep.objects.select_for_update().select_related("instrument").get(pk=sweep_id)
    if sweep.status != RunStatus.QUEUED or sweep.celery_task_id != task_id:
        return None
    sweep.status = RunStatus.RUNNING
    sweep.started_at = sweep.heartbeat_at = timezone.now()
    sweep.save(update_fields=["status", "started_at", "heartbeat_at"])
    return sweep


def _sweep_cached_rows(
    sweep: Sweep, combos: list[dict[str, Any]], data_version: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of combinations already in the cache (as sweep rows or whole runs), and
    the combinations left to compute."""
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
    return cached_rows, remaining


def _sweep_record_cached(
    sweep: Sweep, combos: list[dict[str, Any]], cached_rows: list[dict[str, Any]]
) -> None:
    with transaction.atomic():
        Sweep.objects.filter(pk=sweep.pk).update(
            combinations_total=len(combos),
            combinations_cached=len(cached_rows),
            combinations_done=len(cached_rows),
            progress=100.0 * len(cached_rows) / len(combos),
            results=cached_rows,
        )
    sweep.refresh_from_db()
    group_send(sweep_group(sweep.pk), {"type": "run.message", "payload": sweep_message(sweep)})


def sweep_launch(*, sweep_id: int, task_id: str) -> None:
    """Start a sweep: answer cached combinations, then fan the rest out as a chord."""
    sweep = _sweep_start(sweep_id=sweep_id, task_id=task_id)
    if sweep is None:
        return
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
        cached_rows, remaining = _sweep_cached_rows(sweep, combos, data_version)
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
        sweep_fail(sweep_id=sweep_id, error=readable_error(exc))
        return
    _sweep_record_cached(sweep, combos, cached_rows)
    if not remaining:
        sweep_finish(sweep_id=sweep_id, chunk_results=[])
        return
    size = settings.SWEEP_CHUNK_SIZE or -(-len(remaining) // AUTO_CHUNKS)
    chunks = [remaining[i : i + size] for i in range(0, len(remaining), size)]
    sweep_chunks_dispatch(sweep_id=sweep_id, chunks=chunks, data_version=data_version)


# --- Chunks ---------------------------------------------------------------------------

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


# --- Finish, fail, cancel -------------------------------------------------------------


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
    _sweep_save_ranked(sweep, rows)
    _sweep_send_on_commit(sweep, kind="final")


def _sweep_save_ranked(sweep: Sweep, rows: list[dict[str, Any]]) -> None:
    """Mark the locked `sweep` succeeded with `rows` ranked and the best of them picked."""
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


def _sweep_fail_locked(sweep: Sweep, error: str) -> None:
    sweep.status = RunStatus.FAILED
    sweep.error = error
    sweep.finished_at = timezone.now()
    sweep.save(update_fields=["status", "error", "finished_at"])
    _sweep_send_on_commit(sweep, kind="final")


@transaction.atomic
def sweep_fail(*, sweep_id: int, error: str) -> None:
    """Fail an unfinished sweep; one that has already finished is left as it is."""
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
