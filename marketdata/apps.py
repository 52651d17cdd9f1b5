from __future__ import annotations

from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from marketdata.models import Instrument

        auditlog.register(Instrument)
