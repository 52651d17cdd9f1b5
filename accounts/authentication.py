"""JWT authentication that names the user as the actor of the request's audit entries, and
refuses tokens whose user id is not one.

auditlog's middleware takes the actor from `request.user` when the request arrives. DRF
authenticates a bearer token later, in the view, so every change made over the API with a
JWT was audited with no actor. This authentication class names the user in the request's
audit context as soon as the token is accepted.

simplejwt looks the token's `user_id` up as it finds it. A token signed with our key whose
`user_id` is text, a list or too large for the column made that lookup raise (a 500), and
`1.5` or `true` found user 1. Both the bearer check and the refresh endpoint
(SIMPLE_JWT's TOKEN_REFRESH_SERIALIZER) now refuse such a token with a 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auditlog.context import auditlog_value
from django.contrib.auth import get_user_model
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt import authentication, serializers
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings

MAX_USER_ID = 2**63 - 1  # a BIGINT primary key


def token_user_id(claims: Mapping[str, Any]) -> int:
    """The user id a token names, as the positive integer a user's primary key is; any other
    value (text, a list, a float, a bool, a number past a BIGINT) is an InvalidToken (401)."""
    value = claims.get(api_settings.USER_ID_CLAIM)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_USER_ID:
        raise InvalidToken("Token contained no recognizable user identification")
    return value


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

    def get_user(self, validated_token: Any) -> Any:
        token_user_id(validated_token)
        return super().get_user(validated_token)


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    """simplejwt's, which also answers 401 (not a 500) for a refresh token whose user id is
    not one, or whose user no longer exists."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        user_id = token_user_id(self.token_class(attrs["refresh"]).payload)
        users = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id})
        if not users.exists():
            raise AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            )
        return super().validate(attrs)


class JWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass of it."""

    target_class = "accounts.authentication.JWTAuthentication"
