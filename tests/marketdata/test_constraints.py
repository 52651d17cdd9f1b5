"""Candle constraints hold in the database even when Python-side validation is bypassed."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from tests.factories import CandleFactory, InstrumentFactory

pytestmark = pytest.mark.django_db


def test_candle_with_high_below_low_is_rejected():
    with pytest.raises(IntegrityError), transaction.atomic():
        CandleFactory(high=90.0, low=95.0)


def test_candle_bar_is_unique_per_instrument_and_timeframe():
    instrument = InstrumentFactory()
    candle = CandleFactory(instrument=instrument)
    with pytest.raises(IntegrityError), transaction.atomic():
        CandleFactory(instrument=instrument, ts=candle.ts)
