"""The progress WebSocket: owner or staff only, Origin checked, current state on connect."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from backtests import services
from config.asgi import application
from tests.backtests.conftest import END, T0

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def connect(path: str, user=None, origin=ORIGIN) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    if user is not None:
        path = f"{path}?token={AccessToken.for_user(user)}"
    return WebsocketCommunicator(application, path, headers=[origin, (b"host", b"localhost")])


@pytest.fixture
def finished_run(user, strategy):  # type: ignore[no-untyped-def]
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    return run


def test_a_late_subscriber_gets_the_state_and_the_final_message(user, finished_run) -> None:
    async def scenario() -> None:
        ws = connect(f"/ws/backtests/{finished_run.pk}/", user)
        connected, _ = await ws.connect()
        assert connected
        state = await ws.receive_json_from(timeout=5)
        assert state["type"] == "state" and state["status"] == "succeeded"
        final = await ws.receive_json_from(timeout=5)
        assert final["type"] == "final" and "sharpe" in final["metrics"]
        await ws.disconnect()

    async_to_sync(scenario)()


def test_another_user_is_turned_away(other_user, finished_run) -> None:
    async def scenario() -> None:
        ws = connect(f"/ws/backtests/{finished_run.pk}/", other_user)
        connected, code = await ws.connect()
        assert not connected and code == 4403

    async_to_sync(scenario)()


def test_staff_may_watch_any_run(staff_user, finished_run) -> None:
    async def scenario() -> None:
        ws = connect(f"/ws/backtests/{finished_run.pk}/", staff_user)
        connected, _ = await ws.connect()
        assert connected
        await ws.disconnect()

    async_to_sync(scenario)()


def test_anonymous_users_are_turned_away(finished_run) -> None:
    async def scenario() -> None:
        ws = connect(f"/ws/backtests/{finished_run.pk}/")
        connected, code = await ws.connect()
        assert not connected and code == 4401

    async_to_sync(scenario)()


def test_a_foreign_origin_is_rejected(user, finished_run) -> None:
    async def scenario() -> None:
        ws = connect(
            f"/ws/backtests/{finished_run.pk}/", user, origin=(b"origin", b"http://evil.example")
        )
        connected, _ = await ws.connect()
        assert not connected

    async_to_sync(scenario)()


def test_a_subscriber_arriving_mid_load_is_told_the_phase_and_its_count(user, strategy) -> None:
    from backtests.models import BacktestRun

    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END, enqueue=False)
    # A quarter of the way through loading 600 candles, as RunProgress leaves the row.
    BacktestRun.objects.filter(pk=run.pk).update(
        status="running", progress=10.0, bars_done=0, bars_total=600
    )

    async def scenario() -> None:
        ws = connect(f"/ws/backtests/{run.pk}/", user)
        connected, _ = await ws.connect()
        assert connected
        state = await ws.receive_json_from(timeout=5)
        assert state["type"] == "state" and state["phase"] == "loading candles"
        assert (state["phase_done"], state["phase_total"]) == (150, 600)
        assert (state["bars_done"], state["bars_total"]) == (0, 600)  # fields kept as they were
        await ws.disconnect()

    async_to_sync(scenario)()
