"""/ws/studies/<id>/: the state on connect, a message per trial with the counters and the
best so far, one per fold, and the final one; owners and staff only."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from config.asgi import application
from studies import services
from tests.factories import UserFactory
from tests.studies.conftest import submit

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def connect(study_id: int, user: Any) -> WebsocketCommunicator:
    path = f"/ws/studies/{study_id}/?token={AccessToken.for_user(user)}"
    return WebsocketCommunicator(application, path, headers=HEADERS)


def test_a_subscriber_follows_a_walk_forward_to_its_end(queue, study_strategy) -> None:
    study = submit(
        study_strategy,
        sampler="grid",
        search_space={"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}},
        walk_forward={"mode": "anchored", "in_sample": 300, "out_of_sample": 150},
    )
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)

    async def scenario() -> list[dict[str, Any]]:
        ws = connect(study.pk, study_strategy.owner)
        connected, _ = await ws.connect()
        assert connected
        messages = [await ws.receive_json_from(timeout=5)]
        await sync_to_async(queue.drain)()
        while messages[-1]["type"] != "final":
            messages.append(await ws.receive_json_from(timeout=10))
        await ws.disconnect()
        return messages

    messages = async_to_sync(scenario)()
    assert messages[0]["type"] == "state" and messages[0]["status"] == "running"
    trials = [m for m in messages if m["type"] == "trial"]
    assert len(trials) == 12
    done = [m["trials_done"] for m in trials]
    assert done == sorted(done) and done[-1] == 12 == trials[-1]["trials_total"]
    assert all({"params", "values", "state", "cache_hit"} <= set(m["trial"]) for m in trials)
    assert any(m["best_values"] for m in trials)
    folds = [m for m in messages if m["type"] == "fold"]
    assert [(m["fold"]["role"], m["fold"]["index"]) for m in folds] == [
        ("fold", 0),
        ("fold", 1),
        ("whole", 0),
    ]
    assert all(m["fold"]["chosen_parameters"] for m in folds)
    final = messages[-1]
    assert final["status"] == "succeeded" and final["progress"] == 100
    assert final["eta_seconds"] == 0.0 and final["best_parameters"]


def test_another_user_is_turned_away_and_staff_may_watch(queue, study_strategy) -> None:
    study = queue.run(submit(study_strategy, n_trials=2))

    async def scenario() -> None:
        ws = connect(study.pk, await sync_to_async(UserFactory)())
        connected, code = await ws.connect()
        assert not connected and code == 4403
        ws = connect(study.pk, await sync_to_async(UserFactory)(is_staff=True))
        connected, _ = await ws.connect()
        assert connected
        assert (await ws.receive_json_from(timeout=5))["type"] == "state"
        assert (await ws.receive_json_from(timeout=5))["type"] == "final"
        await ws.disconnect()

    async_to_sync(scenario)()
