"""The ledger's REST API over real HTTP: isolation, idempotency, strict filters, summaries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from persistence.models import Event
from tests.factories import CandleFactory, InstrumentFactory, StrategyFactory
from tests.trading.conftest import fill, submit, trade
from trading import selectors
from trading.models import Fill, Order, Position, Trade

pytestmark = pytest.mark.django_db
D = Decimal


def order_payload(**extra):  # type: ignore[no-untyped-def]
    return {"client_order_id": "bot-1", "symbol": "BTCUSDT", "side": "buy", "quantity": "1.5"} | (
        extra
    )


# --- Orders -------------------------------------------------------------------------------


def test_post_order_creates_then_replays_with_200(api_client, instrument):
    created = api_client.post("/api/v1/orders/", order_payload(), format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["status"] == "accepted"
    assert body["quantity"] == "1.500000000000000000"  # Decimals are strings
    replay = api_client.post("/api/v1/orders/", order_payload(), format="json")
    assert replay.status_code == 200
    assert replay.json()["id"] == body["id"]
    assert Order.objects.count() == 1


def test_an_order_books_only_under_its_owners_own_strategy(
    api_client, staff_client, user, other_user, instrument
):
    theirs = StrategyFactory(owner=other_user, instrument=instrument)
    hidden = api_client.post("/api/v1/orders/", order_payload(strategy=theirs.pk), format="json")
    assert hidden.status_code == 400 and "strategy" in hidden.json()
    # Staff may see every strategy, but an order still books under its owner's own only.
    staff = staff_client.post("/api/v1/orders/", order_payload(strategy=theirs.pk), format="json")
    assert staff.status_code == 400
    assert staff.json() == {"strategy": ["not one of the owner's strategies"]}
    mine = StrategyFactory(owner=user, instrument=instrument)
    own = api_client.post("/api/v1/orders/", order_payload(strategy=mine.pk), format="json")
    assert own.status_code == 201 and own.json()["strategy"] == mine.pk
    assert Order.objects.count() == 1


def test_replay_with_another_payload_is_409(api_client, instrument):
    api_client.post("/api/v1/orders/", order_payload(), format="json")
    response = api_client.post("/api/v1/orders/", order_payload(side="sell"), format="json")
    assert response.status_code == 409
    assert response.json()["fields"] == ["side"]


def test_read_only_fields_in_the_body_are_not_applied(api_client, user, other_user, instrument):
    response = api_client.post(
        "/api/v1/orders/",
        order_payload(
            owner=other_user.pk, status="filled", filled_quantity="1.5", realized_pnl="1000"
        ),
        format="json",
    )
    assert response.status_code == 201
    order = Order.objects.get()
    assert (order.owner_id, order.status, order.filled_quantity) == (user.pk, "accepted", 0)


def test_off_grid_quantity_is_400_naming_the_field(api_client, instrument):
    response = api_client.post("/api/v1/orders/", order_payload(quantity="0.0001"), format="json")
    assert response.status_code == 400
    assert "quantity" in response.json()


def test_limit_order_without_price_is_400(api_client, instrument):
    response = api_client.post("/api/v1/orders/", order_payload(order_type="limit"), format="json")
    assert response.status_code == 400
    assert "limit_price" in response.json()


def test_cancelling_a_filled_order_is_409_with_its_status(api_client, user, instrument):
    order = trade(user, instrument, "buy", "1", "100")
    response = api_client.post(f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 409
    assert response.json()["status"] == "filled"


def test_cancel_an_open_order(api_client, user, instrument):
    order = submit(user, instrument, "buy", "1")
    response = api_client.post(f"/api/v1/orders/{order.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_users_cannot_see_or_cancel_each_others_orders(api_client, other_user, instrument):
    theirs = submit(other_user, instrument, "buy", "1")
    assert api_client.get(f"/api/v1/orders/{theirs.pk}/").status_code == 404
    assert api_client.post(f"/api/v1/orders/{theirs.pk}/cancel/").status_code == 404
    assert api_client.get("/api/v1/orders/").json()["results"] == []
    theirs.refresh_from_db()
    assert theirs.status == "accepted"


def test_staff_see_every_users_orders(staff_client, user, other_user, instrument):
    submit(user, instrument, "buy", "1")
    submit(other_user, instrument, "buy", "1")
    assert len(staff_client.get("/api/v1/orders/").json()["results"]) == 2


# --- Fills --------------------------------------------------------------------------------


def fill_payload(order, **extra):  # type: ignore[no-untyped-def]
    return {
        "order": order.pk,
        "venue_trade_id": "T-1",
        "quantity": "1",
        "price": "100.25",
        "fee": "0.05",
        "ts": "2024-01-02T10:00:00Z",
    } | extra


def test_post_fill_then_replay_it(api_client, user, instrument):
    order = submit(user, instrument, "buy", "2")
    first = api_client.post("/api/v1/fills/", fill_payload(order), format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["duplicate"] is False
    again = api_client.post("/api/v1/fills/", fill_payload(order), format="json")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert Position.objects.get(owner=user).quantity == D("1")


def test_a_venue_id_replayed_on_another_order_answers_with_the_recorded_fill(
    api_client, user, instrument
):
    eth = InstrumentFactory(symbol="ETHUSDT", price_tick=D("0.01"), quantity_step=D("0.001"))
    btc_order = submit(user, instrument, "buy", "2")
    eth_order = submit(user, eth, "sell", "2")
    first = api_client.post("/api/v1/fills/", fill_payload(btc_order), format="json")
    again = api_client.post("/api/v1/fills/", fill_payload(eth_order), format="json")
    assert again.status_code == 200
    body = again.json()
    assert body["duplicate"] is True
    assert (body["id"], body["order"], body["symbol"], body["side"]) == (
        first.json()["id"],
        btc_order.pk,
        "BTCUSDT",
        "buy",
    )


def test_overfill_is_409(api_client, user, instrument):
    order = submit(user, instrument, "buy", "1")
    response = api_client.post("/api/v1/fills/", fill_payload(order, quantity="2"), format="json")
    assert response.status_code == 409
    assert "exceeds" in response.json()["detail"]


def test_fill_on_another_users_order_is_refused(api_client, other_user, instrument):
    order = submit(other_user, instrument, "buy", "1")
    response = api_client.post("/api/v1/fills/", fill_payload(order), format="json")
    assert response.status_code == 400
    assert "order" in response.json()


def test_bulk_fills(api_client, user, instrument):
    order = submit(user, instrument, "buy", "10")
    fills = [fill_payload(order, venue_trade_id=f"B-{i}") for i in range(5)]
    fills.append(fill_payload(order, venue_trade_id="B-0"))
    response = api_client.post("/api/v1/fills/bulk/", {"fills": fills}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["recorded"] == 5
    assert response.json()["duplicates"] == ["B-0"]
    order.refresh_from_db()
    assert order.filled_quantity == D("5")


def test_bulk_fills_with_malformed_rows_return_400_naming_each_fill(api_client, user, instrument):
    order = submit(user, instrument, "buy", "10")
    fills = [fill_payload(order, venue_trade_id=f"B-{i}") for i in range(3)]
    fills[2]["price"] = "100.001"
    response = api_client.post("/api/v1/fills/bulk/", {"fills": fills}, format="json")
    assert response.status_code == 400, response.content
    [problem] = response.json()["fills"]
    assert problem.startswith("fill 2: price must be a multiple of the price tick")
    assert not Fill.objects.exists()


# --- Strict lists -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("start=yesterday", "start"),
        ("end=2024-13-01", "end"),
        ("status=sideways", "status"),
        ("symbol=NOPE", "symbol"),
        ("strategy=abc", "strategy"),
        ("ordering=password", "ordering"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("symbl=BTCUSDT", "symbl"),
    ],
)
def test_malformed_filters_are_400_naming_the_parameter(api_client, instrument, query, parameter):
    response = api_client.get(f"/api/v1/trades/?{query}")
    assert response.status_code == 400
    assert parameter in response.json()


def test_trade_filters_and_cursor_pages(api_client, user, instrument):
    eth = InstrumentFactory(symbol="ETHUSDT", price_tick=D("0.01"), quantity_step=D("0.001"))
    for _ in range(3):
        trade(user, instrument, "buy", "1", "100")
        trade(user, instrument, "sell", "1", "101")
    trade(user, eth, "sell", "1", "50")
    both = api_client.get("/api/v1/trades/?symbol=BTCUSDT&symbol=ETHUSDT").json()["results"]
    assert len(both) == 4
    shorts = api_client.get("/api/v1/trades/?side=short").json()["results"]
    assert [t["symbol"] for t in shorts] == ["ETHUSDT"]
    assert api_client.get("/api/v1/trades/?start=2024-01-01&end=2024-01-01").json()["results"]
    assert not api_client.get("/api/v1/trades/?start=2024-01-02").json()["results"]
    page = api_client.get("/api/v1/trades/?limit=2&ordering=entry_time").json()
    assert len(page["results"]) == 2
    rest = api_client.get(page["next"]).json()
    ids = [t["id"] for t in page["results"] + rest["results"]]
    assert len(set(ids)) == 4


def test_symbol_and_strategy_filters_name_each_unknown_value(api_client, user, instrument):
    strategy = StrategyFactory(owner=user, instrument=instrument)
    trade(user, instrument, "buy", "1", "100", strategy=strategy)
    trade(user, instrument, "buy", "1", "100")
    mixed = api_client.get("/api/v1/trades/?symbol=BTCUSDT&symbol=NOPE")
    assert mixed.status_code == 400
    [message] = mixed.json()["symbol"]
    assert "NOPE" in message and "BTCUSDT" not in message
    unknown = api_client.get(f"/api/v1/trades/?strategy={strategy.pk + 1000}")
    assert unknown.status_code == 400
    assert str(strategy.pk + 1000) in unknown.json()["strategy"][0]
    both = api_client.get(f"/api/v1/trades/?symbol=BTCUSDT&strategy={strategy.pk}").json()
    assert [t["strategy"] for t in both["results"]] == [strategy.pk]


LEDGER_LISTS = ["orders", "fills", "positions", "trades", "events"]


@pytest.mark.parametrize("name", LEDGER_LISTS)
def test_an_end_date_at_the_calendars_end_means_no_upper_bound(api_client, user, instrument, name):
    trade(user, instrument, "buy", "1", "100")
    everything = api_client.get(f"/api/v1/{name}/").json()["results"]
    assert everything
    for query in (
        "end=9999-12-31",
        "end=9999-12-31T23:59:59-05:00",  # past the last datetime once in UTC
        "start=0001-01-01T00:00:00%2B01:00&end=9999-12-31",  # before the first one
        "start=0001-01-01&end=9999-12-31T23:59:59.999999",
    ):
        response = api_client.get(f"/api/v1/{name}/?{query}")
        assert response.status_code == 200, (query, response.content)
        assert response.json()["results"] == everything, query


def test_a_trade_summary_over_the_whole_calendar_is_every_trade(api_client, user, instrument):
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "sell", "1", "110")
    whole = api_client.get("/api/v1/trades/summary/?start=0001-01-01&end=9999-12-31")
    assert whole.status_code == 200, whole.content
    assert whole.json() == api_client.get("/api/v1/trades/summary/").json()
    assert whole.json()["trades"] == 1


@pytest.mark.parametrize("name", ["orders", "fills", "positions", "trades"])
@pytest.mark.parametrize("value", ["%25", "%25s", "%25(value)s", "50%25%25"])
def test_a_percent_sign_in_a_strategy_filter_is_a_400_naming_it(api_client, name, value):
    response = api_client.get(f"/api/v1/{name}/?strategy={value}")
    assert response.status_code == 400, response.content
    [message] = response.json()["strategy"]
    assert message.startswith(repr(value.replace("%25", "%")))


@pytest.mark.parametrize("name", ["orders", "fills", "positions", "trades"])
def test_another_users_strategy_id_is_refused_like_an_unknown_one(
    api_client, user, other_user, instrument, name
):
    theirs = StrategyFactory(owner=other_user, instrument=instrument)
    trade(other_user, instrument, "buy", "1", "100", strategy=theirs)
    unknown_id = theirs.pk + 1000
    other = api_client.get(f"/api/v1/{name}/?strategy={theirs.pk}")
    unknown = api_client.get(f"/api/v1/{name}/?strategy={unknown_id}")
    assert other.status_code == unknown.status_code == 400
    assert other.json() == {
        "strategy": [unknown.json()["strategy"][0].replace(str(unknown_id), str(theirs.pk))]
    }


def test_staff_filter_by_any_users_strategy(staff_client, other_user, instrument):
    theirs = StrategyFactory(owner=other_user, instrument=instrument)
    trade(other_user, instrument, "buy", "1", "100", strategy=theirs)
    response = staff_client.get(f"/api/v1/trades/?strategy={theirs.pk}")
    assert response.status_code == 200
    assert [t["strategy"] for t in response.json()["results"]] == [theirs.pk]


def test_a_filtered_trade_page_is_two_queries(
    api_client, user, instrument, django_assert_num_queries
):
    """The symbols' ids in one query, then the page."""
    trade(user, instrument, "buy", "1", "100")
    with django_assert_num_queries(2):
        response = api_client.get("/api/v1/trades/?symbol=BTCUSDT&status=open&limit=10")
    assert [t["symbol"] for t in response.json()["results"]] == ["BTCUSDT"]


