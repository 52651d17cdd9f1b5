"""The ML predictor: causal features, labels, purged walk-forward folds and the kind.

The leakage tests perturb every bar after t and require every feature and prediction at
or before t to stay bit-identical; the skill tests use a seeded random walk (no model may
beat chance beyond a binomial confidence interval) and a series with a planted pattern.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtests.engine.backtest import run_backtest
from strategies.library.base import ParamValidationError, StrategyRef
from strategies.library.indicators import IndicatorCache
from strategies.library.ml.features import FEATURE_SETS, FEATURES, build_features
from strategies.library.ml.kind import DIAGNOSTICS_KEY, MODEL_STORE_KEY
from strategies.library.ml.labels import DOWN, FLAT, NO_LABEL, UP, make_labels
from strategies.library.ml.models import MODEL_NAMES, make_model, model_from_bytes, model_to_bytes
from strategies.library.ml.walkforward import (
    Fold,
    LeakageError,
    WalkForwardSpec,
    check_purged,
    fold_windows,
    probability_targets,
    walk_forward,
)
from strategies.library.registry import get_kind

# Small models keep the suite fast; the behaviour under test does not depend on size.
SMALL = {"n_estimators": 15, "max_depth": 3}


def candles_from_returns(returns: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0, 0.002, len(close)))
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick),
            "low": np.minimum(open_, close) * (1 - wick),
            "close": close,
            "volume": rng.uniform(1, 10, len(close)),
        },
        index=pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC"),
    )


def random_walk(n: int, seed: int) -> pd.DataFrame:
    return candles_from_returns(np.random.default_rng(seed).normal(0, 0.01, n), seed)


def planted_momentum(n: int, seed: int, persistence: float = 0.85) -> pd.DataFrame:
    """Returns whose sign repeats with probability `persistence`: the next bar's direction
    is predictable from the last bar's return, which every feature set contains."""
    rng = np.random.default_rng(seed)
    flips = rng.random(n) > persistence
    sign = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    return candles_from_returns(sign * np.abs(rng.normal(0, 0.01, n)), seed)


def perturbed_after(candles: pd.DataFrame, t: int, seed: int = 99) -> pd.DataFrame:
    """The same candles up to bar t; every bar after t replaced by an unrelated path."""
    other = random_walk(len(candles), seed) * 3.0
    changed = candles.copy()
    changed.iloc[t + 1 :] = other.iloc[t + 1 :].to_numpy()
    return changed


def ml_params(model: int, **extra: object) -> dict[str, object]:
    return {
        "model": model,
        "lookahead": 1,
        "train_window": 200,
        "retrain_step": 60,
        **SMALL,
        **extra,
    }


# --- features ---------------------------------------------------------------------------


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_a_feature_at_bar_t_does_not_change_when_later_bars_change(feature_set: str) -> None:
    candles = random_walk(400, seed=1)
    for t in (40, 150, 398):
        _, before = build_features(candles, feature_set)
        _, after = build_features(perturbed_after(candles, t), feature_set)
        np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
        # The perturbation is real: some later feature did change.
        assert not np.array_equal(before[t + 1 :], after[t + 1 :]) or t == len(candles) - 1


def test_the_full_set_has_twenty_features_and_each_warms_up_when_it_says() -> None:
    names, matrix = build_features(random_walk(300, seed=2), "full")
    assert len(names) == 20
    for j, name in enumerate(names):
        first = int(np.argmax(~np.isnan(matrix[:, j])))
        assert first == FEATURES[name][1], name
        assert np.isfinite(matrix[first:, j]).all(), name


def test_indicator_features_are_normalised_so_price_level_does_not_matter() -> None:
    candles = random_walk(300, seed=3)
    scaled = candles.copy()
    scaled[["open", "high", "low", "close"]] *= 1000.0
    _, base = build_features(candles, "indicators")
    _, big = build_features(scaled, "indicators")
    np.testing.assert_allclose(big, base, rtol=1e-7, atol=1e-9)


# --- labels -----------------------------------------------------------------------------


