"""Benchmark of the ML predictor; prints figures, asserts nothing.

    .venv/bin/python bench/ml.py [--feature-bars 1000000] [--bars 100000] [--repeat 3]

1. Feature building: the 20-feature "full" set over --feature-bars bars, against computing
   the same library indicators alone (the ratio is the cost of normalising, lagging and
   assembling the matrix).
2. Per model, one walk-forward fold on --bars bars: training on a 10,000-bar window and
   predicting the next 9,000 bars (default hyperparameters, one thread).
3. A 10-fold logistic-regression backtest over --bars bars, end to end (features, training,
   per-fold diagnostics, simulation).

Pure: no database. Prints the machine's load first, since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from backtests.engine.backtest import run_backtest  # noqa: E402
from strategies.library import indicators as ind  # noqa: E402
from strategies.library.base import StrategyRef  # noqa: E402
from strategies.library.ml.features import build_features  # noqa: E402
from strategies.library.ml.labels import DOWN, UP, make_labels  # noqa: E402
from strategies.library.ml.models import MODEL_NAMES, make_model, single_threaded  # noqa: E402

TRAIN_BARS = 10_000
PREDICT_BARS = 9_000


def candles(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.001, n))
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick),
            "low": np.minimum(open_, close) * (1 - wick),
            "close": close,
            "volume": rng.uniform(1, 100, n),
        },
        index=pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC"),
    )


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def indicators_alone(c: pd.DataFrame) -> None:
    h, lo, cl, v = c.high, c.low, c.close, c.volume
    ind.rsi(cl, 14)
    ind.macd(cl, 12, 26, 9)
    ind.bollinger(cl, 20, 2.0)
    ind.atr(h, lo, cl, 14)
    ind.adx(h, lo, cl, 14)
    ind.stochastic(h, lo, cl, 14, 3)
    ind.sma(cl, 20)
    ind.sma(v, 20)
    ind.rolling_std(v, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--feature-bars", type=int, default=1_000_000)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min): {os.getloadavg()}; cores: {os.cpu_count()}")

    big = candles(args.feature_bars)
    alone = median_time(lambda: indicators_alone(big), args.repeat)
    features = median_time(lambda: build_features(big, "full"), args.repeat)
    names, _ = build_features(big.iloc[:100], "full")
    print(
        f"features: {args.feature_bars:,} bars x {len(names)} features in {features:.2f} s; "
        f"the indicators alone {alone:.2f} s; ratio {features / alone:.2f}"
    )

    c = candles(args.bars, seed=1)
    _, matrix = build_features(c, "full")
    labels = make_labels(c.close.to_numpy(), 1, 0.0)
    lo, mid = 100, 100 + TRAIN_BARS
    keep = (labels[lo:mid] == UP) | (labels[lo:mid] == DOWN)
    x, y = matrix[lo:mid][keep], (labels[lo:mid][keep] == UP).astype(np.int8)
    x_pred = matrix[mid : mid + PREDICT_BARS]
    hyper = {"c": 1.0, "n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}
    for name in MODEL_NAMES:
        model = make_model(name, hyper, seed=0)
        with single_threaded():
            fit = median_time(partial(model.fit, x, y), args.repeat)
            predict = median_time(partial(model.predict_proba, x_pred), args.repeat)
        print(
            f"{name}: train {fit * 1000:.0f} ms on {TRAIN_BARS:,} bars, "
            f"predict {predict * 1000:.1f} ms for {PREDICT_BARS:,} bars (one fold)"
        )

    step = -(-(args.bars - 33 - TRAIN_BARS) // 10)
    ref = StrategyRef(
        "ml_predictor",
        {"model": 0, "lookahead": 1, "train_window": TRAIN_BARS, "retrain_step": step},
    )
    whole = median_time(lambda: run_backtest(c, ref), 1)
    print(
        f"logistic-regression backtest: {args.bars:,} bars, 10 folds of {step:,} bars, "
        f"with per-fold diagnostics: {whole:.2f} s"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
