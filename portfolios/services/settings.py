"""A portfolio run's settings: the constants that bound it, the engine configuration they
give, each field validated (a 400 naming it, BacktestInputError) and the params hash that
keys the cache."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from backtests.engine import ENGINE_VERSION, BacktestConfig, InvalidConfigError
from backtests.engine.portfolio import run_portfolio
from backtests.services import BacktestInputError
from backtests.services.run_settings import (
    costs_check,
    decimal_field,
    field_check,
    range_check,
    utc_text,
)
from marketdata.models import Instrument
from marketdata.selectors import (
    candle_count_at_least,
    candle_data_version,
    candle_span,
)
from marketdata.timeframes import TIMEFRAME_SECONDS, timeframe_offset
from persistence.services import (
    params_record,
)
from portfolios.models import (
    Allocation,
    PortfolioRun,
    Rebalance,
)
from strategies.library.base import ParamValidationError
from strategies.library.registry import UnknownStrategyKind, get_kind

# The cache kind a computed run's summary is stored under, keyed by its params hash.
PORTFOLIO_CACHE_KIND = "portfolio"
# The artifact a succeeded run's equity and drawdown curves are saved as, per params hash.
EQUITY_ARTIFACT = "portfolio-equity.parquet"
# A portfolio of one instrument is a plain backtest: that has its own page and API.
MIN_INSTRUMENTS = 2
# Each instrument's candles are loaded into one worker's memory.
MAX_INSTRUMENTS = 50
# Share of the progress bar given to loading candles; the engine and saving take the rest.
LOAD_SHARE = 60.0


@dataclass(frozen=True)
class PortfolioSettings:
    """Everything that determines a portfolio run's result, resolved and validated."""

    kind: str
    parameters: dict[str, Any]
    instruments: tuple[Instrument, ...]
    timeframe: str
    start: datetime
    end: datetime
    initial_capital: Decimal
    fee_rate: Decimal
    slippage_bps: Decimal
    allocation: str
    weights: dict[str, float] | None
    max_positions: int | None
    rebalance: str
    drift_threshold: Decimal | None
    calendar: str

    @property
    def symbols(self) -> list[str]:
        return [instrument.symbol for instrument in self.instruments]

    def hash_payload(self, *, data_versions: Sequence[str]) -> dict[str, Any]:
        """What goes into params_hash: every setting, each instrument (in order, with its
        calendar) and its candle data version, and the engine version."""
        return {
            "job": "portfolio",
            "kind": self.kind,
            "parameters": self.parameters,
            "instruments": self.symbols,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "initial_capital": self.initial_capital,
            "fee_rate": self.fee_rate,
            "slippage_bps": self.slippage_bps,
            "allocation": self.allocation,
            "weights": self.weights,
            "max_positions": self.max_positions,
            "rebalance": self.rebalance,
            "drift_threshold": self.drift_threshold,
            "calendar": self.calendar,
            "engine_version": ENGINE_VERSION,
            "candle_data_versions": list(data_versions),
        }


def engine_config(run: PortfolioRun | PortfolioSettings, *, calendar: str) -> BacktestConfig:
    """The one place a run's Decimal settings become the engine's floats."""
    return BacktestConfig(
        initial_capital=float(run.initial_capital),
        fee_rate=float(run.fee_rate),
        slippage_bps=float(run.slippage_bps),
        timeframe=run.timeframe,
        calendar=calendar,
    )


def engine_options(run: PortfolioRun | PortfolioSettings) -> dict[str, Any]:
    """run_portfolio's keyword arguments for the run's allocation and rebalancing."""
    return {
        "allocation": run.allocation,
        "weights": dict(run.weights) if run.weights is not None else None,
        "max_positions": run.max_positions,
        "rebalance": run.rebalance,
        "drift_threshold": None if run.drift_threshold is None else float(run.drift_threshold),
    }


# --- Validation ------------------------------------------------------------------------


def _instruments_resolve(raw: Any, errors: dict[str, Any]) -> tuple[Instrument, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        errors["instruments"] = ["Must be a list of instrument symbols."]
        return ()
    symbols = [str(symbol) for symbol in raw]
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        errors["instruments"] = [f"Listed more than once: {', '.join(duplicates)}."]
        return ()
    if len(symbols) < MIN_INSTRUMENTS:
        errors["instruments"] = [
            f"Give at least {MIN_INSTRUMENTS} instruments (one is a plain backtest)."
        ]
        return ()
    if len(symbols) > MAX_INSTRUMENTS:
        errors["instruments"] = [f"At most {MAX_INSTRUMENTS} instruments."]
        return ()
    found = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols)}
    unknown = [s for s in symbols if s not in found]
    if unknown:
        errors["instruments"] = [f"Unknown instrument(s): {', '.join(unknown)}."]
        return ()
    instruments = tuple(found[s] for s in symbols)
    calendars = {i.calendar for i in instruments}
    if len(calendars) > 1:
        described = ", ".join(f"{i.symbol}: {i.calendar}" for i in instruments)
        errors["instruments"] = [f"All instruments must share one calendar; got {described}."]
        return ()
    return instruments


