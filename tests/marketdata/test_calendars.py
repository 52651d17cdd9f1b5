"""An instrument's asset class decides its calendar: crypto trades 24/7, the rest in
exchange sessions. The class shows in the API and the admin list, and its rules hold in the
database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from marketdata.models import AssetClass, Instrument
from marketdata.timeframes import CALENDARS
from tests.factories import InstrumentFactory

pytestmark = pytest.mark.django_db


def test_instruments_are_crypto_on_a_24_7_calendar_unless_told_otherwise():
    # Rows from before the field get the default, so their results keep a 365-day year.
    assert InstrumentFactory().calendar == "24/7"
    assert Instrument._meta.get_field("asset_class").default == AssetClass.CRYPTO


@pytest.mark.parametrize("asset_class", [AssetClass.EQUITY, AssetClass.FX, AssetClass.FUTURES])
def test_equities_fx_and_futures_trade_on_an_exchange_calendar(asset_class):
    assert InstrumentFactory(asset_class=asset_class).calendar == "exchange"


def test_every_asset_class_maps_to_a_calendar_the_engine_knows():
    assert {InstrumentFactory(asset_class=c).calendar for c in AssetClass.values} <= set(CALENDARS)


def test_the_instruments_api_shows_asset_class_calendar_and_minimum_notional(api_client):
    InstrumentFactory(symbol="AAPL", asset_class=AssetClass.EQUITY, min_notional=Decimal("1"))
    body = api_client.get("/api/v1/instruments/AAPL/").json()
    assert body["asset_class"] == "equity" and body["calendar"] == "exchange"
    assert Decimal(body["min_notional"]) == 1
    listed = api_client.get("/api/v1/instruments/").json()["results"]
    assert [i["calendar"] for i in listed] == ["exchange"]


def test_the_admin_list_shows_the_asset_class(admin_client):
    InstrumentFactory(symbol="EURUSD", asset_class=AssetClass.FX)
    page = admin_client.get("/admin/marketdata/instrument/")
    assert page.status_code == 200
    assert b"Asset class" in page.content and b"FX" in page.content


def test_a_negative_minimum_notional_is_refused_in_plain_words():
    instrument = InstrumentFactory.build(min_notional=Decimal("-1"))
    with pytest.raises(ValidationError, match="Minimum notional must be zero or more"):
        instrument.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        InstrumentFactory(min_notional=Decimal("-1"))


def test_an_unknown_asset_class_is_refused_by_the_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        InstrumentFactory(asset_class="bonds")
