"""WebSocket for a study's live progress: /ws/studies/<id>/.

The same rules as the backtests' consumers (their base class): owner or staff only (4403
otherwise, 4401 anonymous), and the current state on connect, with the final message too
when the study has already finished. Messages are described in studies.services.messages.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from backtests.consumers import _ProgressConsumer
from backtests.models import FINISHED_STATUSES
from studies import selectors
from studies.services.messages import study_group, study_message


class StudyProgressConsumer(_ProgressConsumer):
    def group_name(self, object_id: int) -> str:
        return study_group(object_id)

    @database_sync_to_async
    def _current_state(self, user: Any, object_id: int) -> list[dict[str, Any]] | None:
        study = selectors.study_get(user=user, study_id=object_id)
        if study is None:
            return None
        state = [study_message(study, kind="state")]
        if study.status in FINISHED_STATUSES:
            state.append(study_message(study, kind="final"))
        return state
