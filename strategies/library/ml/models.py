"""The classifiers an ML predictor can train, built deterministically and single-threaded.

Worker processes are the unit of parallelism (a sweep runs many backtests at once), so a
model never starts threads of its own: n_jobs=1 for scikit-learn, nthread=1 for XGBoost,
and BLAS is held to one thread while fitting. Every model takes a fixed seed, so the same
inputs give the same trees and the same probabilities.

Models are saved in formats that hold no executable code: skops for scikit-learn (loaded
with an explicit list of trusted types) and XGBoost's own JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

# Model names in the order of their numeric code (the strategy's `model` parameter).
MODEL_NAMES: tuple[str, ...] = ("logistic_regression", "random_forest", "xgboost")
MODEL_LABELS = {
    "logistic_regression": "Logistic regression",
    "random_forest": "Random forest",
    "xgboost": "Gradient boosting (XGBoost)",
}


class UnknownModel(KeyError):
    def __str__(self) -> str:
        return f"unknown model {self.args[0]!r}; known models: {', '.join(MODEL_NAMES)}"


@contextmanager
def single_threaded() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def make_model(name: str, hyper: Mapping[str, Any], seed: int) -> Any:
    """An unfitted binary classifier with `fit(X, y)` and `predict_proba(X)`."""
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=float(hyper["c"]), max_iter=1000, random_state=seed),
        )
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=int(hyper["n_estimators"]),
            max_depth=int(hyper["max_depth"]),
            min_samples_leaf=5,
            random_state=seed,
            n_jobs=1,
        )
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=int(hyper["n_estimators"]),
            max_depth=int(hyper["max_depth"]),
            learning_rate=float(hyper["learning_rate"]),
            tree_method="hist",
            random_state=seed,
            n_jobs=1,
            verbosity=0,
        )
    raise UnknownModel(name)


def feature_importances(model: Any) -> np.ndarray:
    """The model's own importance per feature: |coefficient| on standardised features for
    logistic regression, impurity decrease for the forest, gain share for XGBoost."""
    if hasattr(model, "feature_importances_"):
        return np.asarray(model.feature_importances_, dtype=np.float64)
    coef = model[-1].coef_
    return np.abs(np.asarray(coef, dtype=np.float64)).ravel()


def model_to_bytes(name: str, model: Any) -> tuple[bytes, str]:
    """The fitted model in a safe format, and that format's name ("skops" or "xgboost-json")."""
    if name == "xgboost":
        raw = model.get_booster().save_raw(raw_format="json")
        return bytes(raw), "xgboost-json"
    import skops.io as sio

    return sio.dumps(model), "skops"


def model_from_bytes(name: str, payload: bytes, fmt: str) -> Any:
    """Load a model saved by `model_to_bytes`; never unpickles.

    skops refuses any type it does not know to be safe unless listed as trusted; only
    scikit-learn's and numpy's own types (a forest's `Tree`) are trusted here.
    """
    if fmt == "xgboost-json":
        from xgboost import XGBClassifier

        model = XGBClassifier()
        model.load_model(bytearray(payload))
        return model
    if fmt != "skops":
        raise ValueError(f"unknown model format {fmt!r}")
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=payload)
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if foreign:
        raise ValueError(f"refusing to load a model with untrusted types: {foreign}")
    return sio.loads(payload, trusted=untrusted)
