"""What determines a backtest's result: a request resolved and validated into RunSettings,
the engine config and params-hash key built from them, and the check that the range holds
enough candles before anything is queued."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from backtests.engine import (
    ENGINE_VERSION,
    BacktestConfig,
    InvalidConfigError,
    ParamValidationError,
)
from backtests.models import BacktestSettings, Sizing
from backtests.services.errors import BacktestInputError
from marketdata.models import Instrument
from marketdata.selectors import (
    candle_count_at_least,
    candle_data_version,
    candle_span,
    candles_load,
)
from marketdata.timeframes import TIMEFRAME_SECONDS, timeframe_offset
from persistence.services import params_record
from strategies.library.base import StrategyKind
from strategies.library.registry import UnknownStrategyKind, get_kind
from strategies.models import Strategy

# The cache kind a computed run's summary is stored under, keyed by its params hash.
BACKTEST_CACHE_KIND = "backtest"

# The engine's entry-order, exit, margin and spread options (the engine's rules 3, 7, 8 and
# 14 to 16), kept together on a run as `execution` where they differ from the engine's
# default: name -> (type, default). Decimals are stored as plain decimal strings.
EXECUTION_FIELDS: dict[str, tuple[type, Any]] = {
    "entry_order": (str, "market"),
    "entry_offset_pct": (Decimal, None),
    "entry_valid_bars": (int, 1),
    "trailing_stop_pct": (Decimal, None),
    "atr_stop_multiple": (Decimal, None),
    "atr_period": (int, 14),
    "time_stop_bars": (int, None),
    "max_leverage": (Decimal, Decimal("1")),
    "maintenance_margin_pct": (Decimal, Decimal("0")),
    "borrow_rate_pct": (Decimal, Decimal("0")),
    "spread_bps": (Decimal, Decimal("0")),
}

OVERRIDABLE = (
    "parameters",
    "timeframe",
    "initial_capital",
    "fee_rate",
    "slippage_bps",
    "size_fraction",
    "sizing",
    "fixed_quantity",
    "fixed_notional",
    "risk_pct",
    "fixed_fee",
    "min_fee",
    "allow_short",
    "stop_loss_pct",
    "take_profit_pct",
    *EXECUTION_FIELDS,
)

# What the instrument contributes to a result (its calendar, its order-size rules): taken
# from the instrument row, never stored on the run, but part of the params hash.
FROM_INSTRUMENT = ("calendar", "quantity_step", "min_notional")


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a backtest's result, resolved and validated."""

    kind: str
    parameters: dict[str, Any]
    instrument_id: int
    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    initial_capital: Decimal
    fee_rate: Decimal
    slippage_bps: Decimal
    size_fraction: Decimal
    allow_short: bool
    stop_loss_pct: Decimal | None
    take_profit_pct: Decimal | None
    sizing: str = Sizing.FRACTION
    fixed_quantity: Decimal | None = None
    fixed_notional: Decimal | None = None
    risk_pct: Decimal | None = None
    fixed_fee: Decimal = Decimal("0")
    min_fee: Decimal = Decimal("0")
    # EXECUTION_FIELDS that differ from their default, as stored (execution_resolve).
    execution: dict[str, Any] = field(default_factory=dict)
    # From the instrument (FROM_INSTRUMENT).
    calendar: str = "24/7"
    quantity_step: Decimal | None = None
    min_notional: Decimal = Decimal("0")

    @classmethod
    def from_stored(cls, stored: BacktestSettings, *, parameters: Mapping[str, Any]) -> RunSettings:
        """The settings a stored run or sweep was resolved to, with `parameters` for its kind.

        A sweep stores one set of settings for many parameter combinations, hence the
        argument. Every other field is copied by name, so a new field needs no change here;
        the instrument's (FROM_INSTRUMENT) are read from the instrument as it is now.
        """
        copied = {
            field.name: getattr(stored, field.name)
            for field in fields(cls)
            if field.name not in ("parameters", "symbol", *FROM_INSTRUMENT)
        }
        return cls(
            **copied,
            **_instrument_settings(stored.instrument),
            parameters=dict(parameters),
            symbol=stored.instrument.symbol,
        )

    def _settings(self) -> dict[str, Any]:
        """The settings a run or sweep stores (the model fields they name)."""
        return {
            "kind": self.kind,
            "parameters": self.parameters,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "initial_capital": self.initial_capital,
            "fee_rate": self.fee_rate,
            "slippage_bps": self.slippage_bps,
            "size_fraction": self.size_fraction,
            "allow_short": self.allow_short,
            "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
            "sizing": self.sizing,
            "fixed_quantity": self.fixed_quantity,
            "fixed_notional": self.fixed_notional,
            "risk_pct": self.risk_pct,
            "fixed_fee": self.fixed_fee,
            "min_fee": self.min_fee,
            "execution": self.execution,
        }

    def hash_payload(self, *, data_version: str) -> dict[str, Any]:
        """What goes into params_hash: the settings, what the instrument contributes (so
        results on different calendars or order-size rules never share a key), the engine
        version and the data version."""
        return {
            **self._settings(),
            **{name: getattr(self, name) for name in FROM_INSTRUMENT},
            "instrument": self.symbol,
            "engine_version": ENGINE_VERSION,
            "candle_data_version": data_version,
        }

    def model_fields(self) -> dict[str, Any]:
        return {**self._settings(), "instrument_id": self.instrument_id}

    def engine_config(self) -> BacktestConfig:
        """The one place the Decimal settings become the engine's floats."""
        optional = _float
        return BacktestConfig(
            initial_capital=float(self.initial_capital),
            fee_rate=float(self.fee_rate),
            fixed_fee=float(self.fixed_fee),
            min_fee=float(self.min_fee),
            slippage_bps=float(self.slippage_bps),
            sizing=self.sizing,
            size_fraction=float(self.size_fraction),
            fixed_quantity=optional(self.fixed_quantity),
            fixed_notional=optional(self.fixed_notional),
            risk_pct=optional(self.risk_pct),
            quantity_step=optional(self.quantity_step),
            min_notional=float(self.min_notional),
            allow_short=self.allow_short,
            stop_loss_pct=optional(self.stop_loss_pct),
            take_profit_pct=optional(self.take_profit_pct),
            timeframe=self.timeframe,
            calendar=self.calendar,
            **execution_engine_values(self.execution),
        )


