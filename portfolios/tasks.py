"""Celery tasks: thin wrappers that take ids and call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from portfolios import services


@shared_task(bind=True, name="portfolios.tasks.execute_portfolio")
def execute_portfolio(self: Any, run_id: int) -> str | None:
    run = services.portfolio_execute(run_id=run_id, task_id=self.request.id)
    return None if run is None else run.status
