"""Celery tasks for market data: thin wrappers that take ids and call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from marketdata import services


@shared_task(bind=True, name="marketdata.tasks.import_candle_upload")
def import_candle_upload(self: Any, upload_id: int) -> str | None:
    upload = services.candle_upload_execute(upload_id=upload_id, task_id=self.request.id or "")
    return None if upload is None else upload.status
