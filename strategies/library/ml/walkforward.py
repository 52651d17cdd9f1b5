"""Walk-forward training: retrain every `step` bars on the window before, predict after.

The fold grid is fixed by the parameters alone (never by the series length), so a bar's
prediction cannot depend on how many bars follow it. Fold k predicts bars
[predict_start, predict_end); its model was trained on bars [train_start, train_end),
which end `embargo + purge + lookahead` bars before the prediction window: the label of
training bar i is the close of bar i + lookahead, so every label used is a close from
before the first predicted bar. `check_purged` asserts exactly that, on every run.

Training is binary, up against down: bars in the dead zone (flat) carry no direction to
learn and are left out, as are bars with no label. The prediction is P(up).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from strategies.library.indicators import IndicatorCache
from strategies.library.ml.features import build_features, feature_warmup
from strategies.library.ml.labels import DOWN, UP, make_labels
from strategies.library.ml.models import (
    feature_importances,
    make_model,
    model_from_bytes,
    model_to_bytes,
    single_threaded,
)

# Part of every trained model's key: bump when training or the features change.
TRAINING_VERSION = "1"
PERMUTATION_REPEATS = 3


class LeakageError(AssertionError):
    """A training label's horizon reaches into the window it is used to predict."""


class MissingClassError(ValueError):
    """A training window holds no bar of one class, so no classifier can be fitted."""

    def __init__(self, fold: int, missing: str, train_start: int, train_end: int) -> None:
        self.fold, self.missing = fold, missing
        super().__init__(
            f"fold {fold}: the training window (bars {train_start} to {train_end - 1}) has no "
            f"'{missing}' label; use a longer train_window or a smaller threshold"
        )


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: int
    train_end: int
    predict_start: int
    predict_end: int


@dataclass(frozen=True)
class WalkForwardSpec:
    model: str
    feature_set: str
    lookahead: int
    threshold: float
    train_window: int
    step: int
    purge: int = 0
    embargo: int = 0
    hyper: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def first_prediction(self) -> int:
        """The first bar with a prediction: every feature of the first training bar exists."""
        return feature_warmup(self.feature_set) + self.train_window + self.embargo


class ModelStore(Protocol):
    """Where trained models are kept between runs, by the hash of their training inputs."""

    def load(self, key: str) -> tuple[bytes, str] | None: ...

    def save(self, key: str, payload: bytes, fmt: str) -> None: ...


@dataclass
class FoldReport:
    """What one fold learned and how it did on the bars it predicted."""

    fold: Fold
    model_key: str
    reused: bool
    train_bars: int
    test_bars: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    roc_auc: float | None
    # Rows are the true class (down, up), columns the predicted one.
    confusion: list[list[int]]
    importances: dict[str, float]
    permutation_importances: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "fold": self.fold.index,
            "train_start": self.fold.train_start,
            "train_end": self.fold.train_end,
            "predict_start": self.fold.predict_start,
            "predict_end": self.fold.predict_end,
            "model_key": self.model_key,
            "reused": self.reused,
            "train_bars": self.train_bars,
            "test_bars": self.test_bars,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "roc_auc": self.roc_auc,
            "confusion": self.confusion,
            "importances": self.importances,
            "permutation_importances": self.permutation_importances,
        }


@dataclass
class WalkForwardResult:
    probability: np.ndarray  # P(up) per bar; NaN before the first fold
    feature_names: tuple[str, ...]
    folds: list[FoldReport]

    def to_json(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "folds": [f.to_json() for f in self.folds],
        }


def fold_windows(
    n: int,
    *,
    first_predict: int,
    train_window: int,
    step: int,
    lookahead: int,
    purge: int,
    embargo: int,
) -> list[Fold]:
    """The folds covering bars first_predict..n-1, each trained on the window before it."""
    folds = []
    for index, start in enumerate(range(first_predict, n, step)):
        window_end = start - embargo
        folds.append(
            Fold(
                index=index,
                train_start=window_end - train_window,
                train_end=window_end - lookahead - purge,
                predict_start=start,
                predict_end=min(start + step, n),
            )
        )
    return folds


