"""Settings for a developer's machine and `make run`."""

from __future__ import annotations

from config.env import env_bool
from config.settings.base import *  # noqa: F403

DEBUG = env_bool("DEBUG", True)
# `make run` is where people try the app: let them sign up.
REGISTRATION_OPEN = env_bool("REGISTRATION_OPEN", True)
