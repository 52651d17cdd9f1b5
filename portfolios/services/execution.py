"""Executing a portfolio run (the task's body): only the execution whose task id is on the
run may start or finish it, and a run's results (metrics, trades, the equity artifact, the
cache entry) are saved in the transaction that marks it succeeded, so a failed run has none
of them."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from backtests.engine.portfolio import PortfolioResult, run_portfolio
from backtests.models import FINISHED_STATUSES, RunStatus
from backtests.services import equity_parquet, readable_error
from marketdata.models import Instrument
from marketdata.selectors import (
    candles_load,
)
from persistence.downloads import PARQUET_MIME
from persistence.models import StorageFormat
from persistence.services import (
    artifact_save,
    cache_store,
)
from portfolios.models import (
    PortfolioRun,
    PortfolioTrade,
)
from portfolios.services.settings import (
    EQUITY_ARTIFACT,
    LOAD_SHARE,
    PORTFOLIO_CACHE_KIND,
    engine_config,
    engine_options,
)
from strategies.library.base import StrategyRef

logger = logging.getLogger(__name__)


@transaction.atomic
def _start(*, run_id: int, task_id: str) -> PortfolioRun | None:
    run = PortfolioRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status in FINISHED_STATUSES:
        return None
    if run.celery_task_id and run.celery_task_id != task_id:
        logger.info("portfolio %s: ignoring superseded task %s", run_id, task_id)
        return None
    run.status = RunStatus.RUNNING
    run.celery_task_id = task_id
    run.started_at = timezone.now()
    run.progress = 0
    run.error = ""
    run.save(update_fields=["status", "celery_task_id", "started_at", "progress", "error"])
    return run


@transaction.atomic
def _fail(*, run_id: int, task_id: str, error: str) -> None:
    run = PortfolioRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
        return
    run.status = RunStatus.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])


def _progress(run: PortfolioRun, percent: float) -> None:
    PortfolioRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(progress=percent)


def json_safe(value: Any) -> Any:
    """Metrics as JSON: NaN and infinities (which PostgreSQL's jsonb refuses) become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _amount(value: float, places: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places))


def trades_save(*, run: PortfolioRun, trades: pd.DataFrame, ids: Mapping[str, int]) -> int:
    """The engine's trades as PortfolioTrade rows (amounts as Decimal), in one bulk insert."""
    rows = [
        PortfolioTrade(
            run=run,
            instrument_id=ids[str(trade.instrument)],
            side=str(trade.direction),
            entry_time=trade.entry_time.to_pydatetime(),
            exit_time=trade.exit_time.to_pydatetime(),
            entry_price=_amount(trade.entry_price, 10),
            exit_price=_amount(trade.exit_price, 10),
            quantity=_amount(trade.quantity, 18),
            pnl=_amount(trade.pnl, 8),
            pnl_pct=float(trade.pnl_pct),
            fees=_amount(trade.fees, 8),
            exit_reason=str(trade.exit_reason),
            is_open=bool(trade.is_open),
        )
        for trade in trades.itertuples(index=False)
    ]
    PortfolioTrade.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


@transaction.atomic
def _complete(
    *, run_id: int, task_id: str, result: PortfolioResult, ids: Mapping[str, int]
) -> PortfolioRun | None:
    run = PortfolioRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
        return None  # taken over by another execution: this one's results are dropped
    metrics = json_safe(result.metrics)
    trades_save(run=run, trades=result.trades, ids=ids)
    artifact_save(
        name=EQUITY_ARTIFACT,
        mime_type=PARQUET_MIME,
        content=equity_parquet(result),
        params_hash=run.params_hash,
    )
    cache_store(
        kind=PORTFOLIO_CACHE_KIND,
        params_hash=run.params_hash,
        content=json.dumps({"run": run.pk, "metrics": metrics}).encode(),
        format=StorageFormat.JSON,
        row_count=len(result.trades),
    )
    run.status = RunStatus.SUCCEEDED
    run.metrics = metrics
    run.bars = len(result.equity)
    run.progress = 100
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "metrics", "bars", "progress", "finished_at"])
    return run


def run_candles(run: PortfolioRun) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Each instrument's candles over the run's range, by symbol in the run's order, and the
    symbols' instrument ids."""
    members = list(run.members.select_related("instrument").order_by("position"))
    candles: dict[str, pd.DataFrame] = {}
    for done, member in enumerate(members, start=1):
        frame, _ = candles_load(
            instrument_id=member.instrument_id,
            timeframe=run.timeframe,
            start=run.start,
            end=run.end,
        )
        candles[member.instrument.symbol] = frame
        _progress(run, LOAD_SHARE * done / len(members))
    return candles, {m.instrument.symbol: m.instrument_id for m in members}


def portfolio_execute(*, run_id: int, task_id: str) -> PortfolioRun | None:
    """Run the portfolio backtest for `run_id` as execution `task_id`; the task's body.

    Not atomic as a whole on purpose: progress must be visible while it runs. Starting,
    failing and completing are each their own transaction.
    """
    run = _start(run_id=run_id, task_id=task_id)
    if run is None:
        return None
    try:
        candles, ids = run_candles(run)
        calendar = Instrument.objects.get(pk=next(iter(ids.values()))).calendar
        result = run_portfolio(
            candles,
            StrategyRef(kind=run.kind, params=run.parameters),
            engine_config(run, calendar=calendar),
            **engine_options(run),
        )
        _progress(run, 95.0)
        return _complete(run_id=run_id, task_id=task_id, result=result, ids=ids)
    except Exception as exc:
        logger.exception("portfolio %s failed", run_id)
        _fail(run_id=run_id, task_id=task_id, error=readable_error(exc))
        return None
