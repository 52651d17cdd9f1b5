from __future__ import annotations

from django.apps import AppConfig


class PersistenceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "persistence"

    def ready(self) -> None:
        from django.core.signals import request_started
        from django.db.backends.signals import connection_created

        from persistence.pool import sweep_dead_connections
        from persistence.postgres import install_tz_loader

        connection_created.connect(install_tz_loader, dispatch_uid="persistence.tz_loader")
        request_started.connect(sweep_dead_connections, dispatch_uid="persistence.pool_sweep")