def test_filtersets_share_a_form_class_not_its_fields():
    from django.http import QueryDict

    from trading.filters import TradeFilter

    one = TradeFilter(QueryDict("symbol=A"), queryset=Trade.objects.none()).form
    two = TradeFilter(QueryDict("symbol=B"), queryset=Trade.objects.none()).form
    assert type(one) is type(two)
    assert one.fields["symbol"] is not two.fields["symbol"]
    assert (one.data["symbol"], two.data["symbol"]) == ("A", "B")
    unfiltered = TradeFilter(QueryDict(""), queryset=Trade.objects.none())
    assert unfiltered.is_valid()
    assert (unfiltered.form.cleaned_data["symbol"], unfiltered.form.cleaned_data["strategy"]) == (
        [],
        [],
    )


def test_positions_filter_by_status(api_client, user, instrument):
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "sell", "3", "110")
    open_ = api_client.get("/api/v1/positions/?status=open").json()["results"]
    closed = api_client.get("/api/v1/positions/?status=closed").json()["results"]
    assert [(p["side"], p["quantity"]) for p in open_] == [("short", "-2.000000000000000000")]
    assert [p["realized_pnl"] for p in closed] == ["10.000000000000000000"]


# --- Summary, portfolio, events, audit ----------------------------------------------------


