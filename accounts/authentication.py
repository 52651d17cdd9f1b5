"""JWT authentication that names the user as the actor of the request's audit entries.

auditlog's middleware takes the actor from `request.user` when the request arrives. DRF
authenticates a bearer token later, in the view, so every change made over the API with a
JWT was audited with no actor. This authentication class names the user in the request's
audit context as soon as the token is accepted.
"""

from __future__ import annotations

from typing import Any

from auditlog.context import auditlog_value
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.request import Request
from rest_framework_simplejwt import authentication


def audit_actor(user: Any) -> None:
    """Name `user` as the actor of the audit entries still to come in this request."""
    try:
        context = auditlog_value.get()  # set by auditlog's middleware for this request
    except LookupError:
        return  # outside a request: nothing to name
    if context.get("actor") is None:
        context["actor"] = user


class JWTAuthentication(authentication.JWTAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            audit_actor(result[0])
        return result


class JWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass of it."""

    target_class = "accounts.authentication.JWTAuthentication"
