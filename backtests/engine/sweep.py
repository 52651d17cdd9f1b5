"""Parameter sweeps: one metrics row per valid combination, sharing indicator work.

Combinations that break the kind's spec (e.g. fast >= slow) or need more candles than
given are skipped, not fatal: a grid is usually a rectangle cut by such rules. The skipped
combinations and their reasons are listed in the result's `attrs["skipped"]`.

A grid's size is known without building it (`grid_size`: the product of its lists'
lengths), and any one combination can be read by its index (`grid_combination`), so a
random sample of a huge grid (`sample_grid`) costs what the sample does, not the grid.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from backtests.engine.backtest import check_length, drawdown_of, fit_to_candles, resolve_kind
from backtests.engine.candles import validate_candles
from backtests.engine.config import BacktestConfig
from backtests.engine.errors import EngineError, InsufficientDataError
from backtests.engine.metrics import METRIC_DEFINITIONS, BarContext, compute_metrics
from backtests.engine.simulate import ProgressFn, simulate
from strategies.library.base import ParamValidationError, StrategyKind
from strategies.library.indicators import IndicatorCache

Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


# Above this many raw combinations, sample_grid draws indices instead of expanding the grid.
# Sweeps of grids up to this size sample exactly as they always have.
SAMPLE_BY_INDEX_ABOVE = 5_000
# How many raw combinations sample_grid may try per sample wanted (at least 1,000 in all):
# enough for grids that the parameter rules mostly cut away, bounded for those they cut all.
SAMPLE_ATTEMPTS_PER_SAMPLE = 10


def _checked(grid: Grid) -> Grid:
    if isinstance(grid, Mapping):
        for name, values in grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise ParamValidationError({name: ["Grid values must be a list."]})
    return grid


def grid_size(grid: Grid) -> int:
    """How many raw combinations `grid` has (before the spec's rules or de-duplication):
    the product of its lists' lengths, or the length of a list of combinations."""
    grid = _checked(grid)
    if isinstance(grid, Mapping):
        return math.prod(len(values) for values in grid.values())
    return len(grid)


def grid_combination(grid: Grid, index: int) -> dict[str, Any]:
    """The raw combination at `index` in the order of `itertools.product` (the last name
    varies fastest): `index` read as a mixed-radix number, one digit per name."""
    if not isinstance(grid, Mapping):
        return dict(grid[index])
    picked: dict[str, Any] = {}
    for name in reversed(list(grid)):
        values = grid[name]
        index, digit = divmod(index, len(values))
        picked[name] = values[digit]
    return {name: picked[name] for name in grid}


def _raw_combinations(grid: Grid) -> Iterator[dict[str, Any]]:
    grid = _checked(grid)
    if isinstance(grid, Mapping):
        names = list(grid)
        return (dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values()))
    return (dict(combo) for combo in grid)


def _clean(kind: StrategyKind, raw: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
    """The cleaned combination and None, or None and the spec's errors."""
    try:
        return kind.validate(raw), None
    except ParamValidationError as exc:
        # Unknown names make every combination invalid: that is a caller error.
        unknown = [name for name in raw if name not in kind.params.names()]
        if unknown:
            raise
        return None, exc.errors


def _expand(kind: StrategyKind, grid: Grid) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for raw in _raw_combinations(grid):
        cleaned, errors = _clean(kind, raw)
        if cleaned is None:
            skipped.append({"params": raw, "errors": errors})
            continue
        key = tuple(sorted(cleaned.items()))
        if key not in seen:
            seen.add(key)
            valid.append(cleaned)
    return valid, skipped


def expand_grid(kind: str, grid: Grid) -> list[dict[str, Any]]:
    """The valid, de-duplicated, cleaned parameter combinations of `grid` for `kind`."""
    return _expand(resolve_kind(kind), grid)[0]


def sample_grid(
    kind: str,
    grid: Grid,
    samples: int,
    seed: str | int,
    *,
    by_index_above: int = SAMPLE_BY_INDEX_ABOVE,
) -> list[dict[str, Any]]:
    """Up to `samples` valid, distinct, cleaned combinations of `grid`, drawn at random
    without replacement; the same `seed` draws the same ones, in the same order.

    A grid of at most `by_index_above` raw combinations is expanded and sampled with
    `random.Random(seed).sample`. A larger one is never built: raw indices are drawn
    (seeded, each at most once) and read with `grid_combination`, and those the spec's
    rules refuse or that repeat a combination already drawn are passed over. That stops
    after SAMPLE_ATTEMPTS_PER_SAMPLE tries per sample (1,000 at least), so a grid whose
    rules refuse nearly everything gives fewer samples rather than a long search.
    """
    strategy_kind = resolve_kind(kind)
    total = grid_size(grid)
    if total <= by_index_above:
        combos = _expand(strategy_kind, grid)[0]
        if samples < len(combos):
            combos = random.Random(seed).sample(combos, samples)
        return combos
    rng = random.Random(seed)
    attempts = min(total, max(samples * SAMPLE_ATTEMPTS_PER_SAMPLE, 1_000))
    tried: set[int] = set()
    seen: set[tuple[Any, ...]] = set()
    valid: list[dict[str, Any]] = []
    while len(valid) < samples and len(tried) < attempts:
        index = rng.randrange(total)
        if index in tried:
            continue
        tried.add(index)
        cleaned, _ = _clean(strategy_kind, grid_combination(grid, index))
        if cleaned is None:
            continue
        key = tuple(sorted(cleaned.items()))
        if key not in seen:
            seen.add(key)
            valid.append(cleaned)
    return valid


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
    config = fit_to_candles(config, bars)
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
        metrics = compute_metrics(context=context, sim=sim, drawdown=drawdown, config=config)
        rows.append({**params, **metrics})
        if progress is not None:
            progress(done, total)
    columns = strategy_kind.params.names() + list(METRIC_DEFINITIONS)
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["skipped"] = skipped
    return frame
