"""Typed errors the engine raises instead of returning a number it cannot stand behind."""

from __future__ import annotations

from strategies.library.base import ParamValidationError


class EngineError(Exception):
    """Base class: the backtest could not be run as asked."""


class InvalidCandlesError(EngineError, ValueError):
    """The candles are malformed: unsorted or duplicate timestamps, NaN, high < low, ..."""


class InsufficientDataError(EngineError, ValueError):
    """Too few candles for the strategy's parameters to produce a trade."""


class InvalidConfigError(EngineError, ValueError):
    """A BacktestConfig field is outside its allowed range."""


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