def test_labels_classify_the_forward_return_with_a_dead_zone() -> None:
    close = np.array([100.0, 101.0, 100.9, 99.0, 99.05, 99.05])
    labels = make_labels(close, lookahead=1, threshold=0.005)
    # +1%, -0.1% (dead zone), -1.9%, +0.05% (dead zone), 0 (dead zone), unknown.
    assert labels.tolist() == [UP, FLAT, DOWN, FLAT, FLAT, NO_LABEL]


@pytest.mark.parametrize("lookahead", [1, 3, 10])
def test_the_last_lookahead_bars_have_no_label(lookahead: int) -> None:
    labels = make_labels(random_walk(50, seed=4).close.to_numpy(), lookahead, 0.0)
    assert (labels[-lookahead:] == NO_LABEL).all()
    assert (labels[:-lookahead] != NO_LABEL).all()


# --- folds and the purge ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lookahead", "purge", "embargo"), [(1, 0, 0), (5, 0, 0), (5, 3, 0), (10, 2, 7)]
)
def test_no_training_label_reaches_into_its_prediction_window(
    lookahead: int, purge: int, embargo: int
) -> None:
    folds = fold_windows(
        2000,
        first_predict=300,
        train_window=250,
        step=70,
        lookahead=lookahead,
        purge=purge,
        embargo=embargo,
    )
    assert folds[0].predict_start == 300 and folds[-1].predict_end == 2000
    for fold in folds:
        # The label of bar i is the close of bar i + lookahead.
        last_label_read = fold.train_end - 1 + lookahead
        assert last_label_read < fold.predict_start - purge - embargo
        assert fold.train_start == fold.predict_start - embargo - 250
        assert fold.train_end - fold.train_start == 250 - lookahead - purge
    check_purged(folds, lookahead)


def test_the_purge_check_rejects_a_fold_whose_label_horizon_overlaps_the_predictions() -> None:
    # Training ends one bar too late: the label of bar 94 reads bar 99 + 1 = 100.
    leaky = Fold(index=0, train_start=0, train_end=96, predict_start=100, predict_end=120)
    with pytest.raises(LeakageError, match="inside the prediction window"):
        check_purged([leaky], lookahead=5)
    check_purged([Fold(0, 0, 95, 100, 120)], lookahead=5)


def test_the_fold_grid_does_not_depend_on_how_many_bars_follow() -> None:
    short = fold_windows(
        900, first_predict=300, train_window=250, step=70, lookahead=3, purge=1, embargo=2
    )
    long = fold_windows(
        5000, first_predict=300, train_window=250, step=70, lookahead=3, purge=1, embargo=2
    )
    assert [f.train_start for f in short] == [f.train_start for f in long[: len(short)]]
    assert [f.predict_start for f in short] == [f.predict_start for f in long[: len(short)]]


# --- the kind: no lookahead, no skill from noise, planted skill, determinism --------------


@pytest.mark.parametrize("model", range(len(MODEL_NAMES)), ids=MODEL_NAMES)
def test_changing_bars_after_t_changes_no_prediction_at_or_before_t(model: int) -> None:
    kind = get_kind("ml_predictor")
    candles = random_walk(700, seed=5)
    params = kind.validate(ml_params(model, lookahead=3, purge=2, embargo=1))
    base = kind.run(candles, params, None).probability
    assert np.isfinite(base[-1])
    # t in the middle of a fold, at a fold's last bar and at a fold's first bar.
    first = kind.warmup_bars(params)
    for t in (first + 95, first + 119, first + 120):
        changed = kind.run(perturbed_after(candles, t), params, None).probability
        np.testing.assert_array_equal(changed[: t + 1], base[: t + 1])
        assert not np.array_equal(changed[t + 1 :], base[t + 1 :])


def _pooled_accuracy(kind_params: dict[str, object], candles: pd.DataFrame) -> tuple[int, int]:
    kind = get_kind("ml_predictor")
    result = kind.run(candles, kind.validate(kind_params), None)
    hits = sum(round(f.accuracy * f.test_bars) for f in result.folds if f.accuracy is not None)
    return hits, sum(f.test_bars for f in result.folds)


