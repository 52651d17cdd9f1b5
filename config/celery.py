"""The Celery application; tasks are discovered from each app's `tasks.py`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("tradelab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
