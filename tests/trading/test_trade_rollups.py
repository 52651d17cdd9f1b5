"""The daily trade rollups give the trade summary the scan gives, streaks included."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import InstrumentFactory, StrategyFactory, UserFactory
from tests.trading.conftest import T0, submit
from trading import selectors
from trading.models import Trade, TradeRollup, TradeStreakRollup
from trading.rollups import Streaks, streaks_fold, trade_rollups_rebuild
from trading.services import FillInput, fill_record, fills_record

NO_FILTERS: dict[str, Any] = {
    "symbol": [],
    "strategy": [],
    "status": [],
    "side": [],
    "exit_reason": [],
    "start": None,
    "end": None,
}


def _runs(outcomes: list[int]) -> tuple[int, int]:
    best = {1: 0, -1: 0}
    run, previous = 0, None
    for result in outcomes:
        run = run + 1 if result == previous else 1
        previous = result
        if result in best:
            best[result] = max(best[result], run)
    return best[1], best[-1]


@given(
    outcomes=st.lists(st.sampled_from([1, -1, 0]), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
def test_streaks_merged_day_by_day_equal_the_streaks_of_the_whole_sequence(
    outcomes: list[int], cuts: list[int]
) -> None:
    bounds = sorted({0, len(outcomes), *(c for c in cuts if c <= len(outcomes))})
    days = []
    for start, end in itertools.pairwise(bounds):
        day = Streaks()
        for result in outcomes[start:end]:
            day.add(result)
        days.append(
            (
                day.trades,
                day.first_outcome,
                day.first_run,
                day.last_outcome,
                day.last_run,
                day.max_win_run,
                day.max_loss_run,
            )
        )
    merged = streaks_fold(days)
    assert merged.trades == len(outcomes)
    assert (merged.max_win_run, merged.max_loss_run) == _runs(outcomes)


def _random_ledger(seed: int) -> tuple[list[Any], list[Any], list[Any]]:
    """Two owners, two instruments, manual and strategy books; fills out of time order."""
    rng = random.Random(seed)
    users = [UserFactory(), UserFactory()]
    instruments = [
        InstrumentFactory(price_tick=Decimal("0.01"), quantity_step=Decimal("1")) for _ in range(2)
    ]
    strategies = [StrategyFactory(owner=u, instrument=instruments[0]) for u in users]
    for user, strategy in zip(users, strategies, strict=True):
        orders = [
            submit(user, instrument, side, "100000", strategy=book)
            for instrument in instruments
            for book in (None, strategy)
            for side in ("buy", "sell")
        ]
        fills = [
            FillInput(
                order_id=rng.choice(orders).pk,
                venue_trade_id=f"r{seed}-{user.pk}-{i}",
                quantity=Decimal(rng.randint(1, 2)),
                # Prices on both sides of 100 so round trips win, lose and break even.
                price=Decimal(rng.choice([99, 100, 100, 101, 102])),
                # Mostly forwards over three days, sometimes back: exits out of order.
                ts=T0 + timedelta(minutes=i * 37 - rng.choice([0, 0, 60, 300, 900, 1400])),
                fee=Decimal(rng.choice([0, 0, 1])) / 4,
            )
            for i in range(160)
        ]
        # Several batches, and single fills, so days are appended to as well as created.
        fills_record(owner=user, fills=fills[:60])
        for f in fills[60:80]:
            order = next(o for o in orders if o.pk == f.order_id)
            fill_record(
                order=order,
                venue_trade_id=f.venue_trade_id,
                quantity=f.quantity,
                price=f.price,
                ts=f.ts,
                fee=f.fee,
            )
        fills_record(owner=user, fills=fills[80:])
    return users, instruments, strategies


def _filter_cases(user: Any, instruments: list[Any], strategy: Any) -> list[dict[str, Any]]:
    return [
        NO_FILTERS,
        {**NO_FILTERS, "status": ["closed"]},
        {**NO_FILTERS, "symbol": [instruments[0]], "strategy": [strategy]},
        {**NO_FILTERS, "symbol": [instruments[1]], "strategy": [strategy]},
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_summary_from_rollups_equals_the_summary_from_a_scan(db: None, seed: int) -> None:
    users, instruments, strategies = _random_ledger(seed)
    assert Trade.objects.filter(status="closed").count() > 20
    streaks_seen = set()
    for user, strategy in zip(users, strategies, strict=True):
        for filters in _filter_cases(user, instruments, strategy):
            trades = selectors.trade_list(user=user)
            if filters["symbol"]:
                trades = trades.filter(instrument__in=filters["symbol"])
            if filters["strategy"]:
                trades = trades.filter(strategy__in=filters["strategy"])
            scanned = selectors.trade_summary(trades=trades)
            rolled = selectors._summary_from_rollups(user=user, filters=filters)
            assert rolled is not None
            assert rolled == scanned
            streaks_seen.add((rolled["max_consecutive_wins"], rolled["max_consecutive_losses"]))
    assert len(streaks_seen) > 1  # the data has streaks worth comparing


def test_rebuilt_rollups_equal_the_ones_kept_by_the_services(db: None) -> None:
    _random_ledger(3)
    fields = [f.name for f in TradeRollup._meta.fields if f.name != "id"]
    kept = sorted(TradeRollup.objects.values_list(*fields), key=str)
    kept_streaks = sorted(TradeStreakRollup.objects.values_list("owner_id", "day", "trades"))
    TradeRollup.objects.update(trades=0, net_pnl=0)
    assert trade_rollups_rebuild() == (len(kept), len(kept_streaks))
    assert sorted(TradeRollup.objects.values_list(*fields), key=str) == kept
    assert sorted(TradeStreakRollup.objects.values_list("owner_id", "day", "trades")) == (
        kept_streaks
    )


def test_summary_falls_back_to_the_scan_where_rollups_cannot_answer(db: None) -> None:
    users, instruments, _strategies = _random_ledger(4)
    user = users[0]
    several_series = {**NO_FILTERS, "symbol": instruments}  # four books, interleaved
    by_entry_time = {**NO_FILTERS, "start": T0.date()}
    by_side = {**NO_FILTERS, "side": ["long"]}
    for filters in (several_series, by_entry_time, by_side):
        assert selectors._summary_from_rollups(user=user, filters=filters) is None
    staff = UserFactory(is_staff=True)  # sees two owners whose trades interleave
    assert selectors._summary_from_rollups(user=staff, filters=NO_FILTERS) is None


def test_summary_api_with_a_symbol_filter_matches_the_scan(api_client: Any, user: Any) -> None:
    instrument = InstrumentFactory(price_tick=Decimal("0.01"), quantity_step=Decimal("1"))
    for minute, (side, price) in enumerate([("buy", "100"), ("sell", "90"), ("sell", "100")]):
        order = submit(user, instrument, side, "1")
        fill_record(
            order=order,
            venue_trade_id=f"a{minute}",
            quantity=Decimal(1),
            price=Decimal(price),
            ts=T0 + timedelta(minutes=minute),
        )
    body = api_client.get(f"/api/v1/trades/summary/?symbol={instrument.symbol}").json()
    assert body["trades"] == 1
    assert body["max_consecutive_losses"] == 1
    assert Decimal(body["net_pnl"]) == Decimal(-10)


def test_rebuild_command_restores_rollups_after_trades_written_around_them(
    api_client: Any, user: Any
) -> None:
    instrument = InstrumentFactory(price_tick=Decimal("0.01"), quantity_step=Decimal("1"))
    for minute, (side, price) in enumerate([("buy", "100"), ("sell", "110")]):
        order = submit(user, instrument, side, "1")
        fill_record(
            order=order,
            venue_trade_id=f"c{minute}",
            quantity=Decimal(1),
            price=Decimal(price),
            ts=T0 + timedelta(minutes=minute),
        )
    TradeRollup.objects.all().delete()
    TradeStreakRollup.objects.all().delete()
    assert api_client.get("/api/v1/trades/summary/").json()["trades"] == 0
    out = StringIO()
    call_command("rebuild_trade_rollups", stdout=out)
    assert "1 series-days and 1 owner-days rebuilt" in out.getvalue()
    body = api_client.get("/api/v1/trades/summary/").json()
    assert (body["trades"], body["max_consecutive_wins"]) == (1, 1)
