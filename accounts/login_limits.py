"""Limits on failed logins: django-axes' database handler, with a narrower reset on success.

Axes counts failures per user (from any client) and per client address (across users), and
refuses further attempts past `AXES_FAILURE_LIMIT` until the cool-off passes. See the axes
settings in `config/settings/base.py`.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.http import HttpRequest


class LoginLimitHandler(AxesDatabaseHandler):  # type: ignore[misc]
    """A successful login forgets only its own user's failures from its own address.

    Axes' reset deletes every attempt matching any lockout parameter, so one good login
    would also wipe the address's failures at other users: whoever owns an account could
    log into it between guesses at someone else's and never reach the limit.
    """

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        deleted, _ = AccessAttempt.objects.filter(
            username=get_client_username(request, credentials),
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
        ).delete()
        return deleted
