from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from accounts.models import User

        auditlog.register(User, exclude_fields=["password", "last_login"])
