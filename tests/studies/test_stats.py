"""The overfitting statistics against hand computations from their papers' formulas."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from studies import stats

PHI = NormalDist()


def test_expected_max_sharpe_is_the_false_strategy_theorem_by_hand() -> None:
    # Bailey & López de Prado (2014), eq. 2, with N = 10 and V = 0.04:
    # sqrt(0.04) * ((1 - gamma) Z⁻¹(0.9) + gamma Z⁻¹(1 - 1/(10e)))
    gamma = 0.5772156649015329
    expected = 0.2 * ((1 - gamma) * 1.2815515655446004 + gamma * PHI.inv_cdf(1 - 1 / (10 * math.e)))
    assert stats.expected_max_sharpe(n_trials=10, sharpe_variance=0.04) == pytest.approx(expected)
    assert stats.expected_max_sharpe(n_trials=1, sharpe_variance=0.04) == 0.0


def test_deflated_sharpe_ratio_reproduces_the_papers_worked_example() -> None:
    """The DSR paper's example: annualised SR 2.5 over T = 1250 daily returns (250 a year),
    skewness -3, kurtosis 10, N = 100 trials with annualised V[SR] = 0.5: DSR ≈ 0.9004."""
    sharpe = 2.5 / math.sqrt(250)
    benchmark = stats.expected_max_sharpe(n_trials=100, sharpe_variance=0.5 / 250)
    assert benchmark * math.sqrt(250) == pytest.approx(1.7885, abs=1e-3)
    value = stats.probabilistic_sharpe_ratio(
        sharpe=sharpe, benchmark=benchmark, observations=1250, skewness=-3.0, kurtosis=10.0
    )
    assert value == pytest.approx(0.9004, abs=5e-4)


def test_deflated_sharpe_ratio_uses_the_best_trials_moments_and_the_trials_variance() -> None:
    best = np.array([0.02, -0.01, 0.03, 0.00, 0.01, -0.02, 0.04, 0.01])
    sharpes = [0.1, 0.3, -0.2, 0.05]
    result = stats.deflated_sharpe_ratio(best_returns=best, trial_sharpes=sharpes)
    # By hand: SR = mean / sample std; skew, kurt from population moments; SR0 from N = 4.
    mean, std = best.mean(), best.std(ddof=1)
    centred = best - mean
    m2, m3, m4 = (centred**2).mean(), (centred**3).mean(), (centred**4).mean()
    sr, skew, kurt = mean / std, m3 / m2**1.5, m4 / m2**2
    variance = np.var(sharpes, ddof=1)
    gamma = 0.5772156649015329
    sr0 = math.sqrt(variance) * (
        (1 - gamma) * PHI.inv_cdf(1 - 1 / 4) + gamma * PHI.inv_cdf(1 - 1 / (4 * math.e))
    )
    z = (sr - sr0) * math.sqrt(len(best) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert result.sharpe == pytest.approx(sr)
    assert result.benchmark_sharpe == pytest.approx(sr0)
    assert result.skewness == pytest.approx(skew) and result.kurtosis == pytest.approx(kurt)
    assert result.value == pytest.approx(PHI.cdf(z))
    assert result.n_trials == 4 and result.observations == 8


def test_pbo_of_a_two_by_two_split_by_hand() -> None:
    """T = 4, N = 2, S = 2: blocks {rows 0,1} and {rows 2,3}; two combinations.

    Trial A earns in the first half only, trial B in the second half only. Whichever half is
    in-sample, its best is the other half's worst: rank 1 of 2, ω = 1/3, λ = ln(1/2) < 0.
    """
    matrix = np.array(
        [
            [0.02, 0.00],
            [0.03, -0.01],
            [-0.01, 0.02],
            [0.00, 0.03],
        ]
    )
    result = stats.probability_of_backtest_overfitting(matrix, splits=2)
    assert result.splits == 2 and result.combinations == 2
    assert result.logits == pytest.approx([math.log(0.5), math.log(0.5)], abs=1e-6)
    assert result.value == 1.0


def test_pbo_counts_a_selection_that_holds_out_of_sample_as_not_overfit() -> None:
    # A beats B in both halves: the in-sample best is the out-of-sample best, rank 2 of 2,
    # ω = 2/3, λ = ln 2 > 0 for both combinations.
    matrix = np.array([[0.03, 0.00], [0.01, 0.01], [0.04, -0.01], [0.02, 0.00]])
    result = stats.probability_of_backtest_overfitting(matrix, splits=2)
    assert result.logits == pytest.approx([math.log(2), math.log(2)], abs=1e-6)
    assert result.value == 0.0


def test_pbo_drops_the_oldest_rows_that_do_not_fill_a_block() -> None:
    matrix = np.random.default_rng(0).normal(size=(37, 3))
    result = stats.probability_of_backtest_overfitting(matrix, splits=4)
    assert result.rows_dropped == 1 and result.splits == 4 and result.combinations == 6


def test_on_pure_noise_pbo_is_high_and_dsr_is_low() -> None:
    rng = np.random.default_rng(42)
    noise = rng.normal(0.0, 0.01, size=(400, 100))
    pbo = stats.probability_of_backtest_overfitting(noise)
    assert pbo.value is not None and pbo.value >= 0.4
    sharpes = [stats.sharpe_ratio(noise[:, i]) for i in range(noise.shape[1])]
    best = int(np.argmax(sharpes))
    dsr = stats.deflated_sharpe_ratio(best_returns=noise[:, best], trial_sharpes=sharpes)
    # The best of 100 noise trials looks good on its own (PSR against 0 is high) ...
    psr = stats.probabilistic_sharpe_ratio(
        sharpe=dsr.sharpe,
        benchmark=0.0,
        observations=400,
        skewness=dsr.skewness,
        kurtosis=dsr.kurtosis,
    )
    assert psr is not None and psr > 0.9
    # ... and is no better than the best of 100 unskilled trials is expected to be.
    assert dsr.value is not None and dsr.value < 0.5


def test_a_planted_edge_has_a_low_pbo_and_a_high_dsr() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.normal(0.0, 0.01, size=(400, 50))
    matrix[:, 13] += 0.004  # a real edge: Sharpe ~0.4 per period, in every block
    pbo = stats.probability_of_backtest_overfitting(matrix)
    assert pbo.value is not None and pbo.value < 0.1
    sharpes = [stats.sharpe_ratio(matrix[:, i]) for i in range(50)]
    dsr = stats.deflated_sharpe_ratio(best_returns=matrix[:, 13], trial_sharpes=sharpes)
    assert int(np.argmax(sharpes)) == 13
    assert dsr.value is not None and dsr.value > 0.95


def test_period_returns_compound_back_to_the_curve() -> None:
    equity = np.array([101.0, 102.0, 99.0, 105.0, 110.0, 108.0, 111.0])
    returns = stats.period_returns(equity, initial=100.0, periods=3)
    assert len(returns) == 3
    assert np.prod(1 + returns) * 100.0 == pytest.approx(111.0)
    # Periods end at bars 1, 4 and 6 (rounded thirds of 7 bars).
    assert returns[0] == pytest.approx(102.0 / 100.0 - 1)


def test_flat_returns_have_a_zero_sharpe_and_undefined_statistics_say_none() -> None:
    assert stats.sharpe_ratio(np.zeros(10)) == 0.0
    one = stats.probability_of_backtest_overfitting(np.zeros((10, 1)))
    assert one.value is None
