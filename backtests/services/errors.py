"""The errors the backtest services raise, and how a failure reads on a run or a sweep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError

from backtests.engine import EngineError, ParamValidationError


class BacktestInputError(Exception):
    """The request cannot be run; `errors` maps each field to its messages (a 400)."""

    def __init__(self, errors: Mapping[str, Any]) -> None:
        self.errors = dict(errors)
        super().__init__(f"invalid backtest request: {self.errors}")

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> BacktestInputError:
        """The per-field messages of a model's `full_clean()`, as the API reports them."""
        return cls(
            {
                field: [str(message) for message in messages]
                for field, messages in exc.message_dict.items()
            }
        )


class BacktestConflict(Exception):
    """The run is not in a state that allows this (a 409)."""


class BacktestCancelled(Exception):
    """Raised inside an execution once its run has been cancelled or taken over."""


def readable_error(exc: BaseException) -> str:
    """What a failed run or sweep shows its owner: the cause, without a traceback."""
    if isinstance(exc, ParamValidationError):
        return "Invalid parameters: " + "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.errors.items()
        )
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"Stopped: the backtest ran longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s."
    if isinstance(exc, EngineError):
        return str(exc)
    return f"Internal error ({type(exc).__name__}): {exc}"