def stored_overrides(stored: BacktestSettings) -> dict[str, Any]:
    """The overrides that request `stored`'s settings again (a rerun, or a sweep's or a
    study's combination opened as a backtest): every OVERRIDABLE field but the parameters,
    which the caller gives."""
    found = {
        name: getattr(stored, name)
        for name in OVERRIDABLE
        if name != "parameters" and name not in EXECUTION_FIELDS
    }
    return {**found, **stored.execution}


def execution_engine_values(execution: Mapping[str, Any]) -> dict[str, Any]:
    """Stored execution options as the engine's BacktestConfig fields (decimals as floats)."""
    return {
        name: float(value) if EXECUTION_FIELDS[name][0] is Decimal else value
        for name, value in execution.items()
        if name in EXECUTION_FIELDS
    }


def execution_resolve(overrides: Mapping[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    """The EXECUTION_FIELDS given in `overrides`, typed, without those equal to their
    default (so a request spelling out a default shares its result with one that does not),
    decimals as normalised strings; bad values are added to `errors`. The engine's own
    rules (a limit entry needs an offset, leverage at least 1...) are checked after."""
    found: dict[str, Any] = {}
    for name, (kind, default) in EXECUTION_FIELDS.items():
        value = overrides.get(name)
        if value is None:
            continue
        if kind is Decimal:
            number = decimal_field(value, name, errors)
            if number is None:
                continue
            if default is not None and number == default:
                continue
            found[name] = format(number.normalize(), "f")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                errors[name] = ["Must be a whole number."]
            elif value != default:
                found[name] = value
        elif not isinstance(value, str):
            errors[name] = ["Must be a string."]
        elif value != default:
            found[name] = value
    return found


def _instrument_settings(instrument: Instrument) -> dict[str, Any]:
    return {
        "calendar": instrument.calendar,
        "quantity_step": instrument.quantity_step,
        "min_notional": instrument.min_notional,
    }


def decimal_field(value: Any, field: str, errors: dict[str, Any]) -> Decimal | None:
    """`value` as a finite Decimal, or None (given None, or an error added to `errors`)."""
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[field] = ["Must be a number."]
        return None
    if not number.is_finite():
        errors[field] = ["Must be a finite number."]
        return None
    return number


def field_check(errors: dict[str, Any], field: str, ok: bool, message: str) -> None:
    """Add `message` to `field`'s errors unless `ok`, or the field already has one."""
    if not ok and field not in errors:
        errors[field] = [message]


def costs_check(
    errors: dict[str, Any],
    *,
    capital: Decimal | None,
    fee: Decimal | None,
    slippage: Decimal | None,
) -> None:
    """The checks every run's capital, fee rate and slippage pass (a backtest's, a
    portfolio's): each problem added to `errors` under its field."""
    field_check(errors, "initial_capital", capital is not None and capital > 0, "Must be positive.")
    field_check(
        errors, "fee_rate", fee is not None and 0 <= fee < 1, "Must be at least 0 and below 1."
    )
    field_check(
        errors,
        "slippage_bps",
        slippage is not None and 0 <= slippage < 10_000,
        "Must be at least 0 and below 10000.",
    )


def _parameters_resolve(
    kind: StrategyKind, strategy: Strategy, overrides: Mapping[str, Any], errors: dict[str, Any]
) -> dict[str, Any]:
    override = overrides.get("parameters") or {}
    if not isinstance(override, Mapping):
        errors["parameters"] = ["Must be an object of parameter values."]
        return {}
    raw_params = {**(strategy.parameters or {}), **override}
    try:
        return dict(kind.validate(raw_params))
    except ParamValidationError as exc:
        errors["parameters"] = exc.errors
        return {}


def range_check(start: datetime, end: datetime, errors: dict[str, Any]) -> None:
    """`start` and `end` each with a time zone, and `end` after `start`."""
    for name, value in (("start", start), ("end", end)):
        field_check(errors, name, timezone.is_aware(value), "Must include a time zone.")
    if "start" not in errors and "end" not in errors:
        field_check(errors, "end", end > start, "Must be after start.")


def utc_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _range_clip(
    *, instrument_id: int, symbol: str, timeframe: str, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """[start, end) narrowed to the stored candles: from the first bar to one bar past the
    last. The run then stores and shows the range its result is about, and a request wider
    than the data shares the cache with the exact one. No candle inside is a 400 on `end`
    naming the request and the span the data has."""
    span = candle_span(instrument_id=instrument_id, timeframe=timeframe)
    requested = f"start {utc_text(start)} to end {utc_text(end)}"
    if span is None:
        raise BacktestInputError(
            {"end": [f"No {timeframe} candles of {symbol} are stored (requested {requested})."]}
        )
    first = span[0].to_pydatetime()
    after_last = (span[1] + timeframe_offset(timeframe)).to_pydatetime()
    if start >= after_last or end <= first:
        raise BacktestInputError(
            {
                "end": [
                    f"No {timeframe} candles of {symbol} from {requested}: the stored data "
                    f"spans {utc_text(first)} to {utc_text(after_last)}."
                ]
            }
        )
    return max(start, first), min(end, after_last)


def run_settings_resolve(
    *,
    strategy: Strategy,
    start: datetime,
    end: datetime,
    overrides: Mapping[str, Any] | None = None,
) -> RunSettings:
    """The strategy's settings with `overrides` applied, validated field by field.

    Parameter overrides are merged over the strategy's parameters; then the kind's spec
    cleans them, so every rule of the spec applies and defaults are filled in. The range is
    narrowed to the stored candles (`_range_clip`): start and end are the effective ones.
    """
    overrides = dict(overrides or {})
    errors: dict[str, Any] = {}
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    for name in unknown:
        errors[name] = [f"Cannot be overridden. Allowed: {', '.join(OVERRIDABLE)}."]

    try:
        kind = get_kind(strategy.kind)
    except UnknownStrategyKind as exc:
        raise BacktestInputError({"strategy": [str(exc)]}) from exc
    parameters = _parameters_resolve(kind, strategy, overrides, errors)

    timeframe = overrides.get("timeframe") or strategy.timeframe
    field_check(
        errors, "timeframe", timeframe in TIMEFRAME_SECONDS, f"Unknown timeframe {timeframe!r}."
    )

    def pick(name: str, default: Any) -> Decimal | None:
        return decimal_field(overrides.get(name, default), name, errors)

    capital = pick("initial_capital", strategy.initial_capital)
    fee = pick("fee_rate", strategy.fee_rate)
    slippage = pick("slippage_bps", strategy.slippage_bps)
    size = pick("size_fraction", Decimal("1"))
    stop = pick("stop_loss_pct", None)
    target = pick("take_profit_pct", None)
    allow_short = overrides.get("allow_short", kind.allows_short)
    costs_check(errors, capital=capital, fee=fee, slippage=slippage)
    execution = execution_resolve(overrides, errors)
    # Leverage below 1 is the engine's error on max_leverage, not one on size_fraction.
    leverage = max(Decimal(execution.get("max_leverage", "1")), Decimal("1"))
    field_check(
        errors,
        "size_fraction",
        size is not None and 0 < size <= leverage,
        "Must be above 0 and at most 1."
        if leverage == 1
        else f"Must be above 0 and at most max_leverage ({leverage}).",
    )
    field_check(
        errors, "stop_loss_pct", stop is None or 0 < stop < 100, "Must be above 0 and below 100."
    )
    field_check(errors, "take_profit_pct", target is None or target > 0, "Must be positive.")
    field_check(errors, "allow_short", isinstance(allow_short, bool), "Must be true or false.")
    if allow_short is True and not kind.allows_short:
        errors.setdefault("allow_short", [f"{kind.name} never goes short."])
    sizing = overrides.get("sizing") or Sizing.FRACTION
    fixed_quantity = pick("fixed_quantity", None)
    fixed_notional = pick("fixed_notional", None)
    risk_pct = pick("risk_pct", None)
    fixed_fee = pick("fixed_fee", Decimal("0")) or Decimal("0")
    min_fee = pick("min_fee", Decimal("0")) or Decimal("0")
    # The engine states the sizing and fee rules once (BacktestConfig.validate); fields
    # that already failed to parse keep their first error.
    _engine_check(
        errors,
        BacktestConfig(
            sizing=sizing,
            fixed_quantity=_float(fixed_quantity),
            fixed_notional=_float(fixed_notional),
            risk_pct=_float(risk_pct),
            stop_loss_pct=_float(stop),
            fixed_fee=float(fixed_fee),
            min_fee=float(min_fee),
            size_fraction=float(size) if size is not None and size > 0 else 1.0,
            fee_rate=float(fee) if fee is not None and 0 <= fee < 1 else 0.0,
            allow_short=allow_short if isinstance(allow_short, bool) else False,
            take_profit_pct=_float(target) if target is not None and target > 0 else None,
            **execution_engine_values(execution),
        ),
    )
    range_check(start, end, errors)
    if errors:
        raise BacktestInputError(errors)
    assert capital is not None and fee is not None and slippage is not None and size is not None
    start, end = _range_clip(
        instrument_id=strategy.instrument_id,
        symbol=strategy.instrument.symbol,
        timeframe=timeframe,
        start=start,
        end=end,
    )
    return RunSettings(
        kind=kind.name,
        parameters=parameters,
        instrument_id=strategy.instrument_id,
        symbol=strategy.instrument.symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        initial_capital=capital,
        fee_rate=fee,
        slippage_bps=slippage,
        size_fraction=size,
        allow_short=bool(allow_short),
        stop_loss_pct=stop,
        take_profit_pct=target,
        sizing=sizing,
        fixed_quantity=fixed_quantity,
        fixed_notional=fixed_notional,
        risk_pct=risk_pct,
        fixed_fee=fixed_fee,
        min_fee=min_fee,
        execution=execution,
        **_instrument_settings(strategy.instrument),
    )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _engine_check(errors: dict[str, Any], config: BacktestConfig) -> None:
    """`config`'s problems by the engine's rules, added as per-field errors."""
    try:
        config.validate()
    except InvalidConfigError as exc:
        for name, messages in exc.errors.items():
            errors.setdefault(name, messages)


def run_engine_config(run: BacktestSettings | RunSettings) -> BacktestConfig:
    """The engine config of a stored run, sweep or study, or of resolved settings."""
    settings = run if isinstance(run, RunSettings) else RunSettings.from_stored(run, parameters={})
    return settings.engine_config()


def backtest_key(*, run_settings: RunSettings) -> str:
    """params_hash of a resolved request, with the current candle data version."""
    data_version = candle_data_version(
        instrument_id=run_settings.instrument_id,
        timeframe=run_settings.timeframe,
        start=run_settings.start,
        end=run_settings.end,
    )
    return params_record(payload=run_settings.hash_payload(data_version=data_version))


def data_check(*, run_settings: RunSettings) -> None:
    """Refuse (a 400 on the parameter to change) data the kind cannot learn from.

    Only kinds that look at the data before trading override `check_data` (the ML
    predictor: every training window needs up and down labels); for them the range's
    candles are read here, so a request that could only fail saves nothing.
    """
    kind = get_kind(run_settings.kind)
    if type(kind).check_data is StrategyKind.check_data:
        return
    candles, _ = candles_load(
        instrument_id=run_settings.instrument_id,
        timeframe=run_settings.timeframe,
        start=run_settings.start,
        end=run_settings.end,
    )
    try:
        kind.check_data(candles, run_settings.parameters)
    except ParamValidationError as exc:
        raise BacktestInputError({"parameters": exc.errors}) from None


def candle_count_check(*, run_settings: RunSettings, needed: int, needed_by: str) -> None:
    """Refuse (a 400 on `end`) a range with fewer than `needed` candles.

    The engine enforces the same rule (the kind's `min_bars`) on the candles it is given;
    checking here first answers a request that could only fail before anything is queued.
    `needed_by` names what needs them in the message, e.g. "the grid".
    """
    available = candle_count_at_least(
        instrument_id=run_settings.instrument_id,
        timeframe=run_settings.timeframe,
        start=run_settings.start,
        end=run_settings.end,
        bars=needed,
    )
    if available < needed:
        raise BacktestInputError(
            {
                "end": [
                    f"The range has {available} {run_settings.timeframe} candle(s) of "
                    f"{run_settings.symbol}; {needed_by} needs at least {needed}."
                ]
            }
        )