@pytest.mark.parametrize("model", range(len(MODEL_NAMES)), ids=MODEL_NAMES)
def test_on_a_random_walk_out_of_sample_accuracy_is_chance(model: int) -> None:
    """With lookahead 1 and symmetric i.i.d. returns, each out-of-sample hit is a fair coin
    independent of every earlier one, so the hit count is Binomial(N, 1/2): a model with
    no skill lands inside the 99.9% interval 1/2 +- 3.29 sqrt(1/(4N))."""
    hits, total = _pooled_accuracy(
        ml_params(model, train_window=500, retrain_step=500), random_walk(6000, seed=6)
    )
    assert total > 5000
    half_width = 3.29 * math.sqrt(0.25 / total)
    assert abs(hits / total - 0.5) < half_width, (hits / total, half_width)


@pytest.mark.parametrize("model", range(len(MODEL_NAMES)), ids=MODEL_NAMES)
def test_the_models_find_a_planted_pattern(model: int) -> None:
    hits, total = _pooled_accuracy(
        ml_params(model, train_window=300, retrain_step=300), planted_momentum(1500, seed=7)
    )
    # The pattern repeats the last direction 85% of the time; chance is 50%.
    assert total > 1000
    assert hits / total > 0.75, hits / total


@pytest.mark.parametrize("model", range(len(MODEL_NAMES)), ids=MODEL_NAMES)
def test_two_runs_with_the_same_params_give_identical_predictions(model: int) -> None:
    kind = get_kind("ml_predictor")
    candles = random_walk(600, seed=8)
    params = kind.validate(ml_params(model))
    first = kind.run(candles, params, None)
    second = kind.run(candles, params, IndicatorCache())
    np.testing.assert_array_equal(first.probability, second.probability)
    assert first.to_json() == second.to_json()


def test_a_backtest_of_the_ml_predictor_is_deterministic_and_reports_its_folds() -> None:
    candles = planted_momentum(900, seed=9)
    ref = StrategyRef("ml_predictor", ml_params(0))
    one = run_backtest(candles, ref)
    two = run_backtest(candles, ref)
    assert one.metrics == two.metrics
    assert one.position.equals(two.position)
    assert one.trades.equals(two.trades)
    cache = IndicatorCache()
    kind = get_kind("ml_predictor")
    target = kind.target_positions(candles, ref.params, cache)
    result = cache.get(DIAGNOSTICS_KEY, dict)["latest"]
    assert len(result.folds) == math.ceil((900 - kind.warmup_bars(kind.validate(ref.params))) / 60)
    fold = result.folds[0].to_json()
    assert set(fold["importances"]) == set(result.feature_names)
    assert set(fold["permutation_importances"]) == set(result.feature_names)
    assert sum(map(sum, fold["confusion"])) == fold["test_bars"]
    assert 0 <= fold["roc_auc"] <= 1
    # The planted pattern is tradable: the targets are mostly in the market.
    assert np.mean(target != 0) > 0.5


def test_models_trained_on_the_same_inputs_are_reused_from_the_store() -> None:
    saved: dict[str, tuple[bytes, str]] = {}

    class DictStore:
        def load(self, key: str) -> tuple[bytes, str] | None:
            return saved.get(key)

        def save(self, key: str, payload: bytes, fmt: str) -> None:
            saved[key] = (payload, fmt)

    candles = random_walk(600, seed=10)
    kind = get_kind("ml_predictor")
    for model in range(len(MODEL_NAMES)):
        params = kind.validate(ml_params(model))
        first_cache, second_cache = IndicatorCache(), IndicatorCache()
        first_cache.get(MODEL_STORE_KEY, DictStore)
        second_cache.get(MODEL_STORE_KEY, DictStore)
        first = kind.run(candles, params, first_cache)
        second = kind.run(candles, params, second_cache)
        assert not any(f.reused for f in first.folds)
        assert all(f.reused for f in second.folds)
        np.testing.assert_array_equal(first.probability, second.probability)
    assert {fmt for _, fmt in saved.values()} == {"skops", "xgboost-json"}


