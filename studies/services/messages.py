"""What a study tells its WebSocket group (/ws/studies/<id>/), and when.

Message types: "state" (on connect), "progress" (the study moved: launched, a fold began or
finished), "trial" (one trial finished: its parameters, values and state, with the
counters, for the live optimisation history), "fold" (a walk-forward fold chose its
parameters and was tested out of sample) and "final". Every one carries the counters and
the best so far, so a client can draw from any single message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from backtests.progress import group_send
from studies.models import Study, StudyFold, StudyTrial

logger = logging.getLogger(__name__)

# Seconds a send may take before it is given up: a message lost is never worth a trial.
SEND_TIMEOUT = 5.0


def study_group(study_id: int) -> str:
    return f"study.{study_id}"


def eta_seconds(study: Study) -> float | None:
    """Linear: the time per finished trial so far, times the trials left."""
    if study.status != "running" or not study.started_at or study.trials_done <= 0:
        return None if study.status == "running" else 0.0
    elapsed = (timezone.now() - study.started_at).total_seconds()
    left = max(study.trials_total - study.trials_done, 0)
    return round(elapsed / study.trials_done * left, 1)


def fold_ref(fold: StudyFold | None) -> dict[str, Any] | None:
    return None if fold is None else {"role": fold.role, "index": fold.index}


def study_message(
    study: Study, *, kind: str = "progress", stage: StudyFold | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": kind,
        "study": study.pk,
        "status": study.status,
        "mode": study.mode,
        "progress": round(float(study.progress), 2),
        "trials_done": study.trials_done,
        "trials_total": study.trials_total,
        "trials_cached": study.trials_cached,
        "trials_failed": study.trials_failed,
        "folds_done": study.folds_done,
        "folds_total": study.folds_total,
        "stage": fold_ref(stage),
        "best_trial_number": study.best_trial_number,
        "best_values": study.best_values,
        "best_parameters": study.best_parameters,
        "eta_seconds": eta_seconds(study),
    }
    if kind == "final":
        message["error"] = study.error
    return message


def trial_message(study: Study, trial: StudyTrial, fold: StudyFold) -> dict[str, Any]:
    return {
        **study_message(study, kind="trial", stage=fold),
        "trial": {
            "id": trial.pk,
            "slot": trial.slot,
            "number": trial.number,
            "state": trial.state,
            "params": trial.params,
            "values": trial.values,
            "feasible": trial.feasible,
            "cache_hit": trial.cache_hit,
            "worker": trial.worker,
            "duration_seconds": trial.duration_seconds,
            "error": trial.error,
        },
    }


def fold_message(study: Study, fold: StudyFold) -> dict[str, Any]:
    return {
        **study_message(study, kind="fold", stage=fold),
        "fold": {
            "role": fold.role,
            "index": fold.index,
            "status": fold.status,
            "cache_hit": fold.cache_hit,
            "chosen_parameters": fold.chosen_parameters,
            "best_values": fold.best_values,
            "is_metrics": fold.is_metrics,
            "oos_metrics": fold.oos_metrics,
        },
    }


_loops: dict[int, asyncio.AbstractEventLoop] = {}


def _send(group: str, message: dict[str, Any]) -> None:
    """Send to a channel group from synchronous code, on an event loop kept for this process.

    `async_to_sync` builds a new event loop for every call, and channels_redis a new Redis
    connection for every loop: about 7 ms a message, once per trial. On a loop that lives
    as long as the process the connection is reused (a fraction of a millisecond). Only for
    the Redis layer: the in-memory one (tests, a shell) belongs to its consumers' loop.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
        inside_a_loop = True
    except RuntimeError:
        inside_a_loop = False
    if inside_a_loop or not type(layer).__module__.startswith("channels_redis"):
        group_send(group, message)
        return
    pid = os.getpid()  # a forked worker process must not share its parent's loop
    loop = _loops.get(pid)
    if loop is None or loop.is_closed():
        _loops.clear()
        loop = _loops[pid] = asyncio.new_event_loop()
    try:
        loop.run_until_complete(
            asyncio.wait_for(layer.group_send(group, message), timeout=SEND_TIMEOUT)
        )
    except Exception:  # the broker being briefly away must not fail a study
        logger.warning("could not send a study message to %s", group, exc_info=True)


def send_on_commit(study_id: int, payload: dict[str, Any]) -> None:
    message = {"type": "run.message", "payload": payload}
    transaction.on_commit(lambda: _send(study_group(study_id), message))
