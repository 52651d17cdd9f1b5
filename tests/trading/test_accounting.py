"""The pure accounting layer: its state survives JSON exactly, as events and snapshots need."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from trading.accounting import PositionState, Scales, apply_fill, utc_isoformat

SCALES = Scales.for_instrument(price_tick=Decimal("0.01"), quantity_step=Decimal("0.001"))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_state_with_every_field_set_round_trips_through_json():
    state = PositionState(
        life=3,
        quantity=Decimal("-1.250"),
        cost_basis=Decimal("125.31250"),
        avg_entry_price=Decimal("100.25000000"),
        realized_pnl=Decimal("-0.75"),
        fees_paid=Decimal("0.0125"),
        opened_at=T0,
        closed_at=T0 + timedelta(hours=1),
        entry_quantity=Decimal("-2.000"),
        entry_notional=Decimal("200.50000"),
        exit_quantity=Decimal("0.750"),
        exit_notional=Decimal("75.93750"),
        exit_reason="stop",
        fills=4,
    )
    raw = state.to_json()
    assert set(raw) == {f.name for f in dataclasses.fields(PositionState)}
    assert PositionState.from_json(raw) == state
    # Every default differs from the values above, so a field left out would show.
    assert all(getattr(state, f.name) != f.default for f in dataclasses.fields(PositionState))


@pytest.mark.parametrize(
    "ts",
    [
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 6, 1, 12, 30, 5, 10, tzinfo=UTC),
        datetime(999, 12, 31, 1, 2, 3, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2024, 1, 1, 9, 0, 0, 500, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    ],
)
def test_utc_isoformat_is_the_standard_librarys_isoformat_in_utc(ts):
    assert utc_isoformat(ts) == ts.astimezone(UTC).isoformat()


def test_timestamps_are_written_in_utc_whatever_zone_they_came_in():
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2024, 1, 1, 9, 0, tzinfo=tokyo)
    assert utc_isoformat(local) == "2024-01-01T00:00:00+00:00"
    assert utc_isoformat(T0) == utc_isoformat(local)
    # A UTC zone other than datetime.UTC itself (zoneinfo's) is written the same way.
    assert utc_isoformat(local.astimezone(ZoneInfo("UTC"))) == utc_isoformat(local)
    state = apply_fill(
        PositionState(),
        side="buy",
        quantity=Decimal("1"),
        price=Decimal("100"),
        fee=Decimal("0"),
        ts=local,
        scales=SCALES,
        exit_reason="signal",
    ).current
    assert state.to_json()["opened_at"] == "2024-01-01T00:00:00+00:00"
    assert PositionState.from_json(state.to_json()).opened_at == local
