from __future__ import annotations

from django.apps import AppConfig


class StudiesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "studies"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from studies.models import Study

        # Counters and heartbeats are noise in an audit trail; status changes are what matter.
        auditlog.register(
            Study,
            exclude_fields=[
                "progress",
                "trials_done",
                "trials_cached",
                "trials_failed",
                "folds_done",
                "heartbeat_at",
                "watch_until",
            ],
        )