def _weights_resolve(
    raw: Any, allocation: str, symbols: list[str], errors: dict[str, Any]
) -> dict[str, float] | None:
    if raw is None:
        field_check(
            errors,
            "weights",
            allocation != Allocation.FIXED,
            "Required when allocation is 'fixed'.",
        )
        return None
    if not isinstance(raw, Mapping):
        errors["weights"] = ["Must be an object of instrument symbol to weight."]
        return None
    if allocation != Allocation.FIXED:
        errors["weights"] = ["Applies only when allocation is 'fixed'."]
        return None
    unknown = [str(name) for name in raw if name not in symbols]
    if unknown:
        errors["weights"] = [f"Not among the instruments: {', '.join(unknown)}."]
        return None
    weights: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            errors["weights"] = [f"{name}: must be a number."]
            return None
        try:
            number = float(value)
        except ValueError:
            errors["weights"] = [f"{name}: must be a number."]
            return None
        if not math.isfinite(number) or number < 0:
            errors["weights"] = [f"{name}: must be a finite number, zero or more."]
            return None
        weights[str(name)] = number
    total = math.fsum(weights.values())
    field_check(
        errors,
        "weights",
        total <= 1.0 + 1e-9,
        f"Weights sum to {total:g}; at most 1 (portfolios have no leverage yet).",
    )
    # In the instruments' order, so the hash does not depend on the request's key order.
    return {s: weights[s] for s in symbols if s in weights}


def _engine_check(
    *,
    symbols: list[str],
    timeframe: str,
    config: BacktestConfig,
    options: Mapping[str, Any],
    errors: dict[str, Any],
) -> None:
    """The engine's own rules for the config and the options, as per-field errors.

    run_portfolio checks them before it looks at any price, so a two-bar flat market of
    the run's instruments answers at once; fields that already failed keep their error.
    """
    start = pd.Timestamp("2000-01-03", tz="UTC")
    index = pd.DatetimeIndex([start, start + timeframe_offset(timeframe)])
    flat = pd.DataFrame(
        {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0}, index=index
    )
    try:
        run_portfolio(
            dict.fromkeys(symbols, flat),
            pd.DataFrame(0.0, index=index, columns=symbols),
            config,
            **options,
        )
    except InvalidConfigError as exc:
        for name, messages in exc.errors.items():
            errors.setdefault(name, messages)


