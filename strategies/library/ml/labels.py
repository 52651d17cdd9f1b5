"""Labels: where the close is `lookahead` bars later, as up, down or flat.

The label of bar t needs the close of bar t + lookahead, so the last `lookahead` bars of
any series have none (`NO_LABEL`); training drops them, and walk-forward folds drop every
bar whose label would be known only inside or after the prediction window.
"""

from __future__ import annotations

import numpy as np

DOWN, FLAT, UP = -1, 0, 1
NO_LABEL = -2
CLASS_NAMES = {DOWN: "down", FLAT: "flat", UP: "up"}


def forward_return(close: np.ndarray, lookahead: int) -> np.ndarray:
    """close[t + lookahead] / close[t] - 1; NaN for the last `lookahead` bars."""
    if lookahead < 1:
        raise ValueError(f"lookahead must be at least 1, got {lookahead}")
    c = np.asarray(close, dtype=np.float64)
    out = np.full(len(c), np.nan)
    if lookahead < len(c):
        out[: len(c) - lookahead] = c[lookahead:] / c[: len(c) - lookahead] - 1.0
    return out


def classify(returns: np.ndarray, threshold: float) -> np.ndarray:
    """UP above +threshold, DOWN below -threshold, FLAT in the dead zone between, NO_LABEL
    where the return is unknown (NaN)."""
    if threshold < 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    labels = np.full(len(returns), FLAT, dtype=np.int8)
    labels[returns > threshold] = UP
    labels[returns < -threshold] = DOWN
    labels[np.isnan(returns)] = NO_LABEL
    return labels


def make_labels(close: np.ndarray, lookahead: int, threshold: float) -> np.ndarray:
    return classify(forward_return(close, lookahead), threshold)
