"""Typed errors the engine raises instead of returning a number it cannot stand behind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from strategies.library.base import ParamValidationError


class EngineError(Exception):
    """Base class: the backtest could not be run as asked."""


class InvalidCandlesError(EngineError, ValueError):
    """The candles are malformed: unsorted or duplicate timestamps, NaN, high < low, ..."""


class InsufficientDataError(EngineError, ValueError):
    """Too few candles for the strategy's parameters to produce a trade."""


class InvalidConfigError(EngineError, ValueError):
    """A BacktestConfig field is outside its allowed range, or does not fit the candles.

    `errors` maps each offending field to its messages, like ParamValidationError, so a
    caller can show them next to the field.
    """

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {name: list(messages) for name, messages in errors.items()}
        described = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in self.errors.items())
        super().__init__(f"invalid backtest config: {described}")


class UnknownKindError(EngineError, KeyError):
    """The strategy names a kind the registry does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown strategy kind"


__all__ = [
    "EngineError",
    "InsufficientDataError",
    "InvalidCandlesError",
    "InvalidConfigError",
    "ParamValidationError",
    "UnknownKindError",
]
