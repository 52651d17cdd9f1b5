from __future__ import annotations

from django.apps import AppConfig


class TradingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "trading"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from trading.models import Fill, Order, Position, Trade

        for model in (Order, Fill, Position, Trade):
            auditlog.register(model)
