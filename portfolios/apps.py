from __future__ import annotations

from django.apps import AppConfig


class PortfoliosConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "portfolios"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from portfolios.models import PortfolioRun

        # Progress ticks are noise in an audit trail; status changes are what matter.
        auditlog.register(PortfolioRun, exclude_fields=["progress"])
