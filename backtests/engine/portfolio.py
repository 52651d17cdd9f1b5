"""run_portfolio: several instruments of one timeframe backtested with one shared cash account.

Rules (each pinned in tests/backtests/engine/test_portfolio.py; rules the single engine
states in `backtests.engine` are referred to as "engine rule N"):

1. Instruments. `candles` maps instrument names to candle frames of one timeframe (engine
   rule 11 applied to each; they must agree). Instrument order is the mapping's order.
2. Alignment. The portfolio's bars are the union of all instruments' timestamps. An
   instrument with no bar at a timestamp is marked at its last close there and cannot
   trade on that bar: an order it is given waits for its next bar, where it is sized from
   the target and equity at that bar's open. Before its first bar it is not tradable (and
   holds nothing). `missing_bars` counts, per instrument, the portfolio bars between its
   first and last bar on which it has no bar of its own.
3. Targets. A target weight is the share of portfolio equity an instrument should hold, in
   [0, 1]; NaN means 0. Portfolios are long-only and unlevered so far: a negative weight,
   or weights summing (gross) above 1 on any bar, is refused, and so is any config field
   outside PORTFOLIO_CONFIG_FIELDS (costs, timeframe, calendar) set away from its default
   (allow_short, stops, sizing modes, quantity steps, minimum notionals, entry orders...).
   Weights come either as a frame (bars x instruments, on the union index) used as they
   are, or from signals turned into weights by an allocation: a frame of signals, or a
   strategy kind applied to each instrument's own candles (its signal held over its
   missing bars, 0 before its first bar). A negative signal means flat.
4. Allocation. First, when `max_positions` is set, only the `max_positions` instruments
   with the strongest positive signals are kept (ties go to the earlier instrument).
   Then: "equal" gives each kept instrument signal / k, k the number kept (1/k for a
   signal of 1); "fixed" gives weights[i] * signal (instruments not named get 0);
   "signal" gives signal / (sum of kept signals), so the weights sum to 1 when any is on.
5. Signals and fills. Weights decided at bar t's close fill at bar t+1's open (engine rule
   1); nothing fills on bar 0.
6. Rebalancing. A rebalance brings every tradable instrument to its target. It happens at
   bar t+1's open when:
   - rebalance="change" (default): the weights decided at t's close differ from those
     decided at t-1's close (for t = 0: from holding nothing);
   - rebalance="1d", "1w" or "1M": t+1 is the first bar of a UTC day, of an ISO week
     (Monday) or of a calendar month, toward the weights decided at t's close;
   - drift_threshold d is set (with either of the above): at t's close some instrument's
     weight (quantity * close / equity) differs from its weight decided at that close by
     more than d.
7. Sizing. At a rebalance on bar t, equity E is cash + sum of quantity * open (an
   instrument without a bar at its last close). Instrument i's target quantity is
   weight_i * E / open_i (vectorbt's size_type="targetpercent"), and it is ordered the
   difference from what it holds; an unchanged quantity places no order.
8. Order of execution. The orders of one bar execute in ascending order of their value,
   target value minus current value (weight_i * E - quantity_i * open_i): every sell
   before any buy, the largest sell first and the smallest buy first, ties in instrument
   order (vectorbt's call_seq="auto").
9. Costs. Fills slip and pay fees as engine rules 3 and 4: a buy fills at open * (1 + s),
   a sell at open * (1 - s), each paying max(fee_rate * notional + fixed_fee, min_fee).
10. Cash. A buy is cut to the most units whose notional and fee fit in the cash left
    (sells on that bar have added theirs); a cut buy spends all the cash and the later buys
    of that bar get nothing. Should a bar's sell fees (fixed or minimum fees on tiny sales)
    exceed the cash and the sales, they are scaled down to take exactly that, and nothing
    is bought. So cash never goes below zero, and equity (cash plus long positions)
    neither.
11. Marking. At every bar's close, equity = cash + sum of quantity * close, each
    instrument at its last close; drawdown as in the single engine.
12. Trades. Per instrument, a trade is a round trip from flat back to flat, with engine
    rule 10's prices, quantity, pnl and fees over all of its fills (rebalances resize it);
    one still open at the end is marked to the instrument's last close, exit_reason "end".
    Closed trades end with exit_reason "signal". The trades frame has TRADE_COLUMNS plus
    `instrument`, ordered by entry time then instrument.
13. Attribution. contribution: an instrument's pnl over the run (its fills' cash flows plus
    its final value); contributions sum to final equity - initial capital. exposure: its
    value / equity at each close (0 when equity is 0), and its mean. turnover: the notional
    it traded, over mean equity.
14. Metrics. Every metric of METRIC_DEFINITIONS, computed by backtests.engine.metrics on
    the portfolio's equity and all instruments' trades. The "asset" of buy_hold_return_pct,
    alpha and beta is an equal-value basket bought at each instrument's first close (a
    not yet started instrument counts as cash). exposure_pct counts bars at whose close any
    position is open. metrics["per_instrument"] holds one row per instrument: bars,
    missing_bars, contribution, contribution_pct (of initial capital), exposure_pct (mean
    exposure in %), turnover, commissions and the trade statistics of its own trades.
15. Bad configurations raise InvalidConfigError naming each offending field: candles (none
    given), timeframe (instruments disagree), targets, weights, allocation, max_positions,
    rebalance, drift_threshold and the unsupported config fields of rule 3. Malformed
    candles raise InvalidCandlesError, its message starting with the instrument's name.

Units as in the single engine: quote currency, drawdown fractions, UTC bar open times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtests.engine.backtest import (
    ENGINE_VERSION,
    check_length,
    drawdown_of,
    fit_to_candles,
    resolve_kind,
    trades_table,
)
from backtests.engine.candles import CandleArrays, validate_candles
from backtests.engine.config import BacktestConfig
from backtests.engine.errors import InvalidCandlesError, InvalidConfigError
from backtests.engine.metrics import BarContext, MetricValue, _trade_stats, compute_metrics
from backtests.engine.simulate import (
    EXIT_END,
    EXIT_SIGNAL,
    Simulation,
    Trades,
    _affordable,
)
from strategies.library.base import StrategyRef
from strategies.library.indicators import IndicatorCache

ALLOCATION_EQUAL = "equal"
ALLOCATION_FIXED = "fixed"
ALLOCATION_SIGNAL = "signal"
ALLOCATIONS = (ALLOCATION_EQUAL, ALLOCATION_FIXED, ALLOCATION_SIGNAL)

REBALANCE_ON_CHANGE = "change"
REBALANCE_SCHEDULES = ("1d", "1w", "1M")
REBALANCES = (REBALANCE_ON_CHANGE, *REBALANCE_SCHEDULES)

# The BacktestConfig fields portfolios honour; every other one must keep its default.
PORTFOLIO_CONFIG_FIELDS = (
    "initial_capital",
    "fee_rate",
    "slippage_bps",
    "fixed_fee",
    "min_fee",
    "timeframe",
    "calendar",
    "trading_days_per_year",
    "bars_per_day",
)

# Weights are summed in floating point: three weights of 1/3 may add up to 1 + 2e-16.
_GROSS_TOLERANCE = 1e-9

_NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass
class PortfolioResult:
    """Everything one portfolio backtest produced (rules in this module's docstring).

    - equity, drawdown: per bar, at the close.
    - cash, quantity, value, exposure (built on first use): cash per bar, and units held,
      quantity * close and value / equity as bars x instruments frames.
    - weights: the target weights decided at each close, bars x instruments.
    - mean_exposure, contribution, turnover, missing_bars: one value per instrument.
    - trades: TRADE_COLUMNS plus `instrument`; rebalances: open times of the bars on which
      any order filled.
    - metrics: METRIC_DEFINITIONS' keys for the portfolio, plus "per_instrument" rows.
    """

    equity: pd.Series
    drawdown: pd.Series
    weights: pd.DataFrame
    mean_exposure: pd.Series
    contribution: pd.Series
    turnover: pd.Series
    missing_bars: pd.Series
    trades: pd.DataFrame
    rebalances: pd.DatetimeIndex
    metrics: dict[str, Any]
    config: BacktestConfig = field(default_factory=BacktestConfig)
    engine_version: str = ""
    # (cash per span, quantities per span, span of each bar, closes as instruments x bars,
    # marked at the last close on missing bars): cash and quantities only change at
    # rebalances, so the bars x instruments frames are built when asked for.
    spans: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(
        default=(np.empty(0), np.empty((0, 0)), np.empty(0, np.int64), np.empty((0, 0))),
        repr=False,
    )

    @property
    def cash(self) -> pd.Series:
        span_cash, _, span_of_bar, _ = self.spans
        return pd.Series(span_cash.take(span_of_bar), index=self.equity.index, name="cash")

    @property
    def quantity(self) -> pd.DataFrame:
        _, span_quantity, span_of_bar, _ = self.spans
        return self._frame(span_quantity.take(span_of_bar, axis=0))

    @property
    def value(self) -> pd.DataFrame:
        _, span_quantity, span_of_bar, close = self.spans
        return self._frame(span_quantity.take(span_of_bar, axis=0) * close.T)

    @property
    def exposure(self) -> pd.DataFrame:
        """value / equity at each close; 0 where equity is 0."""
        value = self.value.to_numpy()
        equity = self.equity.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            share = value / equity[:, None]
        share[equity <= 0.0] = 0.0
        return self._frame(share)

    def _frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            values, index=self.equity.index, columns=self.weights.columns, copy=False
        )


@dataclass(frozen=True)
class _Aligned:
    """The instruments on the union of their timestamps; missing bars marked at last close."""

    names: list[str]
    index: pd.DatetimeIndex
    ts_ns: np.ndarray
    # Instruments x bars, so that each instrument's series is contiguous; a missing bar
    # holds the last close.
    open: np.ndarray
    close: np.ndarray
    has_bar: np.ndarray  # bool
    rows: list[np.ndarray]  # each instrument's bars as positions in the union


def run_portfolio(
    candles: Mapping[str, pd.DataFrame],
    targets: pd.DataFrame | StrategyRef,
    config: BacktestConfig | None = None,
    *,
    allocation: str | None = None,
    weights: Mapping[str, float] | None = None,
    max_positions: int | None = None,
    rebalance: str = REBALANCE_ON_CHANGE,
    drift_threshold: float | None = None,
) -> PortfolioResult:
    """Backtest several instruments with shared cash; see the module docstring for rules.

    `targets` is either a frame of target weights (bars x instruments, on the union of the
    candles' timestamps), used as it is unless `allocation` is given, in which case it holds
    signals; or a StrategyRef whose kind computes each instrument's signal, allocated by
    `allocation` ("equal" when not given). `weights` are the "fixed" allocation's weights.
    Raises InvalidConfigError (or another EngineError) for bad input.
    """
    config = config or BacktestConfig()
    config.validate()
    _check_options(config, candles, allocation, weights, max_positions, rebalance, drift_threshold)
    bars = {name: _instrument_candles(name, frame) for name, frame in candles.items()}
    config = _common_timeframe(config, bars)
    aligned = _align(bars)
    if isinstance(targets, StrategyRef):
        signal = _strategy_signals(candles, targets, aligned)
        target_weights = _allocate(
            signal, aligned.names, allocation or ALLOCATION_EQUAL, weights, max_positions
        )
    else:
        frame = _targets_frame(targets, aligned)
        if allocation is None:
            target_weights = _checked_weights(frame, "targets")
        else:
            if (np.abs(frame) > 1.0).any():
                raise InvalidConfigError({"targets": ["Signals must lie in [-1, 1]."]})
            signal = np.maximum(frame, 0.0)
            target_weights = _allocate(signal, aligned.names, allocation, weights, max_positions)
    return _run(aligned, target_weights, config, rebalance, drift_threshold)


# --- validation -----------------------------------------------------------------------------


def _check_options(
    config: BacktestConfig,
    candles: Mapping[str, pd.DataFrame],
    allocation: str | None,
    weights: Mapping[str, float] | None,
    max_positions: int | None,
    rebalance: str,
    drift_threshold: float | None,
) -> None:
    problems: dict[str, list[str]] = {}

    def problem(name: str, message: str) -> None:
        problems.setdefault(name, []).append(message)

    if not isinstance(candles, Mapping) or not candles:
        problem("candles", "Give at least one instrument's candles.")
    if allocation is not None and allocation not in ALLOCATIONS:
        problem(
            "allocation", f"Unknown allocation {allocation!r}; known: {', '.join(ALLOCATIONS)}."
        )
    if allocation == ALLOCATION_FIXED and weights is None:
        problem("weights", "Required when allocation is 'fixed'.")
    if weights is not None:
        if allocation != ALLOCATION_FIXED:
            problem("weights", "Applies only when allocation is 'fixed'.")
        known = set(candles) if isinstance(candles, Mapping) else set()
        unknown = [str(name) for name in weights if name not in known]
        if unknown:
            problem("weights", f"Unknown instrument(s): {', '.join(unknown)}.")
        try:
            values = [float(v) for v in weights.values()]
        except (TypeError, ValueError):
            values = [np.nan]
        if any(not np.isfinite(v) or v < 0 for v in values):
            problem("weights", "Each weight must be a finite number, zero or more.")
        elif sum(values) > 1.0 + _GROSS_TOLERANCE:
            problem(
                "weights",
                f"Weights sum to {sum(values):g}; at most 1 (portfolios have no leverage yet).",
            )
    if max_positions is not None and (
        isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1
    ):
        problem("max_positions", "Must be a whole number, 1 or more.")
    if rebalance not in REBALANCES:
        problem("rebalance", f"Unknown rebalance {rebalance!r}; known: {', '.join(REBALANCES)}.")
    if drift_threshold is not None and not (
        isinstance(drift_threshold, int | float) and 0 < drift_threshold < 1
    ):
        problem("drift_threshold", "Must be above 0 and below 1.")
    # What the single engine offers but portfolios do not yet: any other field moved from
    # its default (a field added to BacktestConfig later is refused until portfolios
    # honour it).
    defaults = BacktestConfig()
    for spec in dataclasses.fields(BacktestConfig):
        name = spec.name
        if name not in PORTFOLIO_CONFIG_FIELDS and getattr(config, name) != getattr(defaults, name):
            problem(name, "Not supported in portfolios yet (long-only, sized by target weight).")
    if problems:
        raise InvalidConfigError(problems)


def _instrument_candles(name: str, frame: pd.DataFrame) -> CandleArrays:
    try:
        return validate_candles(frame)
    except InvalidCandlesError as exc:
        raise InvalidCandlesError(f"{name}: {exc}") from None


def _common_timeframe(config: BacktestConfig, bars: Mapping[str, CandleArrays]) -> BacktestConfig:
    found: dict[str, str] = {}
    for name, arrays in bars.items():
        fitted = fit_to_candles(config, arrays)
        if fitted.timeframe is not None:
            found[name] = fitted.timeframe
    distinct = sorted(set(found.values()))
    if len(distinct) > 1:
        described = ", ".join(f"{name}: {tf}" for name, tf in found.items())
        raise InvalidConfigError(
            {"timeframe": [f"All instruments must share one timeframe; got {described}."]}
        )
    if config.timeframe is None and distinct:
        return dataclasses.replace(config, timeframe=distinct[0])
    return config


def _align(bars: Mapping[str, CandleArrays]) -> _Aligned:
    names = list(bars)
    stamps = [arrays.ts_ns for arrays in bars.values()]
    first = stamps[0]
    if all(len(s) == len(first) and np.array_equal(s, first) for s in stamps[1:]):
        ts_ns = first
        rows = [np.arange(len(first))] * len(names)
        index = next(iter(bars.values())).index
    else:
        ts_ns = np.unique(np.concatenate(stamps))
        rows = [np.searchsorted(ts_ns, s) for s in stamps]
        index = pd.DatetimeIndex(ts_ns.view("datetime64[ns]")).tz_localize("UTC")
    n, m = len(ts_ns), len(names)
    open_ = np.empty((m, n))
    close = np.empty((m, n))
    has_bar = np.zeros((m, n), dtype=bool)
    for i, arrays in enumerate(bars.values()):
        at = rows[i]
        if len(at) == n:
            has_bar[i] = True
            open_[i] = arrays.open
            close[i] = arrays.close
            continue
        has_bar[i, at] = True
        # Each bar's own row, or the last row at or before it: a missing bar shows the last
        # close (for its open too); bars before the first show the first open, holding nothing.
        last = np.maximum.accumulate(np.where(has_bar[i], np.arange(n), 0))
        own = np.searchsorted(at, last)
        close[i] = arrays.close[own]
        open_[i] = np.where(has_bar[i], arrays.open[own], arrays.close[own])
        open_[i, : at[0]] = close[i, : at[0]] = arrays.open[0]
    return _Aligned(names, index, ts_ns, open_, close, has_bar, rows)


def _targets_frame(targets: pd.DataFrame, aligned: _Aligned) -> np.ndarray:
    """The frame's values as instruments x bars, NaN as 0."""
    if not isinstance(targets, pd.DataFrame):
        raise InvalidConfigError({"targets": ["Must be a DataFrame or a StrategyRef."]})
    unknown = [str(c) for c in targets.columns if c not in aligned.names]
    if unknown:
        raise InvalidConfigError({"targets": [f"Unknown instrument(s): {', '.join(unknown)}."]})
    index = targets.index
    same = (
        isinstance(index, pd.DatetimeIndex)
        and index.tz is not None
        and len(index) == len(aligned.index)
        and bool((index == aligned.index).all())
    )
    if not same:
        raise InvalidConfigError(
            {"targets": ["Must be indexed by the union of the candles' timestamps (UTC)."]}
        )
    frame = (
        targets
        if list(targets.columns) == aligned.names
        else targets.reindex(columns=aligned.names)
    )
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidConfigError({"targets": ["Must hold numbers."]}) from None
    if np.isinf(values).any():
        raise InvalidConfigError({"targets": ["Must be finite (NaN means 0)."]})
    return np.nan_to_num(values.T, nan=0.0)


def _checked_weights(values: np.ndarray, name: str) -> np.ndarray:
    """`values` (instruments x bars) if no weight is negative and no bar's sum exceeds 1."""
    if (values < 0).any():
        col, row = np.argwhere(values < 0)[0]
        raise InvalidConfigError(
            {
                name: [
                    f"Weights must be 0 or more (long-only); bar {row}, instrument {col} is "
                    f"{values[col, row]!r}."
                ]
            }
        )
    gross = values.sum(axis=0)
    if (gross > 1.0 + _GROSS_TOLERANCE).any():
        row = int(np.argmax(gross > 1.0 + _GROSS_TOLERANCE))
        raise InvalidConfigError(
            {
                name: [
                    f"Weights sum to {gross[row]:g} on bar {row}; at most 1 (portfolios "
                    "have no leverage yet)."
                ]
            }
        )
    return values


def _strategy_signals(
    candles: Mapping[str, pd.DataFrame], strategy: StrategyRef, aligned: _Aligned
) -> np.ndarray:
    kind = resolve_kind(strategy.kind)
    params = kind.validate(strategy.params)
    m, n = aligned.open.shape
    signal = np.zeros((m, n))
    for i, frame in enumerate(candles.values()):
        check_length(kind, params, len(frame))
        own = np.asarray(kind.positions(frame, params, IndicatorCache()), dtype=np.float64)
        if (np.abs(own) > 1.0).any():
            raise InvalidConfigError({"targets": [f"{kind.name} gave a target beyond [-1, 1]."]})
        own = np.maximum(np.nan_to_num(own, nan=0.0), 0.0)  # long-only: negative is flat
        rows = aligned.rows[i]
        # Held over the instrument's missing bars; 0 before its first bar.
        last = np.maximum.accumulate(np.where(aligned.has_bar[i], np.arange(n), 0))
        signal[i] = own[np.searchsorted(rows, last)]
        signal[i, : rows[0]] = 0.0
    return signal


def _allocate(
    signal: np.ndarray,
    names: list[str],
    allocation: str,
    weights: Mapping[str, float] | None,
    max_positions: int | None,
) -> np.ndarray:
    signal = np.clip(signal, 0.0, 1.0)
    on = signal > 0.0
    m = signal.shape[0]
    if max_positions is not None and max_positions < m:
        # Rank by strength, ties to the earlier instrument (a stable sort).
        order = np.argsort(-signal, axis=0, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(m)[:, None], axis=0)
        on &= rank < max_positions
    kept = np.where(on, signal, 0.0)
    if allocation == ALLOCATION_FIXED:
        fixed = np.array([float((weights or {}).get(name, 0.0)) for name in names])
        return _checked_weights(kept * fixed[:, None], "weights")
    if allocation == ALLOCATION_EQUAL:
        count = on.sum(axis=0, keepdims=True)
        return np.divide(kept, count, out=np.zeros_like(kept), where=count > 0)
    total = kept.sum(axis=0, keepdims=True)
    return np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)


# --- simulation -----------------------------------------------------------------------------


def _period_starts(ts_ns: np.ndarray, schedule: str) -> np.ndarray:
    """Bars (after bar 0) that open a new UTC day, ISO week or calendar month."""
    day = ts_ns // _NS_PER_DAY
    if schedule == "1d":
        key = day
    elif schedule == "1w":
        key = (day + 3) // 7  # 1970-01-01 was a Thursday: weeks start on Mondays
    else:
        key = ts_ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    return np.flatnonzero(key[1:] != key[:-1]) + 1


def _natural_events(decided: np.ndarray, ts_ns: np.ndarray, rebalance: str) -> np.ndarray:
    """Bars at whose open rule 6 rebalances, drift aside (`decided`: the weights decided
    at each close, instruments x bars)."""
    if rebalance == REBALANCE_ON_CHANGE:
        changed = np.flatnonzero((decided[:, 1:] != decided[:, :-1]).any(axis=0)) + 2
        # Weights decided at bar 0's close change from holding nothing.
        first = np.asarray([1] if decided[:, 0].any() else [], dtype=np.int64)
        events = np.concatenate((first, changed))
        return events[events < decided.shape[1]]
    return _period_starts(ts_ns, rebalance)


@dataclass
class _Book:
    """The account after each rebalance with a fill, as the loop leaves it: one row per
    rebalance, one column per instrument (units 0 where nothing filled). Fill prices follow
    from the units' signs; fees are kept only when not a plain rate of the notional."""

    event_bars: list[int]
    cash: list[float]
    quantity: list[np.ndarray]  # held after the rebalance
    units: list[np.ndarray]  # filled: + bought, - sold
    fee: list[np.ndarray]


def _simulate(
    aligned: _Aligned,
    decided: np.ndarray,
    natural: np.ndarray,
    config: BacktestConfig,
    drift_threshold: float | None,
) -> _Book:
    """Walk the rebalances in time order; between two of them nothing trades. `decided`
    holds the weights decided at each close (instruments x bars): bar t trades toward
    decided[:, t - 1]."""
    m, n = decided.shape
    open_, close, has_bar = aligned.open, aligned.close, aligned.has_bar
    plain_fees = config.fixed_fee == 0 and config.min_fee == 0
    cash = float(config.initial_capital)
    q = np.zeros(m)
    book = _Book([0], [cash], [q], [np.zeros(m)], [np.zeros(m)])
    pending = np.zeros(m, dtype=bool)
    any_pending = False
    natural_list = natural.tolist()
    # The natural rebalances' rows, gathered contiguous in one go: opens, weights, units per
    # unit of equity, and the cash a unit sold or bought takes (fees at a plain rate).
    slip, rate = config.slippage, config.fee_rate
    sell_cost, buy_cost = (1.0 - slip) * (1.0 - rate), (1.0 + slip) * (1.0 + rate)
    natural_open = open_[:, natural].T.copy()
    natural_weight = decided[:, natural - 1].T.copy()
    natural_units = natural_weight / natural_open
    natural_sell = natural_open * sell_cost
    natural_buy = natural_open * buy_cost
    k = 0
    all_bars = bool(has_bar.all())
    t = natural_list[0] if natural_list else n
    full = True
    if drift_threshold is not None and t > 1:
        # Targets set before the first natural rebalance count as drift from holding nothing.
        drifted = _first_drift(0, t, cash, q, close, decided, drift_threshold)
        if drifted is not None:
            t = drifted
    while t < n:
        if k < len(natural_list) and natural_list[k] == t:
            o, w, units = natural_open[k], natural_weight[k], natural_units[k]
            sell, buy = natural_sell[k], natural_buy[k]
            k += 1
            full = True
        else:
            o, w = open_[:, t], decided[:, t - 1]
            units, sell, buy = w / o, o * sell_cost, o * buy_cost
        equity = cash + float(q @ o)
        if equity > 0.0:
            delta = units * equity
            delta -= q
            if not all_bars:
                part = has_bar[:, t] if full else pending & has_bar[:, t]
                delta[~part] = 0.0
            fee = None
            if plain_fees:
                spend = delta * np.where(delta < 0.0, sell, buy)
                left = cash - float(spend.sum())
                if left < 0.0:
                    left = _cut_plain(delta, spend, o, w, equity, q, cash, config)
            else:
                left, fee = _fill(delta, o, w, equity, q, cash, config)
            # No order at all leaves the cash exactly as it was.
            if left != cash or delta.any():
                cash = left
                q = q + delta
                book.event_bars.append(t)
                book.cash.append(cash)
                book.quantity.append(q)
                book.units.append(delta)
                if fee is not None:
                    book.fee.append(fee)
        if not all_bars:
            # An instrument that could not trade here waits for its next bar (rule 2).
            if full:
                pending = ~has_bar[:, t] & ((w != 0.0) | (q != 0.0))
            else:
                pending &= ~has_bar[:, t]
            any_pending = bool(pending.any())
        # The next rebalance: the next natural one, a pending order's bar, or drift.
        nxt = natural_list[k] if k < len(natural_list) else n
        if any_pending:
            for i in np.flatnonzero(pending).tolist():
                rows = aligned.rows[i]
                after = int(np.searchsorted(rows, t, side="right"))
                if after < len(rows):
                    nxt = min(nxt, int(rows[after]))
        full = False
        if drift_threshold is not None and t < nxt - 1:
            drifted = _first_drift(t, nxt, cash, q, close, decided, drift_threshold)
            if drifted is not None:
                nxt = drifted
                full = True
        t = nxt
    return book


def _first_drift(
    start: int,
    end: int,
    cash: float,
    q: np.ndarray,
    close: np.ndarray,
    decided: np.ndarray,
    threshold: float,
) -> int | None:
    """The bar after the first close in [start, end - 1) at which a weight drifted too far."""
    value = close[:, start : end - 1] * q[:, None]
    equity = value.sum(axis=0) + cash
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = value / equity
    weight[:, equity <= 0.0] = 0.0
    gap = np.abs(weight - decided[:, start : end - 1]).max(axis=0)
    over = np.flatnonzero(gap > threshold)
    return int(start + over[0] + 1) if len(over) else None


def _cut_plain(
    delta: np.ndarray,
    spend: np.ndarray,
    o: np.ndarray,
    w: np.ndarray,
    equity: float,
    q: np.ndarray,
    cash: float,
    config: BacktestConfig,
) -> float:
    """Rule 10 when fees are a plain rate and the cash does not cover one bar's orders:
    cuts `delta` in place and returns the cash left (0)."""
    # Sells always bring cash in here, so the cash runs out at a buy: walk the orders in
    # ascending value (sells first, ties in instrument order) to find it. Twenty floats
    # are quicker walked in Python than through numpy's per-call overhead.
    order = np.argsort(w * equity - q * o, kind="stable").tolist()
    spends = spend.tolist()
    running = cash
    for position, i in enumerate(order):
        after = running - spends[i]
        if after < 0.0:
            price = float(o[i]) * (1.0 + config.slippage)
            delta[i] = _affordable(config, running, price)
            delta[order[position + 1 :]] = 0.0
            return 0.0
        running = after
    return running  # not reached: the spends sum to more than the cash


def _fill(
    delta: np.ndarray,
    o: np.ndarray,
    w: np.ndarray,
    equity: float,
    q: np.ndarray,
    cash: float,
    config: BacktestConfig,
) -> tuple[float, np.ndarray]:
    """One bar's orders under any fees (rules 8 to 10): cuts `delta` in place to what the
    cash pays for; returns the cash left and each instrument's fee."""
    slip, rate = config.slippage, config.fee_rate
    price = o * np.where(delta < 0.0, 1.0 - slip, 1.0 + slip)
    fee = np.maximum(np.abs(delta) * price * rate + config.fixed_fee, config.min_fee)
    fee[delta == 0.0] = 0.0
    spend = delta * price
    spend += fee  # cash each fill takes (negative for a sell)
    left = cash - float(spend.sum())
    if left < 0.0:
        left = _cut_to_cash(delta, price, fee, spend, w * equity - q * o, cash, config)
    return left, fee


def _cut_to_cash(
    delta: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    spend: np.ndarray,
    order_value: np.ndarray,
    cash: float,
    config: BacktestConfig,
) -> float:
    """Rule 10 when the cash does not cover every order: the buy that exhausts the cash is
    cut and later buys get nothing; sells pay at most what there is. Updates `delta` and
    `fee` in place; returns the cash left."""
    # In ascending order value (rule 8) the spends rise: sells first, the biggest (most
    # cash in) first, since a fee never grows faster than the sale. So the running cash
    # falls below zero first at a buy, unless some sell's fee exceeds the cash there.
    order = np.argsort(order_value, kind="stable")
    running = cash - np.cumsum(spend[order])
    short = int(np.argmax(running < 0.0))
    cut = int(order[short])
    if delta[cut] > 0.0:
        budget = float(running[short - 1]) if short else cash
        units = _affordable(config, budget, float(price[cut]))
        delta[cut] = units
        notional = units * price[cut]
        fee[cut] = (
            max(notional * config.fee_rate + config.fixed_fee, config.min_fee) if units else 0.0
        )
        rest = order[short + 1 :]
        delta[rest] = 0.0
        fee[rest] = 0.0
        return 0.0
    # A sell's fee exceeds what the account holds: nothing is bought, and the fees take
    # what there is.
    sells = delta < 0.0
    buys = delta > 0.0
    delta[buys] = 0.0
    fee[buys] = 0.0
    cash += float((-delta[sells] * price[sells]).sum())
    paid = float(fee[sells].sum())
    if paid > cash:
        fee[sells] *= cash / paid
        return 0.0
    return cash - paid


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fills:
    bar: np.ndarray
    instrument: np.ndarray
    units: np.ndarray
    price: np.ndarray
    fee: np.ndarray
    after: np.ndarray


def _fills_of(book: _Book, aligned: _Aligned, config: BacktestConfig) -> _Fills:
    units = np.stack(book.units)
    # Instrument by instrument, in time order: nonzero walks the transposed rows.
    instrument, event = np.nonzero(units.T)
    bar = np.asarray(book.event_bars, dtype=np.int64)[event]
    filled = units[event, instrument]
    slip = config.slippage
    price = aligned.open[instrument, bar] * np.where(filled < 0.0, 1.0 - slip, 1.0 + slip)
    if len(book.fee) == len(book.units):  # fees recorded: not a plain rate
        fee = np.stack(book.fee)[event, instrument]
    else:
        fee = np.abs(filled) * price * config.fee_rate
    return _Fills(
        bar=bar,
        instrument=instrument.astype(np.int64),
        units=filled,
        price=price,
        fee=fee,
        after=np.stack(book.quantity)[event, instrument],
    )


def _trades(fills: _Fills, last_close: np.ndarray, n: int) -> tuple[Trades, np.ndarray]:
    """Round trips per instrument from the fills (rule 12), and each trade's instrument."""
    count = len(fills.bar)
    if not count:
        none = np.empty(0, dtype=np.int64)
        empty = np.empty(0)
        trades = Trades(
            none, none, empty, empty, empty, empty, empty, empty, empty, none, empty.astype(bool)
        )
        return trades, none
    before = np.empty(count)
    before[0] = 0.0
    before[1:] = fills.after[:-1]
    first_of_instrument = np.ones(count, dtype=bool)
    first_of_instrument[1:] = fills.instrument[1:] != fills.instrument[:-1]
    before[first_of_instrument] = 0.0
    opens = before == 0.0
    trade = np.cumsum(opens) - 1
    trades_n = int(trade[-1]) + 1
    bought = fills.units > 0
    notional = np.abs(fills.units) * fills.price
    added: np.ndarray = np.bincount(trade, np.where(bought, fills.units, 0.0), trades_n)
    added_notional = np.bincount(trade, np.where(bought, notional, 0.0), trades_n)
    reduced = np.bincount(trade, np.where(bought, 0.0, -fills.units), trades_n)
    reduced_notional = np.bincount(trade, np.where(bought, 0.0, notional), trades_n)
    fees: np.ndarray = np.bincount(trade, fills.fee, trades_n)
    starts = np.flatnonzero(opens)
    last = np.concatenate((starts[1:], [count])) - 1
    instrument = fills.instrument[starts]
    held = fills.after[last]
    is_open = held != 0.0
    mark = last_close[instrument]
    exit_notional = reduced_notional + held * mark
    pnl = exit_notional - added_notional - fees
    trades = Trades(
        entry_bar=fills.bar[starts],
        exit_bar=np.where(is_open, n - 1, fills.bar[last]),
        direction=np.ones(trades_n),
        entry_price=added_notional / added,
        exit_price=exit_notional / (reduced + held),
        quantity=added,
        pnl=pnl,
        pnl_pct=pnl / added_notional * 100.0,
        fees=fees,
        reason=np.where(is_open, EXIT_END, EXIT_SIGNAL).astype(np.int64),
        is_open=is_open,
    )
    # In entry order, then instrument order.
    order = np.lexsort((instrument, trades.entry_bar))
    trades = Trades(*(getattr(trades, f.name)[order] for f in dataclasses.fields(Trades)))
    return trades, instrument[order]


def _trades_frame(trades: Trades, instrument: np.ndarray, aligned: _Aligned) -> pd.DataFrame:
    # The single engine's table (every trade is long: portfolios are long-only), plus the
    # instrument.
    frame = trades_table(trades, aligned.index, aligned.ts_ns)
    frame["instrument"] = pd.Categorical.from_codes(
        instrument.astype(np.int32), categories=aligned.names
    )
    return frame


def _basket(close: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    """An equal-value basket of the instruments bought at their first closes (rule 14)."""
    m = close.shape[0]
    first = np.array([close[i, at[0]] for i, at in enumerate(rows)])
    basket = (1.0 / (first * m)) @ close
    for i, at in enumerate(rows):
        if at[0]:
            # Not started yet: cash, worth its first close's share.
            basket[: at[0]] += (1.0 - close[i, : at[0]] / first[i]) / m
    return basket


def _run(
    aligned: _Aligned,
    target_weights: np.ndarray,
    config: BacktestConfig,
    rebalance: str,
    drift_threshold: float | None,
) -> PortfolioResult:
    m, n = target_weights.shape
    natural = _natural_events(target_weights, aligned.ts_ns, rebalance)
    book = _simulate(aligned, target_weights, natural, config, drift_threshold)

    # Cash and quantities are constant from one rebalance to the next: equity and exposure
    # are built span by span without a bars x instruments temporary, unless the spans are
    # so short that numpy's per-call cost would dominate.
    close = aligned.close
    starts = np.asarray(book.event_bars, dtype=np.int64)
    ends = np.append(starts[1:], n)
    span_quantity = np.stack(book.quantity)
    span_cash = np.asarray(book.cash)
    span_of_bar = np.zeros(n, dtype=np.int64)
    span_of_bar[starts[1:]] = 1
    np.cumsum(span_of_bar, out=span_of_bar)
    short_spans = len(starts) > n // 50
    if short_spans:
        per_bar = span_quantity.take(span_of_bar, axis=0)
        equity = np.einsum("ij,ji->i", per_bar, close)
        equity += span_cash.take(span_of_bar)
    else:
        equity = np.empty(n)
        spans = zip(starts.tolist(), ends.tolist(), span_quantity, span_cash, strict=True)
        for a, b, q, c in spans:
            np.dot(q, close[:, a:b], out=equity[a:b])
            equity[a:b] += c
    drawdown = drawdown_of(equity.copy())
    with np.errstate(divide="ignore"):
        inverse = np.where(equity > 0.0, 1.0 / equity, 0.0)
    if short_spans:
        exposure_sum = np.einsum("ij,ji,i->j", per_bar, close, inverse)
        del per_bar
    else:
        exposure_sum = np.zeros(m)
        for a, b, q in zip(starts.tolist(), ends.tolist(), span_quantity, strict=True):
            if q.any():
                exposure_sum += (close[:, a:b] @ inverse[a:b]) * q
    mean_exposure = exposure_sum / n

    fills = _fills_of(book, aligned, config)
    last_close = close[:, -1]
    trades, trade_instrument = _trades(fills, last_close, n)
    flows = -fills.units * fills.price - fills.fee
    contribution = np.bincount(fills.instrument, flows, m) + span_quantity[-1] * last_close
    traded = np.bincount(fills.instrument, np.abs(fills.units) * fills.price, m)
    mean_equity = float(equity.mean())
    turnover = traded / mean_equity if mean_equity > 0 else np.zeros(m)
    commissions = np.bincount(fills.instrument, fills.fee, m)
    missing = np.array([int(at[-1]) - int(at[0]) + 1 - len(at) for at in aligned.rows])

    invested = (span_quantity != 0.0).any(axis=1).take(span_of_bar)
    sim = Simulation(
        equity=equity,
        position=invested.view(np.int8),
        trades=trades,
        exposure_bars=int(invested.sum()),
        orders_skipped=0,
        # compute_metrics reads none of the single-instrument spans.
        span_cash=span_cash,
        span_quantity=np.empty(0),
        span_of_bar=span_of_bar,
    )
    context = BarContext(aligned.ts_ns, _basket(close, aligned.rows))
    metrics: dict[str, Any] = compute_metrics(
        context=context, sim=sim, drawdown=drawdown, config=config
    )
    rows: list[dict[str, MetricValue]] = []
    initial = float(config.initial_capital)
    for i, name in enumerate(aligned.names):
        mine = trade_instrument == i
        own = Trades(*(getattr(trades, f.name)[mine] for f in dataclasses.fields(Trades)))
        row: dict[str, MetricValue] = {
            "instrument": name,
            "bars": len(aligned.rows[i]),
            "missing_bars": int(missing[i]),
            "contribution": float(contribution[i]),
            "contribution_pct": float(contribution[i] / initial * 100.0),
            "exposure_pct": float(mean_exposure[i] * 100.0),
            "turnover": float(turnover[i]),
            "commissions": float(commissions[i]),
        }
        row.update(_trade_stats(own, aligned.ts_ns))
        rows.append(row)
    metrics["per_instrument"] = rows

    index, names = aligned.index, aligned.names

    def per_instrument(values: np.ndarray, name: str) -> pd.Series:
        return pd.Series(values, index=names, name=name)

    return PortfolioResult(
        equity=pd.Series(equity, index=index, name="equity", copy=False),
        drawdown=pd.Series(drawdown, index=index, name="drawdown", copy=False),
        weights=pd.DataFrame(target_weights.T, index=index, columns=names, copy=False),
        mean_exposure=per_instrument(mean_exposure, "mean_exposure"),
        contribution=per_instrument(contribution, "contribution"),
        turnover=per_instrument(turnover, "turnover"),
        missing_bars=per_instrument(missing, "missing_bars"),
        trades=_trades_frame(trades, trade_instrument, aligned),
        rebalances=index[starts[1:]],
        metrics=metrics,
        config=config,
        engine_version=ENGINE_VERSION,
        spans=(span_cash, span_quantity, span_of_bar, close),
    )
