"""Parameter sweeps: one metrics row per valid combination, sharing indicator work.

Combinations that break the kind's spec (e.g. fast >= slow) or need more candles than
given are skipped, not fatal: a grid is usually a rectangle cut by such rules. The skipped
combinations and their reasons are listed in the result's `attrs["skipped"]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from backtests.engine.backtest import check_length, drawdown_of, resolve_kind
from backtests.engine.candles import validate_candles
from backtests.engine.config import BacktestConfig
from backtests.engine.errors import EngineError, InsufficientDataError
from backtests.engine.metrics import METRIC_DEFINITIONS, BarContext, compute_metrics
from backtests.engine.simulate import ProgressFn, simulate
from strategies.library.base import ParamValidationError, StrategyKind
from strategies.library.indicators import IndicatorCache

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


def _raw_combinations(grid: Grid) -> list[dict[str, Any]]:
    if isinstance(grid, Mapping):
        names = list(grid)
        for name in names:
            values = grid[name]
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise ParamValidationError({name: ["Grid values must be a list."]})
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return [dict(combo) for combo in grid]


def _expand(kind: StrategyKind, grid: Grid) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for raw in _raw_combinations(grid):
        try:
            cleaned = kind.validate(raw)
        except ParamValidationError as exc:
            # Unknown names make every combination invalid: that is a caller error.
            unknown = [name for name in raw if name not in kind.params.names()]
            if unknown:
                raise
            skipped.append({"params": raw, "errors": exc.errors})
            continue
        key = tuple(sorted(cleaned.items()))
        if key not in seen:
            seen.add(key)
            valid.append(cleaned)
    return valid, skipped


def expand_grid(kind: str, grid: Grid) -> list[dict[str, Any]]:
    """The valid, de-duplicated, cleaned parameter combinations of `grid` for `kind`."""
    return _expand(resolve_kind(kind), grid)[0]


def run_sweep(
    candles: pd.DataFrame,
    kind: str,
    grid: Grid,
    config: BacktestConfig | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Backtest every valid combination of `grid`; one row of params + metrics each.

    `grid` is {param: [values]} (a cartesian product) or a list of param dicts.
    `progress(done, total)` counts combinations. Raises when no combination is runnable.
    """
    config = config or BacktestConfig()
    config.validate()
    strategy_kind = resolve_kind(kind)
    combos, skipped = _expand(strategy_kind, grid)
    bars = validate_candles(candles)
    runnable = []
    for params in combos:
        try:
            check_length(strategy_kind, params, len(bars))
        except InsufficientDataError as exc:
            skipped.append({"params": params, "errors": {"candles": [str(exc)]}})
            continue
        runnable.append(params)
    if not runnable:
        if skipped:
            raise EngineError(
                f"no runnable combination in the grid for {kind}: "
                + "; ".join(f"{s['params']}: {s['errors']}" for s in skipped[:5])
            )
        raise EngineError(f"the grid for {kind} is empty")

    cache = IndicatorCache()
    context = BarContext(bars.ts_ns, bars.close)
    total = len(runnable)
    rows: list[dict[str, Any]] = []
    if progress is not None:
        progress(0, total)
    for done, params in enumerate(runnable, start=1):
        target = strategy_kind.positions(candles, params, cache)
        sim = simulate(bars, target, config)
        drawdown = drawdown_of(sim.equity)
        metrics = compute_metrics(
            context=context,
            equity=sim.equity,
            drawdown=drawdown,
            trades=sim.trades,
            exposure_bars=sim.exposure_bars,
            config=config,
        )
        rows.append({**params, **metrics})
        if progress is not None:
            progress(done, total)
    columns = strategy_kind.params.names() + list(METRIC_DEFINITIONS)
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["skipped"] = skipped
    return frame
