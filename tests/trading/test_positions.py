"""Positions: heads, snapshots and replays agree with the live rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest

from persistence.bulk import COPY_THRESHOLD
from persistence.events import ledger_verify
from persistence.models import Event, Snapshot
from tests.trading.conftest import T0, fill, open_position, submit, trade
from trading.models import Position, PositionHead
from trading.selectors import position_replay
from trading.services import (
    FillInput,
    fills_record,
    position_stream,
)

pytestmark = pytest.mark.django_db
D = Decimal


# --- order_submit -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "stale"])
def test_a_head_not_at_the_stream_version_is_ignored_and_the_stream_replayed(
    user, instrument, damage
):
    trade(user, instrument, "buy", "2", "100")
    trade(user, instrument, "buy", "1", "130")
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    heads = PositionHead.objects.filter(stream=stream)
    if damage == "deleted":
        heads.delete()
    else:
        # As if written after the first fill only, with a state that was never true.
        heads.update(version=1, state={"life": 1, "quantity": "99", "cost_basis": "1"})
    trade(user, instrument, "sell", "1", "150")
    position = Position.objects.get(owner=user)
    # Average entry 110 over 3; selling 1 at 150 realizes exactly 40.
    assert (position.quantity, position.avg_entry_price, position.realized_pnl) == (
        D("2"),
        D("110"),
        D("40"),
    )
    replay = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    head = PositionHead.objects.get(stream=stream)
    assert head.version == replay.version == 3
    assert head.state == replay.state.to_json()


def test_snapshot_every_n_events_and_replays_agree(user, instrument, settings):
    settings.LEDGER_SNAPSHOT_EVERY = 3
    order = submit(user, instrument, "buy", "10")
    for i in range(7):
        fill(order, "1", str(100 + i))
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    assert list(Snapshot.objects.filter(stream=stream).values_list("version", flat=True)) == [
        6,
        3,
    ]
    from_snapshot = position_replay(stream=stream, instrument=instrument)
    full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    assert (from_snapshot.from_snapshot, from_snapshot.events_applied) == (6, 1)
    assert full.events_applied == 7
    assert from_snapshot.state == full.state
    live = open_position(user, instrument)
    assert (live.quantity, live.avg_entry_price) == (
        full.state.quantity,
        full.state.avg_entry_price,
    )


def test_a_batch_with_many_snapshots_stores_each_one_anchored(user, instrument, settings):
    # Enough snapshots in one batch that on PostgreSQL they go in by COPY as well.
    settings.LEDGER_SNAPSHOT_EVERY = 2
    buy = submit(user, instrument, "buy", "1000")
    items = [FillInput(buy.pk, f"s-{i}", D("0.25"), D(100 + i % 5), T0) for i in range(120)]
    fills_record(owner=user, fills=items)
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    assert Snapshot.objects.filter(stream=stream).count() == 60 >= COPY_THRESHOLD
    report = ledger_verify()
    assert report.ok and report.snapshots == 60
    newest = Snapshot.objects.filter(stream=stream).order_by("-version").first()
    assert newest.state["event_hash"] == Event.objects.get(stream=stream, version=120).hash
    from_snapshot = position_replay(stream=stream, instrument=instrument)
    full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
    assert from_snapshot.from_snapshot == 120
    assert from_snapshot.state == full.state


def test_replays_as_of_a_time_pick_the_snapshot_and_events_recorded_by_then(
    user, instrument, settings
):
    # Fills recorded at known times, a snapshot every two events: an as-of replay takes
    # the newest snapshot and the events recorded at or before the time, to the
    # microsecond, and agrees with a full replay to the same time.
    settings.LEDGER_SNAPSHOT_EVERY = 2
    buy = submit(user, instrument, "buy", "20")
    recorded = [T0 + timedelta(minutes=n, microseconds=n * 7) for n in range(1, 6)]
    for n, at in enumerate(recorded, 1):
        with patch("django.utils.timezone.now", return_value=at):
            fills_record(owner=user, fills=[FillInput(buy.pk, f"t-{n}", D(n), D(100 + n), T0)])
    stream = position_stream(owner_id=user.pk, strategy_id=None, symbol="BTCUSDT")
    tiny = timedelta(microseconds=1)
    for as_of, fills, snapshot in [
        (recorded[0] - tiny, 0, 0),
        (recorded[0], 1, 0),
        (recorded[2], 3, 2),
        (recorded[3] - tiny, 3, 2),
        (recorded[3], 4, 4),
        (recorded[4], 5, 4),
    ]:
        # The same instant in another zone selects the same history.
        for when in (as_of, as_of.astimezone(ZoneInfo("Asia/Tokyo"))):
            replay = position_replay(stream=stream, instrument=instrument, as_of=when)
            full = position_replay(
                stream=stream, instrument=instrument, as_of=when, use_snapshot=False
            )
            assert (replay.version, replay.from_snapshot) == (fills, snapshot), when
            assert replay.state == full.state
            assert replay.state.quantity == sum(D(n) for n in range(1, fills + 1))
