"""WebSockets for live progress: /ws/backtests/<id>/ and /ws/sweeps/<id>/.

Only the owner or staff may subscribe (anyone else is closed with 4403, anonymous users
with 4401); the Origin header is checked by AllowedHostsOriginValidator in config.asgi.
On connect the consumer sends the current state, so a subscriber that arrives late (or
after the end) is never left waiting for a message that already went by.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth.models import AnonymousUser

from backtests import selectors
from backtests.models import FINISHED_STATUSES
from backtests.progress import run_group, sweep_group
from backtests.services import final_message, progress_message, sweep_message

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class _ProgressConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    group: str = ""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        object_id = int(self.scope["url_route"]["kwargs"]["pk"])
        state = await self._current_state(user, object_id)
        if state is None:
            # Someone else's run looks exactly like a run that does not exist.
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = self.group_name(object_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for message in state:
            await self.send_json(message)

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])

    def group_name(self, object_id: int) -> str:
        raise NotImplementedError

    async def _current_state(self, user: Any, object_id: int) -> list[dict[str, Any]] | None:
        raise NotImplementedError


class BacktestProgressConsumer(_ProgressConsumer):
    def group_name(self, object_id: int) -> str:
        return run_group(object_id)

    @database_sync_to_async
    def _current_state(self, user: Any, object_id: int) -> list[dict[str, Any]] | None:
        run = selectors.backtest_get(user=user, run_id=object_id)
        if run is None:
            return None
        if run.status in FINISHED_STATUSES:
            return [{**progress_message(run), "type": "state"}, final_message(run)]
        return [{**progress_message(run), "type": "state"}]


class SweepProgressConsumer(_ProgressConsumer):
    def group_name(self, object_id: int) -> str:
        return sweep_group(object_id)

    @database_sync_to_async
    def _current_state(self, user: Any, object_id: int) -> list[dict[str, Any]] | None:
        sweep = selectors.sweep_get(user=user, sweep_id=object_id)
        if sweep is None:
            return None
        state = [sweep_message(sweep, kind="state")]
        if sweep.status in FINISHED_STATUSES:
            state.append(sweep_message(sweep, kind="final"))
        return state


class JwtQueryAuthMiddleware:
    """Authenticates `?token=<JWT access token>` for clients that cannot send cookies.

    Runs inside AuthMiddlewareStack: a session user, when there is one, is kept.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
            if token:
                scope = {**scope, "user": await _user_for_token(token)}
        return await self.inner(scope, receive, send)


@database_sync_to_async
def _user_for_token(token: str) -> Any:
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

    auth = JWTAuthentication()
    try:
        return auth.get_user(auth.get_validated_token(token.encode()))
    except (InvalidToken, TokenError):
        return AnonymousUser()
    except Exception:  # a deleted user or a malformed claim is simply not a login
        return AnonymousUser()