def test_trade_summary_is_computed_over_closed_trades(api_client, user, instrument):
    strategy = StrategyFactory(owner=user, instrument=instrument)
    # Net results: +10, +5, -4, -1, +2 (fees 0 except where given).
    for entry, exit_, fee in [("100", "110", "0"), ("100", "105", "0"), ("100", "96", "0")]:
        trade(user, instrument, "buy", "1", entry, fee=fee)
        trade(user, instrument, "sell", "1", exit_)
    trade(user, instrument, "buy", "1", "100", strategy=strategy)
    trade(user, instrument, "sell", "1", "100", fee="1", strategy=strategy)
    trade(user, instrument, "buy", "1", "100")
    trade(user, instrument, "sell", "1", "102")
    trade(user, instrument, "buy", "1", "100")  # still open: not in the summary
    summary = api_client.get("/api/v1/trades/summary/").json()
    assert summary["trades"] == 5
    assert (summary["wins"], summary["losses"]) == (3, 2)
    assert D(summary["win_rate"]) == D("0.6")
    assert D(summary["gross_pnl"]) == D("13")
    assert D(summary["fees"]) == D("1")
    assert D(summary["net_pnl"]) == D("12")
    assert D(summary["profit_factor"]) == D("3.4")  # 17 / 5
    assert D(summary["expectancy"]) == D("2.4")
    assert D(summary["average_win"]) == D("5.66666667")
    assert D(summary["average_loss"]) == D("-2.5")
    assert (D(summary["best_trade"]), D(summary["worst_trade"])) == (D("10"), D("-4"))
    assert (summary["max_consecutive_wins"], summary["max_consecutive_losses"]) == (2, 2)
    assert [(s["symbol"], D(s["net_pnl"])) for s in summary["by_symbol"]] == [("BTCUSDT", 12)]
    by_strategy = {s["strategy_id"]: D(s["net_pnl"]) for s in summary["by_strategy"]}
    assert by_strategy == {None: D("13"), strategy.pk: D("-1")}
    assert [(d["day"], D(d["cumulative_pnl"])) for d in summary["daily"]] == [("2024-01-01", 12)]
    only_strategy = api_client.get(f"/api/v1/trades/summary/?strategy={strategy.pk}").json()
    assert only_strategy["trades"] == 1