def check_purged(folds: list[Fold], lookahead: int) -> None:
    """Raise LeakageError unless every training label is known before its fold predicts."""
    for f in folds:
        if f.train_start < 0 or f.train_end <= f.train_start:
            raise LeakageError(f"fold {f.index} has no training bars: {f}")
        last_label_bar = f.train_end - 1 + lookahead
        if last_label_bar >= f.predict_start:
            raise LeakageError(
                f"fold {f.index}: the label of training bar {f.train_end - 1} reads bar "
                f"{last_label_bar}, inside the prediction window from {f.predict_start}"
            )


def _model_key(spec: WalkForwardSpec, x: np.ndarray, y: np.ndarray) -> str:
    """The params hash of a model's training inputs: same inputs, same model."""
    digest = hashlib.sha256()
    head = {
        "version": TRAINING_VERSION,
        "model": spec.model,
        "hyper": {k: spec.hyper[k] for k in sorted(spec.hyper)},
        "seed": spec.seed,
        "shape": list(x.shape),
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _evaluate(
    model: Any, spec: WalkForwardSpec, names: tuple[str, ...], x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    if len(y) == 0:
        return {
            "accuracy": None,
            "precision": None,
            "recall": None,
            "roc_auc": None,
            "confusion": [[0, 0], [0, 0]],
            "permutation_importances": {},
        }
    p = model.predict_proba(x)[:, 1]
    pred = (p > 0.5).astype(np.int8)
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    roc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
    accuracy = (tp + tn) / len(y)
    return {
        "accuracy": accuracy,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "roc_auc": roc,
        "confusion": [[tn, fp], [fn, tp]],
        "permutation_importances": dict(
            zip(names, _permutation_importance(model, x, y, accuracy, spec.seed), strict=True)
        ),
    }


def _permutation_importance(
    model: Any, x: np.ndarray, y: np.ndarray, accuracy: float, seed: int
) -> list[float]:
    """Mean fall in out-of-sample accuracy when one feature's column is shuffled.

    Every shuffled copy is predicted in one call: per-call overhead, not arithmetic, is
    what a few hundred rows cost (sklearn's own helper calls the model once per copy).
    """
    rng = np.random.default_rng(seed)
    m, k = x.shape
    copies = np.repeat(x[np.newaxis], k * PERMUTATION_REPEATS, axis=0)
    for j in range(k):
        for r in range(PERMUTATION_REPEATS):
            copies[j * PERMUTATION_REPEATS + r, :, j] = x[rng.permutation(m), j]
    pred = model.predict_proba(copies.reshape(-1, k))[:, 1] > 0.5
    hits = (pred.reshape(k * PERMUTATION_REPEATS, m) == y.astype(bool)).mean(axis=1)
    return [float(accuracy - v) for v in hits.reshape(k, PERMUTATION_REPEATS).mean(axis=1)]


def check_classes(candles: pd.DataFrame, spec: WalkForwardSpec) -> None:
    """Raise MissingClassError for the first fold whose training labels lack up or down.

    Labels only, no features or models: cheap enough to run when a backtest is requested,
    so a window that could not be trained is refused before anything is saved.
    """
    close = np.asarray(candles["close"].to_numpy(dtype=np.float64))
    labels = make_labels(close, spec.lookahead, spec.threshold)
    folds = fold_windows(
        len(candles),
        first_predict=spec.first_prediction(),
        train_window=spec.train_window,
        step=spec.step,
        lookahead=spec.lookahead,
        purge=spec.purge,
        embargo=spec.embargo,
    )
    for fold in folds:
        train_labels = labels[fold.train_start : fold.train_end]
        for value, name in ((UP, "up"), (DOWN, "down")):
            if not np.any(train_labels == value):
                raise MissingClassError(fold.index, name, fold.train_start, fold.train_end)


def walk_forward(
    candles: pd.DataFrame,
    spec: WalkForwardSpec,
    *,
    cache: IndicatorCache | None = None,
    store: ModelStore | None = None,
    on_fold: Callable[[int, int], None] | None = None,
    diagnostics: bool = True,
) -> WalkForwardResult:
    """P(up) for every bar from the first fold on, training each fold on its past only.

    `store` reuses models trained on identical inputs; `on_fold(done, total)` reports
    progress; `diagnostics=False` skips the per-fold out-of-sample metrics.
    Raises MissingClassError when a training window lacks up or down bars.
    """
    n = len(candles)
    names, features = build_features(candles, spec.feature_set, cache)
    close = np.asarray(candles["close"].to_numpy(dtype=np.float64))
    labels = make_labels(close, spec.lookahead, spec.threshold)
    folds = fold_windows(
        n,
        first_predict=spec.first_prediction(),
        train_window=spec.train_window,
        step=spec.step,
        lookahead=spec.lookahead,
        purge=spec.purge,
        embargo=spec.embargo,
    )
    check_purged(folds, spec.lookahead)
    probability = np.full(n, np.nan)
    reports: list[FoldReport] = []
    if on_fold is not None:
        on_fold(0, len(folds))
    with single_threaded():
        for fold in folds:
            train_labels = labels[fold.train_start : fold.train_end]
            train_x = features[fold.train_start : fold.train_end]
            # Bad candles (a zero close) can leave a non-finite feature; such rows teach nothing.
            finite = np.isfinite(train_x).all(axis=1)
            keep = ((train_labels == UP) | (train_labels == DOWN)) & finite
            x = train_x[keep]
            y = (train_labels[keep] == UP).astype(np.int8)
            for value, name in ((1, "up"), (0, "down")):
                if not np.any(y == value):
                    raise MissingClassError(fold.index, name, fold.train_start, fold.train_end)
            key = _model_key(spec, x, y)
            stored = store.load(key) if store is not None else None
            if stored is not None:
                model = model_from_bytes(spec.model, *stored)
            else:
                model = make_model(spec.model, spec.hyper, spec.seed)
                model.fit(x, y)
                if store is not None:
                    store.save(key, *model_to_bytes(spec.model, model))
            x_pred = features[fold.predict_start : fold.predict_end]
            usable = np.isfinite(x_pred).all(axis=1)
            fold_p = np.full(len(x_pred), np.nan)
            if usable.any():
                fold_p[usable] = model.predict_proba(x_pred[usable])[:, 1]
            probability[fold.predict_start : fold.predict_end] = fold_p
            if diagnostics:
                test_labels = labels[fold.predict_start : fold.predict_end]
                known = ((test_labels == UP) | (test_labels == DOWN)) & usable
                y_test = (test_labels[known] == UP).astype(np.int8)
                scores = _evaluate(model, spec, names, x_pred[known], y_test)
                reports.append(
                    FoldReport(
                        fold=fold,
                        model_key=key,
                        reused=stored is not None,
                        train_bars=len(y),
                        test_bars=len(y_test),
                        importances={
                            nm: float(v)
                            for nm, v in zip(names, feature_importances(model), strict=True)
                        },
                        **scores,
                    )
                )
            if on_fold is not None:
                on_fold(fold.index + 1, len(folds))
    return WalkForwardResult(probability=probability, feature_names=names, folds=reports)


def probability_targets(
    probability: np.ndarray, entry_prob: float, *, sized: bool = False, allow_short: bool = True
) -> np.ndarray:
    """Target positions from P(up): long above `entry_prob`, short below 1 - entry_prob,
    flat between; `sized` scales the position by confidence, 2p - 1, instead of +-1."""
    p = np.asarray(probability, dtype=np.float64)
    target = np.zeros(len(p))
    with np.errstate(invalid="ignore"):
        long_ = p > entry_prob
        short = p < 1.0 - entry_prob
    strength = 2.0 * p - 1.0 if sized else np.ones(len(p))
    target[long_] = np.abs(strength[long_])
    if allow_short:
        target[short] = -np.abs(strength[short])
    return target
