"""Settings for the test suite: fast hashing, eager-free Celery, throttling off."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403
from config.settings.base import REST_FRAMEWORK, STATIC_ROOT

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "100000/minute", "user": "100000/minute"},
}
# Sign-up starts closed whatever the environment says; tests open it with `settings`.
REGISTRATION_OPEN = False
REGISTRATION_THROTTLE_RATE = "100000/minute"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Servers started by end-to-end tests serve the lab's static files straight from the apps,
# with no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