def test_portfolio_marks_positions_at_the_latest_close(api_client, user, instrument, settings):
    settings.LEDGER_STARTING_CASH = "1000"
    CandleFactory(instrument=instrument, ts=datetime(2024, 1, 1, 1, tzinfo=UTC), close=90.0)
    CandleFactory(instrument=instrument, ts=datetime(2024, 1, 1, 2, tzinfo=UTC), close=110.0)
    trade(user, instrument, "buy", "2", "100", fee="1")
    body = api_client.get("/api/v1/portfolio/").json()
    assert D(body["cash"]) == D("799")
    assert D(body["market_value"]) == D("220")
    assert D(body["unrealized_pnl"]) == D("20")
    assert D(body["equity"]) == D("1019")
    assert D(body["gross_exposure"]) == D("220")
    assert body["positions"][0]["mark_price"] == "110.000000000000000000"
    history = api_client.get("/api/v1/portfolio/history/").json()
    assert history == []


def test_events_are_scoped_and_readable_after_a_sequence(api_client, user, other_user, instrument):
    order = submit(user, instrument, "buy", "1")
    fill(order, "1", "100")
    submit(other_user, instrument, "buy", "1")
    mine = api_client.get("/api/v1/events/").json()["results"]
    assert {e["stream"] for e in mine} == {
        f"order-{order.pk}",
        f"position-{user.pk}-manual-BTCUSDT",
    }
    first = mine[0]["seq"]
    after = api_client.get(f"/api/v1/events/?after={first}").json()
    assert [(e["stream"], e["type"]) for e in after["results"]] == [
        (f"order-{order.pk}", "OrderAccepted"),
        (f"position-{user.pk}-manual-BTCUSDT", "FillRecorded"),
    ]
    order_stream = api_client.get(f"/api/v1/events/?stream=order-{order.pk}").json()
    assert [e["type"] for e in order_stream["results"]] == ["OrderSubmitted", "OrderAccepted"]
    # Two events per order, one per fill; the other user's two are not listed.
    assert Event.objects.count() == 5