def portfolio_settings_resolve(
    *,
    kind: str,
    parameters: Any,
    instruments: Any,
    timeframe: str,
    start: datetime,
    end: datetime,
    initial_capital: Any = Decimal("10000"),
    fee_rate: Any = Decimal("0.001"),
    slippage_bps: Any = Decimal("0"),
    allocation: str = Allocation.EQUAL,
    weights: Any = None,
    max_positions: Any = None,
    rebalance: str = Rebalance.CHANGE,
    drift_threshold: Any = None,
) -> PortfolioSettings:
    """The request validated field by field; every problem is reported at once.

    The range is narrowed to the instruments' stored candles (from the earliest first bar
    to one bar past the latest last bar), so a request wider than the data shares the cache
    with the exact one. Each instrument needs the kind's minimum of bars in the range.
    """
    errors: dict[str, Any] = {}
    cleaned: dict[str, Any] = {}
    try:
        strategy_kind = get_kind(kind)
    except UnknownStrategyKind as exc:
        errors["kind"] = [str(exc)]
        strategy_kind = None
    if strategy_kind is not None:
        if parameters is not None and not isinstance(parameters, Mapping):
            errors["parameters"] = ["Must be an object of parameter values."]
        else:
            try:
                cleaned = dict(strategy_kind.validate(parameters or {}))
            except ParamValidationError as exc:
                errors["parameters"] = exc.errors
    resolved = _instruments_resolve(instruments, errors)
    symbols = [i.symbol for i in resolved]
    field_check(
        errors, "timeframe", timeframe in TIMEFRAME_SECONDS, f"Unknown timeframe {timeframe!r}."
    )
    capital = decimal_field(initial_capital, "initial_capital", errors)
    fee = decimal_field(fee_rate, "fee_rate", errors)
    slippage = decimal_field(slippage_bps, "slippage_bps", errors)
    drift = decimal_field(drift_threshold, "drift_threshold", errors)
    costs_check(errors, capital=capital, fee=fee, slippage=slippage)
    field_check(
        errors,
        "allocation",
        allocation in Allocation.values,
        f"Unknown allocation {allocation!r}; known: {', '.join(Allocation.values)}.",
    )
    field_check(
        errors,
        "rebalance",
        rebalance in Rebalance.values,
        f"Unknown rebalance {rebalance!r}; known: {', '.join(Rebalance.values)}.",
    )
    field_check(
        errors,
        "max_positions",
        max_positions is None
        or (
            isinstance(max_positions, int)
            and not isinstance(max_positions, bool)
            and 1 <= max_positions <= MAX_INSTRUMENTS
        ),
        f"Must be a whole number from 1 to {MAX_INSTRUMENTS}.",
    )
    field_check(
        errors, "drift_threshold", drift is None or 0 < drift < 1, "Must be above 0 and below 1."
    )
    resolved_weights = _weights_resolve(weights, allocation, symbols, errors) if resolved else None
    range_check(start, end, errors)
    calendar = resolved[0].calendar if resolved else "24/7"
    if resolved and not {"timeframe", "initial_capital", "fee_rate", "slippage_bps"} & set(errors):
        assert capital is not None and fee is not None and slippage is not None
        _engine_check(
            symbols=symbols,
            timeframe=timeframe,
            config=BacktestConfig(
                initial_capital=float(capital),
                fee_rate=float(fee),
                slippage_bps=float(slippage),
                timeframe=timeframe,
                calendar=calendar,
            ),
            options={
                "allocation": allocation if allocation in Allocation.values else None,
                "weights": resolved_weights,
                "max_positions": max_positions if "max_positions" not in errors else None,
                "rebalance": rebalance if rebalance in Rebalance.values else Rebalance.CHANGE,
                "drift_threshold": float(drift) if drift is not None else None,
            },
            errors=errors,
        )
    if errors:
        raise BacktestInputError(errors)
    assert strategy_kind is not None and capital is not None
    assert fee is not None and slippage is not None
    start, end = _range_clip(resolved, timeframe=timeframe, start=start, end=end)
    _bars_check(
        resolved,
        timeframe=timeframe,
        start=start,
        end=end,
        needed=strategy_kind.min_bars(cleaned),
        kind=strategy_kind.name,
    )
    return PortfolioSettings(
        kind=strategy_kind.name,
        parameters=cleaned,
        instruments=resolved,
        timeframe=timeframe,
        start=start,
        end=end,
        initial_capital=capital,
        fee_rate=fee,
        slippage_bps=slippage,
        allocation=allocation,
        weights=resolved_weights,
        max_positions=max_positions,
        rebalance=rebalance,
        drift_threshold=drift,
        calendar=calendar,
    )


def _range_clip(
    instruments: Sequence[Instrument], *, timeframe: str, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    firsts, after_lasts, missing = [], [], []
    for instrument in instruments:
        span = candle_span(instrument_id=instrument.pk, timeframe=timeframe)
        if span is None:
            missing.append(instrument.symbol)
            continue
        first = span[0].to_pydatetime()
        after_last = (span[1] + timeframe_offset(timeframe)).to_pydatetime()
        if start >= after_last or end <= first:
            missing.append(instrument.symbol)
            continue
        firsts.append(first)
        after_lasts.append(after_last)
    if missing:
        raise BacktestInputError(
            {
                "instruments": [
                    f"No {timeframe} candles from {utc_text(start)} to {utc_text(end)} for: "
                    f"{', '.join(missing)}."
                ]
            }
        )
    return max(start, min(firsts)), min(end, max(after_lasts))


def _bars_check(
    instruments: Sequence[Instrument],
    *,
    timeframe: str,
    start: datetime,
    end: datetime,
    needed: int,
    kind: str,
) -> None:
    """Refuse (a 400 on `end`) a range where an instrument has fewer bars than the kind
    needs; the engine would refuse it too, after loading everything."""
    short = []
    for instrument in instruments:
        available = candle_count_at_least(
            instrument_id=instrument.pk, timeframe=timeframe, start=start, end=end, bars=needed
        )
        if available < needed:
            short.append(f"{instrument.symbol} ({available})")
    if short:
        raise BacktestInputError(
            {
                "end": [
                    f"{kind} with these parameters needs at least {needed} {timeframe} "
                    f"candles of each instrument; the range has: {', '.join(short)}."
                ]
            }
        )


def portfolio_key(*, settings: PortfolioSettings) -> str:
    """params_hash of resolved settings, with each instrument's current candle data version."""
    versions = [
        candle_data_version(
            instrument_id=instrument.pk,
            timeframe=settings.timeframe,
            start=settings.start,
            end=settings.end,
        )
        for instrument in settings.instruments
    ]
    return params_record(payload=settings.hash_payload(data_versions=versions))
