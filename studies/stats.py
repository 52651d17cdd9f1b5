"""Overfitting statistics of a set of trials: the Deflated Sharpe Ratio of the best one and the
Probability of Backtest Overfitting of the selection. Pure numpy and the standard library.

Both read per-period returns (see `period_returns`): every trial of a study is measured on
the same periods, so their Sharpe ratios are comparable and the T x N matrix of CSCV exists.
Sharpe ratios here are per period, never annualised: the formulas are stated for the
frequency of the returns they are computed from.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

EULER_GAMMA = 0.5772156649015329
# Blocks CSCV splits the T rows into (S, even): C(16, 8) = 12,870 combinations, the paper's
# own choice, small enough to evaluate in full.
PBO_SPLITS = 16
# Combinations evaluated per numpy batch: bounds the (batch x S/2 x N) intermediate arrays.
_COMBINATION_BATCH = 512

_NORMAL = NormalDist()


def period_returns(equity: np.ndarray, *, initial: float, periods: int) -> np.ndarray:
    """Simple returns of `equity` over `periods` consecutive, equal groups of bars.

    Period k ends at the last bar of the k-th of `periods` near-equal slices of the curve,
    and its return is equity there over equity at the previous period's end (the initial
    capital for the first) minus one. Fewer bars than `periods` gives one period per bar.
    A period that starts from zero equity (ruin) returns 0: nothing is left to lose.
    """
    values = np.asarray(equity, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0)
    count = min(periods, len(values))
    ends = np.linspace(0, len(values), count + 1).round().astype(np.int64)[1:] - 1
    levels = np.concatenate([[initial], values[ends]])
    previous = levels[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(previous > 0, levels[1:] / previous - 1.0, 0.0)
    return np.asarray(returns, dtype=np.float64)


def sharpe_ratio(returns: np.ndarray) -> float:
    """mean / sample standard deviation (ddof 1) of per-period returns; 0.0 when the returns
    do not vary (a trial that never trades is worth nothing, not undefined)."""
    values = np.asarray(returns, dtype=np.float64)
    if len(values) < 2:
        return 0.0
    deviation = float(values.std(ddof=1))
    if not math.isfinite(deviation) or deviation <= 0:
        return 0.0
    return float(values.mean()) / deviation


# --- Deflated Sharpe Ratio ------------------------------------------------------------


def expected_max_sharpe(*, n_trials: int, sharpe_variance: float) -> float:
    """SR0, the Sharpe ratio the best of `n_trials` unskilled trials is expected to reach.

    Bailey and López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection
    Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5),
    eq. 2 (via the false strategy theorem):

        SR0 = sqrt(V[SR_n]) * ((1 - gamma) Z⁻¹[1 - 1/N] + gamma Z⁻¹[1 - 1/(N e)])

    with gamma the Euler-Mascheroni constant, Z⁻¹ the standard normal quantile, N the number
    of independent trials and V[SR_n] the variance of their Sharpe ratios. One trial has
    nothing to be selected from: SR0 = 0.
    """
    if n_trials <= 1 or sharpe_variance <= 0:
        return 0.0
    quantile = _NORMAL.inv_cdf
    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * quantile(1 - 1 / n_trials)
        + EULER_GAMMA * quantile(1 - 1 / (n_trials * math.e))
    )


def probabilistic_sharpe_ratio(
    *, sharpe: float, benchmark: float, observations: int, skewness: float, kurtosis: float
) -> float | None:
    """PSR: the probability that the true Sharpe ratio exceeds `benchmark`.

    Bailey and López de Prado (2012), "The Sharpe Ratio Efficient Frontier", eq. 10; the
    DSR paper's eq. 1:

        PSR = Z[ (SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR²) ]

    with T the number of returns, skew their skewness and kurt their kurtosis (3 for normal
    returns, not the excess). None when the denominator is not positive (an extreme
    skewness for the Sharpe ratio) or T < 2.
    """
    if observations < 2:
        return None
    spread = 1 - skewness * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if not math.isfinite(spread) or spread <= 0:
        return None
    z = (sharpe - benchmark) * math.sqrt(observations - 1) / math.sqrt(spread)
    return _NORMAL.cdf(z)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The DSR of the selected trial and every input it was computed from."""

    value: float | None
    sharpe: float
    benchmark_sharpe: float
    n_trials: int
    sharpe_variance: float
    observations: int
    skewness: float
    kurtosis: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _moments(returns: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis from the population central moments; a constant
    series is treated as normal (0, 3)."""
    centred = returns - returns.mean()
    second = float(np.mean(centred**2))
    if second <= 0:
        return 0.0, 3.0
    return float(np.mean(centred**3)) / second**1.5, float(np.mean(centred**4)) / second**2


def deflated_sharpe_ratio(
    *, best_returns: Sequence[float] | np.ndarray, trial_sharpes: Sequence[float] | np.ndarray
) -> DeflatedSharpe:
    """DSR of the selected trial (`best_returns`, its per-period returns) among the trials
    whose per-period Sharpe ratios are `trial_sharpes` (the selected one included).

    DSR = PSR(SR0): the probabilistic Sharpe ratio of the selected trial against SR0, the
    expected maximum Sharpe of N = len(trial_sharpes) unskilled trials with the observed
    variance of Sharpe ratios (sample variance, ddof 1). Source: Bailey and López de Prado
    (2014), eq. 2; see `expected_max_sharpe` and `probabilistic_sharpe_ratio`. The trials
    are taken as independent; correlated trials make N an overstatement, so DSR errs low.
    """
    returns = np.asarray(best_returns, dtype=np.float64)
    sharpes = np.asarray(trial_sharpes, dtype=np.float64)
    sharpes = sharpes[np.isfinite(sharpes)]
    variance = float(sharpes.var(ddof=1)) if len(sharpes) > 1 else 0.0
    benchmark = expected_max_sharpe(n_trials=len(sharpes), sharpe_variance=variance)
    sharpe = sharpe_ratio(returns)
    skewness, kurtosis = _moments(returns) if len(returns) else (0.0, 3.0)
    value = probabilistic_sharpe_ratio(
        sharpe=sharpe,
        benchmark=benchmark,
        observations=len(returns),
        skewness=skewness,
        kurtosis=kurtosis,
    )
    return DeflatedSharpe(
        value=value,
        sharpe=sharpe,
        benchmark_sharpe=benchmark,
        n_trials=len(sharpes),
        sharpe_variance=variance,
        observations=len(returns),
        skewness=skewness,
        kurtosis=kurtosis,
    )


# --- Probability of Backtest Overfitting ---------------------------------------------


@dataclass(frozen=True)
class BacktestOverfitting:
    """PBO by CSCV and what it was computed from; `logits` holds λ_c of every combination."""

    value: float | None
    n_trials: int
    observations: int
    splits: int
    combinations: int
    rows_dropped: int
    logits: list[float]
    # The share of combinations whose in-sample best lost money out of sample (Sharpe < 0).
    probability_oos_loss: float | None

    def as_dict(self, *, with_logits: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_logits:
            data.pop("logits")
        return data


def _even_splits(rows: int, wanted: int) -> int:
    """The largest even S <= wanted leaving at least two rows per block; 0 if none does."""
    splits = min(wanted, rows // 2)
    return splits - splits % 2


def probability_of_backtest_overfitting(
    matrix: np.ndarray, *, splits: int = PBO_SPLITS
) -> BacktestOverfitting:
    """PBO of choosing the in-sample best of N trials, by combinatorially symmetric
    cross-validation (CSCV).

    Bailey, Borwein, López de Prado and Zhu (2015), "The Probability of Backtest
    Overfitting", Journal of Computational Finance 20(4), section 2:

    1. M is the T x N matrix of per-period returns, one column per trial.
    2. Its rows are split, in order, into S disjoint blocks of T/S rows (S even). When S
       does not divide T, the first T mod S rows (the oldest) are dropped. S is lowered to
       leave at least two rows per block when T is small.
    3. For each of the C(S, S/2) combinations c of S/2 blocks: J (in-sample) is the rows of
       those blocks and J̄ (out-of-sample) the rest. R and R̄ are each trial's performance
       on J and J̄ (here its Sharpe ratio, mean / std of the returns, 0 when constant).
    4. n* = argmax R, the in-sample best. ω̄_c = rank of R̄_{n*} among R̄ / (N + 1), ranks
       1..N ascending with ties averaged; λ_c = ln(ω̄_c / (1 - ω̄_c)).
    5. PBO = #{c : λ_c <= 0} / C(S, S/2): how often the in-sample best falls at or below
       the median out of sample.

    None (with the inputs) when N < 2 or T is too short for two blocks.
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("the performance matrix must be two-dimensional (T x N)")
    rows, trials = values.shape
    count = _even_splits(rows, splits)
    if trials < 2 or count < 2:
        return BacktestOverfitting(None, trials, rows, count, 0, 0, [], None)
    dropped = rows % count
    blocks = values[dropped:].reshape(count, (rows - dropped) // count, trials)
    size = blocks.shape[1]
    # Per block and trial: the sums that give any union's mean and variance.
    block_sum = blocks.sum(axis=1)
    block_square = (blocks**2).sum(axis=1)
    logits: list[float] = []
    losses = 0
    combos = np.array(list(itertools.combinations(range(count), count // 2)))
    # Each combination's complement, in block order: the blocks its mask leaves out.
    mask = np.zeros((len(combos), count), dtype=bool)
    np.put_along_axis(mask, combos, True, axis=1)
    complements = np.nonzero(~mask)[1].reshape(len(combos), count - count // 2)
    for first in range(0, len(combos), _COMBINATION_BATCH):
        chosen = combos[first : first + _COMBINATION_BATCH]
        rest = complements[first : first + _COMBINATION_BATCH]
        in_sample = _union_sharpe(block_sum, block_square, chosen, size)
        out_sample = _union_sharpe(block_sum, block_square, rest, size)
        best = np.argmax(in_sample, axis=1)
        best_oos = out_sample[np.arange(len(chosen)), best]
        below = (out_sample < best_oos[:, None]).sum(axis=1)
        equal = (out_sample == best_oos[:, None]).sum(axis=1)
        rank = below + (equal + 1) / 2.0
        relative = rank / (trials + 1)
        logits.extend(np.log(relative / (1 - relative)).tolist())
        losses += int((best_oos < 0).sum())
    logit_array = np.array(logits)
    return BacktestOverfitting(
        value=float((logit_array <= 0).mean()),
        n_trials=trials,
        observations=rows,
        splits=count,
        combinations=len(combos),
        rows_dropped=dropped,
        logits=[round(x, 6) for x in logits],
        probability_oos_loss=losses / len(combos),
    )


def _union_sharpe(
    block_sum: np.ndarray, block_square: np.ndarray, chosen: np.ndarray, size: int
) -> np.ndarray:
    """Sharpe ratio (ddof 1) of each trial over the union of the blocks in each row of
    `chosen`: shape (combinations, trials). Constant returns give 0, as in sharpe_ratio."""
    n = chosen.shape[1] * size
    total = block_sum[chosen].sum(axis=1)
    squares = block_square[chosen].sum(axis=1)
    mean = total / n
    variance = np.maximum(squares - n * mean**2, 0.0) / (n - 1)
    deviation = np.sqrt(variance)
    # Relative to the mean's scale, so round-off in a constant column does not pass as risk.
    flat = deviation <= 1e-8 * np.maximum(np.abs(mean), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(flat, 0.0, mean / np.where(flat, 1.0, deviation))
    return np.asarray(sharpe)
