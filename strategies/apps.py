from __future__ import annotations

from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "strategies"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from strategies.models import Strategy

        auditlog.register(Strategy)
