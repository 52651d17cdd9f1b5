"""Writes to `Strategy`: parameters are always validated through the kind's spec, a name is
unique per owner (a clash is a ValidationError naming `name`, never an IntegrityError), and a
strategy that anything refers to (backtest runs, sweeps, orders, positions, trades) is archived
rather than deleted."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from accounts.models import User
from marketdata.models import Instrument
from strategies.library.base import ParamValidationError
from strategies.library.registry import UnknownStrategyKind, get_kind
from strategies.models import Strategy


class StrategyConflict(Exception):
    """A write the strategy's current state refuses (the API answers 409)."""


NAME_TAKEN = "You already have a strategy with this name."

# The bounds of Strategy's check constraints, for forms and serializers to check first.
MIN_CAPITAL = Decimal("0.01")
MIN_FEE_RATE = Decimal("0")
MAX_FEE_RATE = Decimal("0.999999")
MIN_SLIPPAGE_BPS = Decimal("0")

# What strategy_update may change; status moves to and from archived only through
# strategy_archive and strategy_restore, which remember the status to go back to.
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "kind",
        "parameters",
        "instrument",
        "timeframe",
        "status",
        "initial_capital",
        "fee_rate",
        "slippage_bps",
    }
)


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


def _name_taken(strategy: Strategy) -> bool:
    clashes = Strategy.objects.filter(owner_id=strategy.owner_id, name=strategy.name)
    if strategy.pk is not None:
        clashes = clashes.exclude(pk=strategy.pk)
    return clashes.exists()


def _validate_and_save(strategy: Strategy) -> Strategy:
    """full_clean, then save; a name another request took in between is the same 400."""
    if _name_taken(strategy):
        raise ValidationError({"name": [NAME_TAKEN]})
    strategy.full_clean()
    try:
        with transaction.atomic():  # a savepoint, so the outer transaction survives a clash
            strategy.save()
    except IntegrityError:
        if _name_taken(strategy):
            raise ValidationError({"name": [NAME_TAKEN]}) from None
        raise
    return strategy


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
    return _validate_and_save(strategy)


@transaction.atomic
def strategy_update(*, strategy: Strategy, **changes: Any) -> Strategy:
    """Apply `changes` (fields of UPDATABLE_FIELDS) to `strategy`, revalidating parameters
    whenever kind or parameters move."""
    unknown = changes.keys() - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"strategy_update cannot change {', '.join(sorted(unknown))}")
    for field, value in changes.items():
        setattr(strategy, field, value)
    if {"kind", "parameters"} & changes.keys() or strategy.pk is None:
        strategy.parameters = strategy_clean_parameters(
            kind=strategy.kind, parameters=strategy.parameters or {}
        )
    return _validate_and_save(strategy)


@transaction.atomic
def strategy_archive(*, strategy: Strategy) -> Strategy:
    """Archive `strategy`, remembering its status for strategy_restore. Archiving an archived
    strategy changes nothing."""
    if strategy.status == Strategy.Status.ARCHIVED:
        return strategy
    strategy.status_before_archive = strategy.status
    strategy.status = Strategy.Status.ARCHIVED
    strategy.full_clean()
    strategy.save(update_fields=["status", "status_before_archive", "updated_at"])
    return strategy


@transaction.atomic
def strategy_restore(*, strategy: Strategy) -> Strategy:
    """Bring an archived strategy back to the status it had before, or to draft when that is
    unknown. Restoring a strategy that is not archived changes nothing."""
    if strategy.status != Strategy.Status.ARCHIVED:
        return strategy
    previous = strategy.status_before_archive
    live = {Strategy.Status.DRAFT, Strategy.Status.ACTIVE, Strategy.Status.PAUSED}
    strategy.status = previous if previous in live else Strategy.Status.DRAFT
    strategy.status_before_archive = ""
    strategy.full_clean()
    strategy.save(update_fields=["status", "status_before_archive", "updated_at"])
    return strategy


@transaction.atomic
def strategy_clone(*, strategy: Strategy, name: str, owner: User | None = None) -> Strategy:
    """ "Save as": a new draft strategy named `name` with `strategy`'s kind, parameters and
    settings, owned by `owner` (the original's owner when not given)."""
    return strategy_create(
        owner=owner or strategy.owner,
        name=name,
        kind=strategy.kind,
        parameters=dict(strategy.parameters or {}),
        instrument=strategy.instrument,
        timeframe=strategy.timeframe,
        description=strategy.description,
        initial_capital=strategy.initial_capital,
        fee_rate=strategy.fee_rate,
        slippage_bps=strategy.slippage_bps,
    )


def strategy_references(*, strategy: Strategy) -> list[str]:
    """What refers to `strategy` (`["backtest runs", "orders"]`), from the model's reverse
    relations, so this app needs no import of the apps above it; hidden relations (a
    `related_name="+"`) count too."""
    found = []
    for relation in Strategy._meta.get_fields(include_hidden=True):
        if not (relation.auto_created and not relation.concrete):
            continue
        if not (relation.one_to_many or relation.one_to_one):
            continue
        related = relation.related_model
        if related._meta.abstract:  # type: ignore[union-attr]
            continue
        rows = related._base_manager.filter(**{relation.field.name: strategy})  # type: ignore[union-attr]
        if rows.exists():
            found.append(str(related._meta.verbose_name_plural))  # type: ignore[union-attr]
    return found


@transaction.atomic
def strategy_delete(*, strategy: Strategy) -> None:
    """Delete a strategy nothing refers to; one with runs, sweeps or ledger rows is a
    StrategyConflict: its history must keep its strategy, so it is archived instead."""
    Strategy.objects.select_for_update().filter(pk=strategy.pk).first()
    references = strategy_references(strategy=strategy)
    if references:
        raise StrategyConflict(
            f"Strategy {strategy.pk} has {', '.join(references)}; archive it instead."
        )
    try:
        with transaction.atomic():
            strategy.delete()
    except ProtectedError as exc:  # an order booked under it in the meantime
        raise StrategyConflict(f"Strategy {strategy.pk} is in use; archive it instead.") from exc
