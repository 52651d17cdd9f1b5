"""Strategy kinds and their parameter specs: what a kind accepts and how input is validated.

A `ParamSpec` is the single description of a kind's parameters. It validates input (with
per-field messages the API returns as a 400) and serialises to the JSON the API and UI show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from strategies.library.indicators import IndicatorCache

ParamType = Literal["int", "float", "bool"]
ParamValue = int | float | bool

# An overlay whose name starts with this is not on the price scale (RSI's 0 to 100, MACD's
# price differences): a chart draws it on a small axis of its own, named without the prefix.
OSCILLATOR_PREFIX = "oscillator: "


def oscillator(name: str) -> str:
    """The overlay name for a line that a chart must not draw on the price axis."""
    return OSCILLATOR_PREFIX + name


class ParamValidationError(ValueError):
    """Invalid strategy parameters; `errors` maps each field name to its messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors: dict[str, list[str]] = {name: list(msgs) for name, msgs in errors.items()}
        detail = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in self.errors.items())
        super().__init__(f"invalid strategy parameters: {detail}")


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default and inclusive bounds."""

    name: str
    type: ParamType
    default: ParamValue
    min: float | None = None
    max: float | None = None
    step: float | None = None
    help: str = ""

    def clean(self, raw: object) -> tuple[ParamValue | None, str | None]:
        """Coerce `raw` to this parameter's type; returns (value, error message)."""
        if self.type == "bool":
            if isinstance(raw, bool | np.bool_):
                return bool(raw), None
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true", None
            return None, "Must be true or false."
        # bool is an int subclass in Python; True as a window length is a mistake.
        if isinstance(raw, bool | np.bool_) or raw is None:
            return None, f"Must be {'an integer' if self.type == 'int' else 'a number'}."
        value: float
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None, f"Must be {'an integer' if self.type == 'int' else 'a number'}."
        if not math.isfinite(value):
            return None, "Must be a finite number."
        cleaned: ParamValue
        if self.type == "int":
            if value != int(value):
                return None, "Must be an integer."
            cleaned = int(value)
        else:
            cleaned = value
        if self.min is not None and cleaned < self.min:
            return None, f"Must be at least {_fmt(self.min)}."
        if self.max is not None and cleaned > self.max:
            return None, f"Must be at most {_fmt(self.max)}."
        return cleaned, None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "help": self.help,
        }


@dataclass(frozen=True)
class LessThan:
    """Cross-field rule `left < right`; a violation is reported on `left`."""

    left: str
    right: str
    message: str = ""

    def check(self, values: Mapping[str, ParamValue]) -> tuple[str, str] | None:
        if values[self.left] < values[self.right]:
            return None
        msg = self.message or f"Must be less than {self.right} ({_fmt(values[self.right])})."
        return self.left, msg

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": "lt",
            "left": self.left,
            "right": self.right,
            "field": self.left,
            "message": self.message or f"{self.left} must be less than {self.right}",
        }


def _fmt(value: float | int | bool) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class ParamSpec:
    """The parameters of a strategy kind and the rules that relate them."""

    params: tuple[Param, ...]
    rules: tuple[LessThan, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in spec: {names}")
        for rule in self.rules:
            if rule.left not in names or rule.right not in names:
                raise ValueError(f"rule {rule} names an unknown parameter")

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def validate(self, params: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """Return the cleaned parameters with defaults filled in, or raise with every error."""
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ParamValidationError({"params": ["Must be an object of parameter values."]})
        errors: dict[str, list[str]] = {}
        known = set(self.names())
        for name in params:
            if name not in known:
                allowed = ", ".join(self.names()) or "none"
                errors.setdefault(str(name), []).append(
                    f"Unknown parameter. Allowed parameters: {allowed}."
                )
        cleaned: dict[str, ParamValue] = {}
        for p in self.params:
            raw = params.get(p.name, p.default)
            value, error = p.clean(raw)
            if error is not None:
                errors.setdefault(p.name, []).append(error)
            else:
                assert value is not None
                cleaned[p.name] = value
        for rule in self.rules:
            # A rule is only meaningful once both of its fields are individually valid.
            if rule.left in cleaned and rule.right in cleaned:
                failure = rule.check(cleaned)
                if failure is not None:
                    errors.setdefault(failure[0], []).append(failure[1])
        if errors:
            raise ParamValidationError(errors)
        return cleaned

    def to_json(self) -> list[dict[str, Any]]:
        """Parameters in declaration order; each carries the cross-field rules it is part of."""
        out = []
        for p in self.params:
            entry = p.to_json()
            entry["rules"] = [r.to_json() for r in self.rules if p.name in (r.left, r.right)]
            out.append(entry)
        return out


@dataclass(frozen=True)
class StrategyRef:
    """What the engine receives: a registered kind's name and its raw parameters."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


class StrategyKind:
    """A family of strategies sharing a signal rule; subclasses register with @register.

    `target_positions` maps candles to the position wanted after each bar's close: +1 long,
    0 flat, -1 short (only where `allows_short`); a fraction in [-1, 1] asks for that share
    of the sizing mode's full size. The engine turns changes of that target into fills at
    the next bar's open.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    allows_short: ClassVar[bool] = False
    params: ClassVar[ParamSpec]

    def validate(self, params: Mapping[str, object] | None) -> dict[str, ParamValue]:
        return self.params.validate(params)

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        """Index of the first bar whose close can change the target position."""
        raise NotImplementedError

    def min_bars(self, params: Mapping[str, Any]) -> int:
        """Fewest candles with which the strategy can trade at all.

        The first bar that can move the target (`warmup_bars`) plus the next bar, whose open
        fills it.
        """
        return self.warmup_bars(self.validate(params)) + 2

    def positions(
        self,
        candles: pd.DataFrame,
        params: Mapping[str, Any],
        cache: IndicatorCache | None = None,
    ) -> np.ndarray:
        """Target positions for already-validated params; `cache` shares indicators."""
        raise NotImplementedError

    def target_positions(
        self,
        candles: pd.DataFrame,
        params: Mapping[str, object],
        cache: IndicatorCache | None = None,
    ) -> np.ndarray:
        """Validate `params`, then return one float target position per candle."""
        cleaned = self.validate(params)
        return self.positions(candles, cleaned, cache)

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        """The indicator lines the kind trades on, for a chart: one value per candle (NaN
        during warm-up), by the name a legend shows. `params` are validated first.

        Lines on the price scale are named plainly ("SMA 10"); a line on another scale is
        named with `oscillator(...)`. A kind that trades on no indicator has none.
        """
        self.validate(params)
        return {}

    def check_data(self, candles: pd.DataFrame, params: Mapping[str, Any]) -> None:
        """Refuse data these validated params cannot trade on, before anything is queued.

        Most kinds need only enough bars (`min_bars`); a kind that learns from the data (the
        ML predictor) also needs every training window to hold both classes. Raises
        ParamValidationError naming the parameter to change.
        """

    def spec_json(self) -> list[dict[str, Any]]:
        return self.params.to_json()

    def describe(self) -> dict[str, Any]:
        """Everything the API shows about the kind."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "allows_short": self.allows_short,
            "params": self.spec_json(),
        }
