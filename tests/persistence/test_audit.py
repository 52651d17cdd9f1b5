"""persistence.audit: an update audited against the row the caller holds."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from auditlog.models import LogEntry

from persistence.audit import audited_update
from tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db


def _entries(obj):  # type: ignore[no-untyped-def]
    return LogEntry.objects.get_for_object(obj).filter(action=LogEntry.Action.UPDATE)


def test_an_update_is_saved_and_audited_against_the_given_old_row():
    row = InstrumentFactory(symbol="ETHUSDT", price_tick=Decimal("0.01"))
    old = copy.copy(row)
    row.price_tick = Decimal("0.05")
    audited_update(row, old=old, fields=["price_tick"])
    row.refresh_from_db()
    assert row.price_tick == Decimal("0.05")
    [entry] = _entries(row)
    was, now = entry.changes_dict["price_tick"]
    assert (Decimal(was), Decimal(now)) == (Decimal("0.01"), Decimal("0.05"))
    assert set(entry.changes_dict) == {"price_tick"}


def test_a_value_equal_as_stored_is_no_change_and_writes_no_entry():
    row = InstrumentFactory(symbol="ETHUSDT", price_tick=Decimal("0.01"))
    row.refresh_from_db()  # as read back: the column's scale
    old = copy.copy(row)
    row.price_tick = Decimal("0.010")  # the same number, written differently
    audited_update(row, old=old, fields=["price_tick"])
    assert not _entries(row).exists()


def test_the_widest_values_of_a_column_are_compared_without_error():
    # 38 digits at 18 places: beyond the default decimal context's 28 digits.
    row = InstrumentFactory(symbol="ETHUSDT")
    old = copy.copy(row)
    row.price_tick = Decimal("12345678901234567890.123456789012345678")
    audited_update(row, old=old, fields=["price_tick"])
    [entry] = _entries(row)
    assert entry.changes_dict["price_tick"][1] == "12345678901234567890.123456789012345678"
