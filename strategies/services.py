"""Writes to `Strategy`: parameters are always validated through the kind's spec."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from marketdata.models import Instrument
from strategies.library.base import ParamValidationError
from strategies.library.registry import UnknownStrategyKind, get_kind
from strategies.models import Strategy


def strategy_clean_parameters(*, kind: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The kind's cleaned parameters (defaults filled), or a ValidationError per field."""
    try:
        return get_kind(kind).validate(parameters)
    except UnknownStrategyKind as exc:
        raise ValidationError({"kind": str(exc)}) from exc
    except ParamValidationError as exc:
        raise ValidationError(
            {f"parameters.{name}": messages for name, messages in exc.errors.items()}
        ) from exc


@transaction.atomic
def strategy_create(
    *,
    owner: User,
    name: str,
    kind: str,
    instrument: Instrument,
    timeframe: str,
    parameters: dict[str, Any] | None = None,
    description: str = "",
    status: str = Strategy.Status.DRAFT,
    initial_capital: Decimal = Decimal("10000"),
    fee_rate: Decimal = Decimal("0.001"),
    slippage_bps: Decimal = Decimal("0"),
) -> Strategy:
    strategy = Strategy(
        owner=owner,
        name=name,
        kind=kind,
        parameters=strategy_clean_parameters(kind=kind, parameters=parameters or {}),
        instrument=instrument,
        timeframe=timeframe,
        description=description,
        status=status,
        initial_capital=initial_capital,
        fee_rate=fee_rate,
        slippage_bps=slippage_bps,
    )
    strategy.full_clean()
    strategy.save()
    return strategy


@transaction.atomic
def strategy_update(*, strategy: Strategy, **changes: Any) -> Strategy:
    """Apply `changes` to `strategy`, revalidating parameters whenever kind or parameters move."""
    for field, value in changes.items():
        setattr(strategy, field, value)
    if {"kind", "parameters"} & changes.keys() or strategy.pk is None:
        strategy.parameters = strategy_clean_parameters(
            kind=strategy.kind, parameters=strategy.parameters or {}
        )
    strategy.full_clean()
    strategy.save()
    return strategy