def test_audit_is_staff_only_and_filterable(api_client, staff_client, user, instrument):
    order = submit(user, instrument, "buy", "1")
    assert api_client.get("/api/v1/audit/").status_code == 403
    response = staff_client.get(f"/api/v1/audit/?model=trading.order&object={order.pk}")
    assert response.status_code == 200
    [entry] = response.json()["results"]
    assert (entry["model"], entry["action"]) == ("trading.order", "create")
    assert staff_client.get("/api/v1/audit/?model=order").status_code == 400


# --- Authentication -----------------------------------------------------------------------


def test_schema_is_published(api_client):
    assert api_client.get("/api/schema/").status_code == 200


def test_trade_rows_match_drf_field_rendering(api_client, user, instrument):
    from rest_framework import serializers as drf

    from trading.api import TradeSerializer

    class FieldByField(drf.ModelSerializer):  # what TradeSerializer renders by hand
        symbol = drf.CharField(source="instrument.symbol")
        net_pnl = drf.SerializerMethodField()

        class Meta:
            model = Trade
            fields = TradeSerializer.Meta.fields

        def get_net_pnl(self, obj):  # type: ignore[no-untyped-def]
            return drf.DecimalField(max_digits=38, decimal_places=18).to_representation(
                obj.pnl - obj.fees
            )

    trade(user, instrument, "buy", "1.5", "100.01", fee="0.013")
    trade(user, instrument, "sell", "1.5", "99.37", fee="0.2")
    trade(user, instrument, "sell", "2", "101")  # still open: no exit
    full_rows = list(Trade.objects.select_related("instrument", "strategy"))
    assert {r.status for r in full_rows} == {"open", "closed"}
    expected = FieldByField(full_rows, many=True).data
    assert TradeSerializer(full_rows, many=True).data == expected
    # What the list renders: the selector's rows, with only the shown columns loaded.
    listed = list(selectors.trade_list(user=user).order_by("-entry_time", "-id"))
    assert TradeSerializer(listed, many=True).data == expected
    # What the list endpoint renders: the same rows as dicts of the shown columns.
    response = api_client.get("/api/v1/trades/")
    assert response.status_code == 200
    assert response.json()["results"] == [dict(row) for row in expected]
    # In another current time zone both show the times in it, the same way.
    with timezone.override(ZoneInfo("Asia/Kolkata")):
        shifted = FieldByField(full_rows, many=True).data
        assert shifted[0]["entry_time"].endswith("+05:30")
        assert TradeSerializer(listed, many=True).data == shifted


def test_a_fill_whose_notional_would_overflow_the_ledger_columns_is_a_400(
    api_client, user, instrument
):
    order = submit(user, instrument, "buy", "100000000000")  # 1e11
    response = api_client.post(
        "/api/v1/fills/", fill_payload(order, quantity="1", price="1000000000"), format="json"
    )  # 1e9 x the order's 1e11 = 1e20: past the 20 digits NUMERIC(38, 18) keeps
    assert response.status_code == 400, response.content
    assert "must stay below" in str(response.json())
    assert not Fill.objects.exists()
    assert api_client.get("/api/v1/fills/").status_code == 200
    accepted = api_client.post(
        "/api/v1/fills/", fill_payload(order, quantity="1", price="999999999"), format="json"
    )
    assert accepted.status_code == 201, accepted.content
