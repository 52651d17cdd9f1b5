"""Instrument and Candle moved from trading to marketdata: an existing database migrates
forward in place, and everything that pointed at the moved models stays attached."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from auditlog.models import LogEntry as AuditEntry
from django.contrib.admin.models import LogEntry as AdminEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import User
from marketdata.models import Candle, Instrument
from strategies.models import Strategy

# Today's schema before the move: every app at its last migration that knew trading.Instrument.
BEFORE = [
    ("marketdata", None),
    ("trading", "0006_fill_order_owner_key"),
    ("strategies", "0002_initial"),
    ("backtests", "0003_run_sharing_and_liveness"),
]


def _migrate(targets):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    # The historical models of exactly what is applied now: each app's newest applied node.
    applied = MigrationExecutor(connection).loader.applied_migrations
    newest: dict[str, str] = {}
    for app, name in applied:
        newest[app] = max(newest.get(app, name), name)
    return executor.loader.project_state(list(newest.items())).apps


def _latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_moved_models_keep_their_rows_audit_history_and_permissions():
    old = _migrate(BEFORE)
    OldContentType = old.get_model("contenttypes", "ContentType")
    instrument_type = OldContentType.objects.get_or_create(app_label="trading", model="instrument")[
        0
    ]
    # The moved models' types are still trading's (types of models marketdata added since,
    # such as CandleUpload, may already exist: migrating back does not delete them).
    moved = ["instrument", "candle"]
    assert not OldContentType.objects.filter(app_label="marketdata", model__in=moved).exists()
    user = old.get_model("accounts", "User").objects.create(username="veteran")
    instrument = old.get_model("trading", "Instrument").objects.create(
        symbol="MIGUSDT",
        base="MIG",
        quote="USDT",
        price_tick=Decimal("0.01"),
        quantity_step=Decimal("0.001"),
    )
    old.get_model("trading", "Candle").objects.create(
        instrument=instrument,
        timeframe="1h",
        ts=datetime(2024, 1, 1, tzinfo=UTC),
        open=1.0,
        high=2.0,
        low=0.5,
        close=1.5,
    )
    strategy = old.get_model("strategies", "Strategy").objects.create(
        owner=user, name="moved", kind="buy_and_hold", instrument=instrument, timeframe="1h"
    )
    audit = old.get_model("auditlog", "LogEntry").objects.create(
        content_type=instrument_type,
        object_pk=str(instrument.pk),
        object_id=instrument.pk,
        object_repr="MIGUSDT",
        action=1,
        changes='{"price_tick": ["0.1", "0.01"]}',
        actor=user,
    )
    admin_entry = old.get_model("admin", "LogEntry").objects.create(
        content_type=instrument_type,
        object_id=str(instrument.pk),
        object_repr="MIGUSDT",
        action_flag=2,
        change_message="[]",
        user=user,
    )
    permission = old.get_model("auth", "Permission").objects.get_or_create(
        content_type=instrument_type, codename="change_instrument"
    )[0]
    user.user_permissions.add(permission)

    try:
        _latest()
        ContentType.objects.clear_cache()

        moved_type = ContentType.objects.get_for_model(Instrument)
        assert moved_type.pk == instrument_type.pk
        assert not ContentType.objects.filter(app_label="trading", model="instrument").exists()
        moved = Instrument.objects.get(pk=instrument.pk)
        assert moved.symbol == "MIGUSDT"
        assert Candle.objects.filter(instrument=moved).count() == 1
        assert Strategy.objects.get(pk=strategy.pk).instrument == moved
        history = AuditEntry.objects.get_for_object(moved)
        assert list(history.values_list("pk", flat=True)) == [audit.pk]
        assert AdminEntry.objects.get(pk=admin_entry.pk).get_edited_object() == moved
        assert User.objects.get(pk=user.pk).has_perm("marketdata.change_instrument")
    finally:
        _latest()