def test_a_skops_payload_with_a_foreign_type_is_refused() -> None:
    import skops.io as sio

    model = make_model("logistic_regression", {"c": 1.0}, seed=0)
    x = np.random.default_rng(0).normal(size=(40, 2))
    model.fit(x, (x[:, 0] > 0).astype(int))
    payload, fmt = model_to_bytes("logistic_regression", model)
    assert model_from_bytes("logistic_regression", payload, fmt).predict(x).tolist() == (
        model.predict(x).tolist()
    )
    foreign = sio.dumps({"model": pd.Timestamp("2024-01-01")})
    with pytest.raises(ValueError, match="untrusted"):
        model_from_bytes("logistic_regression", foreign, "skops")


def test_probabilities_become_long_short_or_flat_targets() -> None:
    p = np.array([np.nan, 0.9, 0.56, 0.5, 0.44, 0.1])
    assert probability_targets(p, 0.55).tolist() == [0, 1, 1, 0, -1, -1]
    sized = probability_targets(p, 0.55, sized=True)
    np.testing.assert_allclose(sized, [0, 0.8, 0.12, 0, -0.12, -0.8])
    assert probability_targets(p, 0.55, allow_short=False).tolist() == [0, 1, 1, 0, 0, 0]


# --- bad input --------------------------------------------------------------------------


def _errors(params: dict[str, object], candles: pd.DataFrame | None = None) -> dict:
    kind = get_kind("ml_predictor")
    with pytest.raises(ParamValidationError) as info:
        if candles is None:
            kind.validate(params)
        else:
            kind.target_positions(candles, params)
    return info.value.errors


def test_a_training_window_not_longer_than_lookahead_plus_purge_names_train_window() -> None:
    errors = _errors({"train_window": 30, "lookahead": 20, "purge": 10})
    assert list(errors) == ["train_window"]
    assert "lookahead (20) + purge (10)" in errors["train_window"][0]
    get_kind("ml_predictor").validate({"train_window": 31, "lookahead": 20, "purge": 10})


@pytest.mark.parametrize("value", ["momentum", 7, -1])
def test_a_feature_set_that_does_not_exist_names_feature_set(value: object) -> None:
    assert list(_errors({"feature_set": value})) == ["feature_set"]


def test_model_and_feature_set_are_accepted_by_name() -> None:
    cleaned = get_kind("ml_predictor").validate({"model": "xgboost", "feature_set": "returns"})
    assert cleaned["model"] == MODEL_NAMES.index("xgboost")
    assert cleaned["feature_set"] == list(FEATURE_SETS).index("returns")
    errors = _errors({"model": "svm", "lookahead": 0})
    assert set(errors) == {"model", "lookahead"}


def test_a_training_window_missing_a_class_names_train_window() -> None:
    rising = candles_from_returns(np.full(500, 0.001))
    errors = _errors(ml_params(0), rising)
    assert list(errors) == ["train_window"]
    assert "no 'down' label" in errors["train_window"][0]


def test_walk_forward_spec_counts_warmup_train_window_and_embargo() -> None:
    spec = WalkForwardSpec(
        "xgboost",
        "returns",
        1,
        0.0,
        train_window=100,
        step=10,
        embargo=4,
        hyper={"n_estimators": 5, "max_depth": 2, "learning_rate": 0.3},
    )
    result = walk_forward(random_walk(200, seed=11), spec, diagnostics=False)
    first = spec.first_prediction()
    assert first == 20 + 100 + 4
    assert np.isnan(result.probability[:first]).all()
    assert np.isfinite(result.probability[first:]).all()
    assert result.folds == []


def test_the_overlay_is_the_probability_the_kind_trades_on() -> None:
    kind = get_kind("ml_predictor")
    candles = random_walk(500, seed=12)
    params = ml_params(0)
    overlays = kind.overlays(candles, params)
    assert list(overlays) == ["oscillator: P(up)"]
    probability = kind.run(candles, kind.validate(params), None).probability
    np.testing.assert_array_equal(overlays["oscillator: P(up)"], probability)
    expected = probability_targets(probability, 0.55)
    np.testing.assert_array_equal(kind.target_positions(candles, params), expected)
