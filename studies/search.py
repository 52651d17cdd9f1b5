"""A study's search space, read from the strategy kind's ParamSpec, and its Optuna samplers.

A request names the parameters to search and may narrow each one; everything else comes
from the spec: the type (int, float or bool), the bounds, the step. The spec's cross-field
rules (fast < slow) are not part of the space: a sampled combination that breaks one is an
infeasible trial (told to Optuna as pruned), not an error. Pure: no Django.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from strategies.library.base import Param, StrategyKind

DIMENSION_KEYS = ("low", "high", "step", "log", "choices")
# Above this many combinations a grid study is refused: Optuna's grid sampler keeps the
# whole grid in every process that asks it for a trial.
MAX_GRID_SIZE = 100_000
# Floats compared to a step's multiple with this tolerance (0.1 * 3 is 0.30000000000000004).
_STEP_TOLERANCE = 1e-9


class SearchSpaceError(ValueError):
    """The requested search space does not fit the kind's spec; `errors` is per field."""

    def __init__(self, errors: Any) -> None:
        self.errors = errors
        super().__init__(f"invalid search space: {errors}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _multiple(span: float, step: float) -> bool:
    ratio = span / step
    return abs(ratio - round(ratio)) <= _STEP_TOLERANCE * max(1.0, abs(ratio))


def _choices(param: Param, raw: Any) -> tuple[list[Any] | None, list[str]]:
    if not isinstance(raw, list) or not raw:
        return None, ["Must be a non-empty list of values."]
    cleaned: list[Any] = []
    for value in raw:
        good, error = param.clean(value)
        if error is not None:
            return None, [f"{value!r}: {error}"]
        if good not in cleaned:
            cleaned.append(good)
    return cleaned, []


def _dimension(param: Param, raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """One parameter's dimension, normalised: {"type", "low", "high", "step", "log"} or
    {"type": "categorical", "choices"}; or the messages saying why it cannot be."""
    unknown = sorted(set(raw) - set(DIMENSION_KEYS))
    if unknown:
        return None, [f"Unknown key(s) {', '.join(unknown)}; use {', '.join(DIMENSION_KEYS)}."]
    if "choices" in raw:
        if set(raw) - {"choices"}:
            return None, ["Give either choices or low/high/step/log, not both."]
        choices, errors = _choices(param, raw["choices"])
        return ({"type": "categorical", "choices": choices} if choices else None), errors
    if param.type == "bool":
        return {"type": "categorical", "choices": [True, False]}, []
    bounds = {}
    for key, default in (("low", param.min), ("high", param.max)):
        value = raw.get(key, default)
        number = _number(value)
        if number is None:
            return None, [
                f"{key} must be a finite number."
                if key in raw
                else f"{param.name} has no {key} bound in the spec; give {key}."
            ]
        if param.type == "int" and not number.is_integer():
            return None, [f"{key} must be an integer: {param.name} is an integer parameter."]
        if param.min is not None and number < param.min:
            return None, [f"{key} must be at least {_fmt(param.min)}."]
        if param.max is not None and number > param.max:
            return None, [f"{key} must be at most {_fmt(param.max)}."]
        bounds[key] = number
    low, high = bounds["low"], bounds["high"]
    if low > high:
        return None, ["low must not be above high."]
    log = raw.get("log", False)
    if not isinstance(log, bool):
        return None, ["log must be true or false."]
    step_raw = raw.get("step", None if log else param.step)
    if log and step_raw is not None:
        return None, ["A log-scaled dimension takes no step."]
    if log and low <= 0:
        return None, ["A log-scaled dimension needs low above 0."]
    step = None
    if step_raw is not None:
        step = _number(step_raw)
        if step is None or step <= 0:
            return None, ["step must be a positive number."]
        if param.type == "int" and not step.is_integer():
            return None, ["step must be an integer: this is an integer parameter."]
        if not _multiple(high - low, step):
            return None, [f"high - low ({_fmt(high - low)}) must be a multiple of step."]
    if param.type == "int":
        return {
            "type": "int",
            "low": int(low),
            "high": int(high),
            "step": int(step or 1),
            "log": log,
        }, []
    return {"type": "float", "low": low, "high": high, "step": step, "log": log}, []


def search_space_resolve(kind: StrategyKind, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The normalised search space of a request for `kind`; None searches every parameter
    of the spec over its whole range. Raises SearchSpaceError."""
    params = {param.name: param for param in kind.params.params}
    if raw is None:
        raw = {name: {} for name in params}
    if not isinstance(raw, Mapping):
        raise SearchSpaceError(["Must map parameter names to their dimensions."])
    if not raw:
        raise SearchSpaceError(
            [
                f"The search space is empty: name at least one of {kind.name}'s parameters "
                f"({', '.join(params) or 'it has none'})."
            ]
        )
    space: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, dimension in raw.items():
        param = params.get(name)
        if param is None:
            errors[name] = [f"Unknown parameter. {kind.name} has: {', '.join(params) or 'none'}."]
            continue
        if not isinstance(dimension, Mapping):
            errors[name] = ["Must be an object: {low, high, step, log} or {choices}."]
            continue
        resolved, problems = _dimension(param, dimension)
        if problems:
            errors[name] = problems
        else:
            space[name] = resolved
    if errors:
        raise SearchSpaceError(errors)
    return space


def distributions(space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna's distribution for each dimension."""
    found: dict[str, BaseDistribution] = {}
    for name, dim in space.items():
        if dim["type"] == "categorical":
            found[name] = CategoricalDistribution(dim["choices"])
        elif dim["type"] == "int":
            found[name] = IntDistribution(dim["low"], dim["high"], step=dim["step"], log=dim["log"])
        else:
            found[name] = FloatDistribution(
                dim["low"], dim["high"], step=dim["step"], log=dim["log"]
            )
    return found


def grid_values(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every value of each dimension, for the grid sampler. Raises SearchSpaceError for a
    continuous dimension (a float with no step, or log-scaled)."""
    grid: dict[str, list[Any]] = {}
    errors: dict[str, list[str]] = {}
    for name, dim in space.items():
        if dim["type"] == "categorical":
            grid[name] = list(dim["choices"])
        elif dim["step"] is None:
            errors[name] = ["The grid sampler needs a step or a list of choices here."]
        else:
            count = round((dim["high"] - dim["low"]) / dim["step"]) + 1
            if count > MAX_GRID_SIZE:
                errors[name] = [f"{count} values; the grid allows at most {MAX_GRID_SIZE}."]
                continue
            values = [dim["low"] + i * dim["step"] for i in range(count)]
            grid[name] = (
                [int(v) for v in values] if dim["type"] == "int" else [round(v, 12) for v in values]
            )
    if errors:
        raise SearchSpaceError(errors)
    return grid


def grid_size(space: Mapping[str, Any]) -> int:
    return math.prod(len(values) for values in grid_values(space).values())


def trial_seed(seed: int, *parts: Any) -> int:
    """A 31-bit seed for one ask: the study's seed and the trial's place in it.

    Every ask builds its sampler afresh (the asking process changes from trial to trial), so
    a sampler seeded with the study's seed alone would draw the same "random" point each
    time; each slot gets a seed of its own instead, and the same study asks the same points.
    """
    text = ":".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def sampler_build(
    name: str,
    *,
    space: Mapping[str, Any],
    seed: int,
    n_trials: int,
    parallelism: int,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a study named `name` asks with.

    - grid: GridSampler over every value (grid ids follow trial numbers, so parallel askers
      never draw the same point);
    - random: RandomSampler;
    - tpe: TPESampler, with the constant liar when trials run in parallel (a running trial
      counts as a poor result, so parallel askers spread out);
    - nsga2: NSGAIISampler, with a population of n_trials / 4 (2 to 50) so that a study
      sees several generations.
    """
    with warnings.catch_warnings():
        # constant_liar is marked experimental; its behaviour is what we want and pinned.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "grid":
            return optuna.samplers.GridSampler(grid_values(space), seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=parallelism > 1)
        if name == "nsga2":
            population = max(2, min(50, n_trials // 4))
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    raise ValueError(f"unknown sampler {name!r}")
