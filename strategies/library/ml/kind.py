"""The `ml_predictor` strategy kind: walk-forward P(up) turned into target positions.

Choices (the model, the feature set) are numeric codes so sweeps and the lab's forms treat
them like any other parameter; the API also accepts their names. A run's per-fold
diagnostics land in the `IndicatorCache` it was given, in the dict under `DIAGNOSTICS_KEY`
(as "latest"), so the caller that made the cache can store them next to the run; a
`ModelStore` under `MODEL_STORE_KEY` and a fold-progress callback under `PROGRESS_KEY`
are used when the caller put them there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from strategies.library.base import (
    LessThan,
    Param,
    ParamSpec,
    ParamValidationError,
    ParamValue,
    StrategyKind,
    oscillator,
)
from strategies.library.indicators import IndicatorCache
from strategies.library.ml.features import FEATURE_SETS, feature_warmup
from strategies.library.ml.models import MODEL_LABELS, MODEL_NAMES
from strategies.library.ml.walkforward import (
    MissingClassError,
    ModelStore,
    WalkForwardResult,
    WalkForwardSpec,
    check_classes,
    probability_targets,
    walk_forward,
)
from strategies.library.registry import register

DIAGNOSTICS_KEY = ("ml", "walk_forward")
MODEL_STORE_KEY = ("ml", "model_store")
PROGRESS_KEY = ("ml", "on_fold")
SET_NAMES = tuple(FEATURE_SETS)


@dataclass(frozen=True)
class LongerThanSum(LessThan):
    """Cross-field rule `left > right + sum(also)`; a violation is reported on `left`."""

    also: tuple[str, ...] = ()

    def check(self, values: Mapping[str, ParamValue]) -> tuple[str, str] | None:
        names = (self.right, *self.also)
        total = sum(values[n] for n in names)
        if values[self.left] > total:
            return None
        parts = " + ".join(f"{n} ({values[n]})" for n in names)
        return self.left, self.message or f"Must be greater than {parts} = {total}."

    def to_json(self) -> dict[str, Any]:
        names = (self.right, *self.also)
        return {
            "rule": "gt_sum",
            "left": self.left,
            "right": self.right,
            "also": list(self.also),
            "field": self.left,
            "message": f"{self.left} must be greater than {' + '.join(names)}",
        }


def _codes(names: tuple[str, ...], labels: Mapping[str, str] | None = None) -> str:
    return ", ".join(f"{i} {labels[n] if labels else n}" for i, n in enumerate(names))


def spec_of(params: Mapping[str, Any]) -> WalkForwardSpec:
    """The walk-forward spec of validated params."""
    return WalkForwardSpec(
        model=MODEL_NAMES[int(params["model"])],
        feature_set=SET_NAMES[int(params["feature_set"])],
        lookahead=int(params["lookahead"]),
        threshold=float(params["threshold"]),
        train_window=int(params["train_window"]),
        step=int(params["retrain_step"]),
        purge=int(params["purge"]),
        embargo=int(params["embargo"]),
        hyper={
            "c": float(params["c"]),
            "n_estimators": int(params["n_estimators"]),
            "max_depth": int(params["max_depth"]),
            "learning_rate": float(params["learning_rate"]),
        },
        seed=int(params["seed"]),
    )


@register
class MlPredictor(StrategyKind):
    name = "ml_predictor"
    label = "ML predictor"
    description = (
        "A classifier predicts whether the close lookahead bars ahead is up or down. It is "
        "retrained every retrain_step bars on the train_window bars before (purged of every "
        "bar whose label is not yet known) and predicts only the bars after. Long when "
        "P(up) is above entry_prob, short below 1 - entry_prob, flat between."
    )
    allows_short = True
    params = ParamSpec(
        params=(
            Param(
                "model",
                "int",
                0,
                min=0,
                max=len(MODEL_NAMES) - 1,
                step=1,
                help=f"Model: {_codes(MODEL_NAMES, MODEL_LABELS)}.",
            ),
            Param(
                "feature_set",
                "int",
                len(SET_NAMES) - 1,
                min=0,
                max=len(SET_NAMES) - 1,
                step=1,
                help=f"Feature set: {_codes(SET_NAMES)}.",
            ),
            Param(
                "lookahead",
                "int",
                5,
                min=1,
                max=1000,
                step=1,
                help="Label horizon: bars between a bar and the close it predicts.",
            ),
            Param(
                "threshold",
                "float",
                0.0,
                min=0,
                max=0.5,
                step=0.0005,
                help="Dead zone: returns within +-threshold are flat and not trained on.",
            ),
            Param(
                "train_window",
                "int",
                1000,
                min=20,
                max=1_000_000,
                step=1,
                help="Bars in each training window.",
            ),
            Param(
                "retrain_step",
                "int",
                250,
                min=1,
                max=1_000_000,
                step=1,
                help="Bars predicted by each model before it is retrained.",
            ),
            Param(
                "purge",
                "int",
                0,
                min=0,
                max=100_000,
                step=1,
                help="Extra bars dropped from the end of each training window, on top of "
                "the lookahead bars whose labels are not yet known.",
            ),
            Param(
                "embargo",
                "int",
                0,
                min=0,
                max=100_000,
                step=1,
                help="Bars left out between each training window and the bars it predicts.",
            ),
            Param(
                "entry_prob",
                "float",
                0.55,
                min=0.5,
                max=1.0,
                step=0.01,
                help="Long above this P(up), short below 1 minus it.",
            ),
            Param(
                "confidence_sizing",
                "bool",
                False,
                help="Size positions by confidence (2 P(up) - 1) instead of all-in.",
            ),
            Param(
                "c",
                "float",
                1.0,
                min=0.0001,
                max=10_000,
                step=0.1,
                help="Logistic regression: inverse regularisation strength.",
            ),
            Param(
                "n_estimators",
                "int",
                100,
                min=1,
                max=2000,
                step=1,
                help="Random forest and XGBoost: number of trees.",
            ),
            Param(
                "max_depth",
                "int",
                3,
                min=1,
                max=32,
                step=1,
                help="Random forest and XGBoost: depth of each tree.",
            ),
            Param(
                "learning_rate",
                "float",
                0.1,
                min=0.001,
                max=1.0,
                step=0.01,
                help="XGBoost: shrinkage per tree.",
            ),
            Param(
                "seed",
                "int",
                0,
                min=0,
                max=2**31 - 1,
                step=1,
                help="Random seed: the same seed gives the same models.",
            ),
        ),
        rules=(LongerThanSum("train_window", "lookahead", also=("purge",)),),
    )

    def validate(self, params: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """Accept model and feature-set names as well as their codes."""
        if isinstance(params, Mapping):
            named: dict[str, object] = dict(params)
            errors: dict[str, list[str]] = {}
            for field, names in (("model", MODEL_NAMES), ("feature_set", SET_NAMES)):
                raw = named.get(field)
                if isinstance(raw, str) and not raw.strip().lstrip("-").isdigit():
                    if raw in names:
                        named[field] = names.index(raw)
                    else:
                        errors[field] = [
                            f"Unknown {field.replace('_', ' ')} {raw!r}. Known: {_codes(names)}."
                        ]
            if errors:
                try:
                    self.params.validate({k: v for k, v in named.items() if k not in errors})
                except ParamValidationError as exc:
                    errors = {**exc.errors, **errors}
                raise ParamValidationError(errors)
            params = named
        return self.params.validate(params)

    def warmup_bars(self, params: Mapping[str, Any]) -> int:
        return spec_of(params).first_prediction()

    def run(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None
    ) -> WalkForwardResult:
        """Walk-forward training over `candles`; a missing class is reported on train_window."""
        spec = spec_of(params)
        store: ModelStore | None = None
        on_fold = None
        if cache is not None:
            store = cache.get(MODEL_STORE_KEY, lambda: None)
            on_fold = cache.get(PROGRESS_KEY, lambda: None)
        try:
            return walk_forward(candles, spec, cache=cache, store=store, on_fold=on_fold)
        except MissingClassError as exc:
            raise ParamValidationError({"train_window": [str(exc)]}) from None

    def check_data(self, candles: pd.DataFrame, params: Mapping[str, Any]) -> None:
        try:
            check_classes(candles, spec_of(params))
        except MissingClassError as exc:
            raise ParamValidationError({"train_window": [str(exc)]}) from None

    def positions(
        self, candles: pd.DataFrame, params: Mapping[str, Any], cache: IndicatorCache | None = None
    ) -> np.ndarray:
        result = self.run(candles, params, cache)
        if cache is not None:
            # A sweep shares one cache across runs: the sink holds the latest run's result.
            cache.get(DIAGNOSTICS_KEY, dict)["latest"] = result
        return probability_targets(
            result.probability,
            float(params["entry_prob"]),
            sized=bool(params["confidence_sizing"]),
        )

    def overlays(
        self, candles: pd.DataFrame, params: Mapping[str, object]
    ) -> dict[str, np.ndarray]:
        """The predicted P(up), on a 0..1 axis of its own."""
        cleaned = self.validate(params)
        result = self.run(candles, cleaned, None)
        return {oscillator("P(up)"): result.probability}


__all__ = ["DIAGNOSTICS_KEY", "MODEL_STORE_KEY", "PROGRESS_KEY", "MlPredictor", "feature_warmup"]
