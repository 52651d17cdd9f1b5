"""Submitting a portfolio run: validated field by field, answered from the params-hash
cache when it can, else queued for a worker once the run is committed."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from backtests.models import RunStatus
from backtests.services import BacktestInputError
from backtests.services.runs import cached_source
from portfolios.models import (
    Allocation,
    PortfolioInstrument,
    PortfolioRun,
    Rebalance,
)
from portfolios.services.settings import (
    PORTFOLIO_CACHE_KIND,
    portfolio_key,
    portfolio_settings_resolve,
)


@transaction.atomic
def portfolio_submit(
    *,
    user: User,
    name: str = "",
    kind: str,
    parameters: Any = None,
    instruments: Any,
    timeframe: str,
    start: datetime,
    end: datetime,
    initial_capital: Any = Decimal("10000"),
    fee_rate: Any = Decimal("0.001"),
    slippage_bps: Any = Decimal("0"),
    allocation: str = Allocation.EQUAL,
    weights: Any = None,
    max_positions: Any = None,
    rebalance: str = Rebalance.CHANGE,
    drift_threshold: Any = None,
    use_cache: bool = True,
    enqueue: bool = True,
) -> PortfolioRun:
    """Create a portfolio run; a cache hit returns it already succeeded, with no task.

    On a miss the run is queued and its Celery task enqueued once this transaction
    commits. `enqueue=False` leaves the queued run for the caller to execute in-process.
    """
    if not isinstance(name, str) or len(name) > 200:
        raise BacktestInputError({"name": ["At most 200 characters."]})
    settings = portfolio_settings_resolve(
        kind=kind,
        parameters=parameters,
        instruments=instruments,
        timeframe=timeframe,
        start=start,
        end=end,
        initial_capital=initial_capital,
        fee_rate=fee_rate,
        slippage_bps=slippage_bps,
        allocation=allocation,
        weights=weights,
        max_positions=max_positions,
        rebalance=rebalance,
        drift_threshold=drift_threshold,
    )
    params_hash = portfolio_key(settings=settings)
    run = PortfolioRun(
        owner=user,
        name=name,
        kind=settings.kind,
        parameters=settings.parameters,
        timeframe=settings.timeframe,
        start=settings.start,
        end=settings.end,
        initial_capital=settings.initial_capital,
        fee_rate=settings.fee_rate,
        slippage_bps=settings.slippage_bps,
        allocation=settings.allocation,
        weights=settings.weights,
        max_positions=settings.max_positions,
        rebalance=settings.rebalance,
        drift_threshold=settings.drift_threshold,
        params_hash=params_hash,
    )
    cached = (
        cached_source(PortfolioRun, kind=PORTFOLIO_CACHE_KIND, params_hash=params_hash)
        if use_cache
        else None
    )
    if cached is not None:
        source, summary = cached
        now = timezone.now()
        run.status = RunStatus.SUCCEEDED
        run.cache_hit = True
        run.shared_from = source
        run.metrics = summary.get("metrics", source.metrics)
        run.bars = source.bars
        run.progress = 100
        run.started_at = run.finished_at = now
    else:
        run.celery_task_id = str(uuid.uuid4())
    run.save()
    PortfolioInstrument.objects.bulk_create(
        PortfolioInstrument(portfolio=run, instrument=instrument, position=position)
        for position, instrument in enumerate(settings.instruments)
    )
    if cached is None and enqueue:
        _enqueue_on_commit(run_id=run.pk, task_id=run.celery_task_id)
    return run


def _enqueue_on_commit(*, run_id: int, task_id: str) -> None:
    def enqueue() -> None:
        # Imported here: the tasks import these services.
        from portfolios.tasks import execute_portfolio

        execute_portfolio.apply_async(args=[run_id], task_id=task_id)

    transaction.on_commit(enqueue)
