"""Position accounting as pure functions over Decimal: the one place the ledger's arithmetic lives.

The live services and every replay (full, from a snapshot, as of a time) call `apply_fill`,
so they cannot disagree. Rules:

- Average-cost method. A position carries its exact `cost_basis` (the absolute cost of the
  open quantity). Adding to it adds `quantity * price`, exactly. Reducing it removes the
  reduced share of the cost, rounded half-even to the instrument's *notional scale*
  (price tick x quantity step); flattening removes all that is left, so a round trip's
  realized PnL is exactly proceeds minus cost, with no rounding at all.
- `avg_entry_price` is `cost_basis / |quantity|` rounded half-even to the *average scale*
  (price tick / 10^6). It is recomputed only when the position grows; a reduction leaves it
  as it was, as the average-cost method says.
- A fill crossing through zero closes the old life and opens the opposite one. Its fee is
  split pro rata to the two parts, rounded to the notional scale, the rest going to the new
  part, so the two parts add up to the fee exactly.
- Each life is one round-trip trade: entry VWAP over the fills that grew it, exit VWAP over
  the fills that reduced it.

Every value is kept at a scale the 18-decimal columns hold exactly (and that SQLite's
15-significant-digit storage holds for ordinary prices). States serialise to JSON with
Decimals as strings so that events carry them without loss.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, getcontext, localcontext
from typing import Any, NamedTuple, Protocol

import orjson
from django.utils.dateparse import parse_datetime

MAX_PLACES = 18
# Average prices carry six digits beyond the tick: fine enough to hide rounding in reports,
# coarse enough to stay exact in every column and backend.
AVG_EXTRA_PLACES = 6
# 38 digits fit the columns; twice that leaves headroom for products before rounding.
PRECISION = 80

ZERO = Decimal(0)


class AccountingError(ValueError):
    pass


@dataclass(frozen=True)
class Scales:
    """The rounding grid of one instrument, from its tick and step."""

    notional: Decimal
    average: Decimal

    @classmethod
    def for_instrument(cls, *, price_tick: Decimal, quantity_step: Decimal) -> Scales:
        tick_places = _places(price_tick)
        step_places = _places(quantity_step)
        notional = min(tick_places + step_places, MAX_PLACES)
        average = min(tick_places + AVG_EXTRA_PLACES, MAX_PLACES)
        return cls(notional=Decimal(1).scaleb(-notional), average=Decimal(1).scaleb(-average))


class Gridded(Protocol):
    """What the rounding grid is read from: an instrument, or anything with its tick and step."""

    @property
    def price_tick(self) -> Decimal: ...

    @property
    def quantity_step(self) -> Decimal: ...


def instrument_scales(instrument: Gridded) -> Scales:
    return Scales.for_instrument(
        price_tick=instrument.price_tick, quantity_step=instrument.quantity_step
    )


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


_EXACT = Context(prec=PRECISION, rounding=ROUND_HALF_EVEN)


def exact_context() -> AbstractContextManager[Any]:
    """The ledger's decimal context (PRECISION digits) for a block of arithmetic.

    Nothing to enter when the caller is in it already: bulk paths set it once per batch,
    and entering another for every fill costs about a microsecond.
    """
    return nullcontext() if getcontext().prec == PRECISION else localcontext(prec=PRECISION)


def _round(value: Decimal, scale: Decimal) -> Decimal:
    return value.quantize(scale, context=_EXACT)


def utc_isoformat(ts: datetime) -> str:
    """An aware datetime as UTC ISO-8601, as events and states write it: once per fill.

    The text of `datetime.isoformat()`, made by orjson in a third of the time (a test holds
    the two together).
    """
    utc = ts if ts.tzinfo is UTC else ts.astimezone(UTC)
    return orjson.dumps(utc)[1:-1].decode()


@dataclass
class PositionState:
    """One life of a position: from the fill that opens it to the fill that flattens it."""

    life: int = 0
    quantity: Decimal = ZERO  # signed: negative is short
    cost_basis: Decimal = ZERO  # absolute cost of the open quantity
    avg_entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    entry_quantity: Decimal = ZERO
    entry_notional: Decimal = ZERO
    exit_quantity: Decimal = ZERO
    exit_notional: Decimal = ZERO
    exit_reason: str = ""
    fills: int = field(default=0)

    @property
    def is_open(self) -> bool:
        return self.life > 0 and self.closed_at is None

    @property
    def status(self) -> str:
        return "open" if self.is_open else "closed"

    @property
    def direction(self) -> str:
        return "long" if self.entry_direction > 0 else "short"

    @property
    def entry_direction(self) -> int:
        # `entry_quantity` is signed, so a flat, closed life still knows which side it was.
        return -1 if self.entry_quantity < 0 else 1

    def entry_price(self, scales: Scales) -> Decimal:
        return _round(self.entry_notional / abs(self.entry_quantity), scales.average)

    def exit_price(self, scales: Scales) -> Decimal | None:
        if not self.exit_quantity:
            return None
        return _round(self.exit_notional / self.exit_quantity, scales.average)

    def pnl_pct(self) -> Decimal:
        if not self.entry_notional:
            return ZERO
        with localcontext(prec=PRECISION):
            return (self.realized_pnl * 100 / self.entry_notional).quantize(
                Decimal("0.00000001"), rounding=ROUND_HALF_EVEN
            )

    def copy(self) -> PositionState:
        # Once per fill in a bulk ingest: faster than copy.copy, and as shallow.
        clone = object.__new__(PositionState)
        clone.__dict__.update(self.__dict__)
        return clone

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: Decimals and datetimes as strings. Runs once per fill in a bulk ingest."""
        opened, closed = self.opened_at, self.closed_at
        return {  # every field, as from_json reads them (a test holds the two together)
            "life": self.life,
            "quantity": str(self.quantity),
            "cost_basis": str(self.cost_basis),
            "avg_entry_price": str(self.avg_entry_price),
            "realized_pnl": str(self.realized_pnl),
            "fees_paid": str(self.fees_paid),
            "opened_at": utc_isoformat(opened) if opened is not None else None,
            "closed_at": utc_isoformat(closed) if closed is not None else None,
            "entry_quantity": str(self.entry_quantity),
            "entry_notional": str(self.entry_notional),
            "exit_quantity": str(self.exit_quantity),
            "exit_notional": str(self.exit_notional),
            "exit_reason": self.exit_reason,
            "fills": self.fills,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PositionState:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = raw.get(f.name)
            if f.name in ("opened_at", "closed_at"):
                kwargs[f.name] = parse_datetime(value) if value else None
            elif f.name in ("life", "fills"):
                kwargs[f.name] = int(value or 0)
            elif f.name == "exit_reason":
                kwargs[f.name] = value or ""
            else:
                kwargs[f.name] = Decimal(value) if value is not None else ZERO
        return cls(**kwargs)


class FillApplied(NamedTuple):
    """What one fill did: the life it closed (if any) and the life that is current after it.

    A named tuple, not a frozen dataclass: a bulk ingest makes one per fill."""

    closed: PositionState | None
    current: PositionState
    realized_pnl: Decimal


def apply_fill(
    state: PositionState,
    *,
    side: str,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    ts: datetime,
    scales: Scales,
    exit_reason: str,
) -> FillApplied:
    """Apply one fill to the current life; return a new state, never mutate the old one."""
    if quantity <= 0 or price <= 0 or fee < 0:
        raise AccountingError("quantity and price must be positive, fee non-negative")
    with exact_context():
        signed = quantity if side == "buy" else -quantity
        current = state.copy()
        if not current.is_open:
            current = PositionState(life=state.life + 1, opened_at=ts)
        if current.quantity == 0 or (current.quantity > 0) == (signed > 0):
            _grow(current, signed=signed, price=price, fee=fee, scales=scales)
            return FillApplied(None, current, ZERO)

        held = abs(current.quantity)
        if quantity <= held:
            realized = _reduce(
                current, quantity=quantity, price=price, fee=fee, ts=ts, scales=scales
            )
            if current.quantity == 0:
                current.exit_reason = exit_reason
                return FillApplied(current, current, realized)
            return FillApplied(None, current, realized)

        # Through zero: close this life with part of the fill, open the next with the rest.
        closing_fee = _round(fee * held / quantity, scales.notional)
        realized = _reduce(
            current, quantity=held, price=price, fee=closing_fee, ts=ts, scales=scales
        )
        current.exit_reason = "reversal"
        opened = PositionState(life=current.life + 1, opened_at=ts)
        rest = quantity - held
        _grow(
            opened,
            signed=rest if signed > 0 else -rest,
            price=price,
            fee=fee - closing_fee,
            scales=scales,
        )
        return FillApplied(current, opened, realized)


def _grow(
    state: PositionState, *, signed: Decimal, price: Decimal, fee: Decimal, scales: Scales
) -> None:
    notional = abs(signed) * price
    state.quantity += signed
    state.cost_basis += notional
    state.avg_entry_price = _round(state.cost_basis / abs(state.quantity), scales.average)
    state.fees_paid += fee
    state.entry_quantity += signed
    state.entry_notional += notional
    state.fills += 1


def _reduce(
    state: PositionState,
    *,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    ts: datetime,
    scales: Scales,
) -> Decimal:
    held = abs(state.quantity)
    if quantity == held:
        removed_cost = state.cost_basis
    else:
        removed_cost = _round(state.cost_basis * quantity / held, scales.notional)
    proceeds = quantity * price
    direction = 1 if state.quantity > 0 else -1
    realized = (proceeds - removed_cost) * direction
    state.quantity -= quantity * direction
    state.cost_basis -= removed_cost
    state.realized_pnl += realized
    state.fees_paid += fee
    state.exit_quantity += quantity
    state.exit_notional += proceeds
    state.fills += 1
    if state.quantity == 0:
        state.closed_at = ts
    return realized


def average_price(*, notional: Decimal, quantity: Decimal, scales: Scales) -> Decimal:
    with localcontext(prec=PRECISION):
        return _round(notional / quantity, scales.average)
