from __future__ import annotations

from django.apps import AppConfig


class BacktestsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "backtests"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from backtests.models import BacktestRun, Sweep

        for model in (BacktestRun, Sweep):
            # Progress ticks are noise in an audit trail; status changes are what matter.
            auditlog.register(model, exclude_fields=["progress", "bars_done", "combinations_done"])
