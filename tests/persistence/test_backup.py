"""backup and restore: a versioned archive of every row, file and event, loaded all or nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile

import pytest
from auditlog.models import LogEntry
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.db.migrations.loader import MigrationLoader

from accounts.models import User
from backtests import selectors as backtest_selectors
from backtests import services as backtest_services
from backtests.models import BacktestRun, RunStatus
from marketdata.models import Candle
from persistence import backup
from persistence.backup import backup_models
from persistence.checkpoints import checkpoint_write
from persistence.events import ledger_verify
from persistence.models import Artifact, Event
from persistence.services import artifact_load, artifact_save
from tests.backtests.conftest import END, T0, add_candles
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory
from tests.trading.conftest import fill, submit, trade
from trading.models import Fill, Order, Position
from trading.services import order_cancel

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LEDGER_CHECKPOINT_PATH = tmp_path / "checkpoints.jsonl"
    settings.LEDGER_CHECKPOINT_KEY = "backup-tests"
    yield
    # Emptying the database recreates content types under new ids, and the test's rollback
    # takes them back: nothing may remember the new ones.
    ContentType.objects.clear_cache()


def build_world(*, with_backtest: bool) -> dict[str, Any]:
    """Users (one in a group with a permission), an instrument with candles, a strategy,
    orders and fills through the ledger's services (one cancelled), artifacts in both
    stores, a checkpoint; and a finished backtest run with its equity artifact."""
    group = Group.objects.create(name="desk")
    group.permissions.add(Permission.objects.get(codename="view_order"))
    trader = UserFactory(username="trader")
    trader.groups.add(group)
    trader.user_permissions.add(Permission.objects.get(codename="add_fill"))
    UserFactory(username="researcher", is_staff=True)
    instrument = InstrumentFactory(
        symbol="BTCUSDT", price_tick=Decimal("0.01"), quantity_step=Decimal("0.001")
    )
    add_candles(instrument, bars=600 if with_backtest else 30)
    strategy = StrategyFactory(
        owner=trader, instrument=instrument, kind="sma_cross", parameters={"fast": 5, "slow": 20}
    )
    trade(trader, instrument, "buy", "2", "100.25", fee="0.1")
    trade(trader, instrument, "sell", "1", "101.50", strategy=strategy)
    partly = submit(trader, instrument, "buy", "3")
    fill(partly, "1", "99.99")
    order_cancel(order=submit(trader, instrument, "sell", "1"), actor=trader)
    artifact_save(
        name="note.txt", mime_type="text/plain", content=b"in the db", params_hash="a" * 64
    )
    from django.conf import settings

    settings.ARTIFACT_STORE = "file"
    on_disk = artifact_save(
        name="note.csv", mime_type="text/csv", content=b"a,b\n1,2\n", params_hash="b" * 64
    )
    # The same bytes under the same name share the file: archived once, restored for both.
    artifact_save(
        name="note.csv", mime_type="text/csv", content=b"a,b\n1,2\n", params_hash="c" * 64
    )
    if with_backtest:
        run = backtest_services.backtest_submit(
            user=trader, strategy=strategy, start=T0, end=END, enqueue=False
        )
        backtest_services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error
    settings.ARTIFACT_STORE = "db"
    checkpoint_write()
    return {"file_artifact": on_disk}


def counts() -> dict[str, int]:
    """Rows per model, and per many-to-many table."""
    tables: dict[str, int] = {}
    for model in backup_models():
        tables[model._meta.label] = model._base_manager.count()
        for m2m in model._meta.many_to_many:
            through = m2m.remote_field.through  # type: ignore[union-attr]
            tables[through._meta.label] = through._base_manager.count()
    return tables


def snapshot() -> dict[str, Any]:
    """What must come back exactly: events, audit entries by content type, ledger rows."""
    return {
        "events": list(
            Event.objects.order_by("seq").values_list(
                "seq", "stream", "version", "type", "data", "prev_hash", "hash", "created_at"
            )
        ),
        "audit": sorted(
            LogEntry.objects.values_list(
                "pk", "content_type__app_label", "content_type__model", "object_pk", "action"
            )
        ),
        "orders": list(Order.objects.order_by("pk").values()),
        "fills": list(Fill.objects.order_by("pk").values()),
        "positions": list(Position.objects.order_by("pk").values()),
        "candles": list(Candle.objects.order_by("pk").values_list("ts", "open", "close")),
        "users": list(User.objects.order_by("pk").values("username", "password", "date_joined")),
        "groups": sorted(User.objects.values_list("username", "groups__name")),
        "perms": sorted(User.objects.values_list("username", "user_permissions__codename")),
        "group_perms": sorted(Group.objects.values_list("name", "permissions__codename")),
        "artifacts": sorted(
            (a.name, a.sha256, artifact_load(artifact=a)) for a in Artifact.objects.all()
        ),
    }


def empty_the_database() -> None:
    # PostgreSQL will not TRUNCATE a table with foreign-key checks still deferred to commit.
    connection.check_constraints()
    call_command("flush", interactive=False, verbosity=0)
    assert all(n == 0 for n in counts().values())


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def rewrite(archive: Path, member: str, change: Any) -> None:
    """Rewrite one member of an archive with `change(text) -> text`."""
    with ZipFile(archive) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members[member] = change(members[member].decode()).encode()
    with ZipFile(archive, "w", compression=ZIP_DEFLATED) as new:
        for name, content in members.items():
            new.writestr(name, content)


# --- The round trip ---------------------------------------------------------------------


def round_trip(tmp_path: Path, *, with_backtest: bool) -> None:
    world = build_world(with_backtest=with_backtest)
    before, expected = counts(), snapshot()
    archive = tmp_path / "tradelab.zip"
    out, err = run("backup", str(archive))
    assert f"backup written to {archive}" in out
    assert "backup" in err  # the progress bar
    media_file = Path(str(world["file_artifact"].file_path))
    (tmp_path / "media" / media_file).unlink()

    empty_the_database()
    out, err = run("restore", str(archive))
    assert "ledger verified" in out
    assert "restore" in err

    assert counts() == before
    assert snapshot() == expected
    assert ledger_verify().ok
    verified, _ = run("verify_ledger", "--against", str(tmp_path / "checkpoints.jsonl"))
    assert f"ledger OK: {len(expected['events'])} events" in verified
    # New rows get fresh ids (the sequences were reset) and chain onto the restored head.
    trader = User.objects.get(username="trader")
    later = trade(trader, Order.objects.first().instrument, "buy", "1", "100")  # type: ignore[union-attr]
    assert later.pk > max(row["id"] for row in expected["orders"])
    assert Event.objects.order_by("seq").last().seq > expected["events"][-1][0]  # type: ignore[union-attr]
    assert ledger_verify().ok


@pytest.mark.postgres_only
def test_full_round_trip_restores_every_row_event_and_file(tmp_path):
    round_trip(tmp_path, with_backtest=True)
    run = BacktestRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED
    assert run.trades.count() > 0
    assert len(backtest_selectors.equity_frame(run)) == 600  # its equity artifact, restored


def test_round_trip_without_a_backtest_across_many_pages(tmp_path, monkeypatch):
    monkeypatch.setattr(backup, "PAGE", 4)  # rows are paged by key: cross page boundaries
    round_trip(tmp_path, with_backtest=False)


# --- The archive ------------------------------------------------------------------------


def test_the_manifest_describes_the_archive(tmp_path):
    build_world(with_backtest=False)
    before = counts()
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))
    with ZipFile(archive) as zipped:
        manifest = json.loads(zipped.read("manifest.json"))
        names = set(zipped.namelist())
        events = [
            json.loads(line) for line in zipped.read("data/persistence.event.jsonl").splitlines()
        ]
    assert (manifest["format"], manifest["format_version"]) == ("tradelab-backup", 1)
    assert manifest["app_version"] == "0.1.0"
    order = [entry["model"] for entry in manifest["models"]]
    assert {entry["model"]: entry["rows"] for entry in manifest["models"]} == {
        label: n for label, n in before.items() if label in order
    }
    for label in (
        "accounts.User",
        "marketdata.Candle",
        "strategies.Strategy",
        "trading.Fill",
        "backtests.BacktestRun",
        "persistence.Event",
        "auditlog.LogEntry",
    ):
        assert label in order
    assert "contenttypes.ContentType" not in order
    # Each model after the ones it refers to.
    assert order.index("accounts.User") < order.index("trading.Order") < order.index("trading.Fill")
    assert order.index("marketdata.Instrument") < order.index("marketdata.Candle")
    assert order.index("auth.Group") < order.index("accounts.User")
    head = Event.objects.order_by("seq").last()
    assert manifest["event_log"] == {
        "seq": head.seq,
        "hash": head.hash,
        "events": Event.objects.count(),
    }  # type: ignore[union-attr]
    assert [e["fields"]["hash"] for e in events] == list(
        Event.objects.order_by("seq").values_list("hash", flat=True)
    )
    assert manifest["media"] == {"files": 1, "missing": []}
    assert any(name.startswith("media/artifacts/") for name in names)
    applied = MigrationLoader(connection).applied_migrations
    newest = max(name for app, name in applied if app == "persistence")
    assert manifest["migrations"]["persistence"][-1] == newest


def test_backup_keeps_microseconds_and_audit_content_types_by_name(tmp_path):
    build_world(with_backtest=False)
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))
    with ZipFile(archive) as zipped:
        event = json.loads(zipped.read("data/persistence.event.jsonl").splitlines()[0])
        entry = json.loads(zipped.read("data/auditlog.logentry.jsonl").splitlines()[0])
    assert (
        event["fields"]["created_at"]
        == Event.objects.order_by("seq").first().created_at.isoformat()
    )  # type: ignore[union-attr]
    assert isinstance(entry["fields"]["content_type"], list)  # (app_label, model), not an id


def test_backup_will_not_overwrite_an_archive_unless_asked(tmp_path):
    archive = tmp_path / "tradelab.zip"
    archive.write_bytes(b"keep me")
    with pytest.raises(CommandError, match="exists"):
        run("backup", str(archive))
    assert archive.read_bytes() == b"keep me"
    run("backup", str(archive), "--overwrite")
    assert ZipFile(archive).read("manifest.json")


# --- Refusals and failures write nothing ----------------------------------------------


def test_restoring_into_a_non_empty_database_is_refused_and_writes_nothing(tmp_path):
    build_world(with_backtest=False)
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))
    before, expected = counts(), snapshot()
    with pytest.raises(
        CommandError,
        match=r"database is unchanged: the database is not empty \(.*accounts\.User.*\)",
    ):
        run("restore", str(archive))
    assert counts() == before
    assert snapshot() == expected


def test_a_restore_that_fails_after_loading_leaves_no_rows_and_no_files(tmp_path):
    build_world(with_backtest=False)
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))
    # An archived event whose payload no longer matches its hash: loads, then fails to verify.
    rewrite(
        archive, "data/persistence.event.jsonl", lambda text: text.replace('"99.99', '"1.00', 1)
    )
    for path in (tmp_path / "media").rglob("*"):
        if path.is_file():
            path.unlink()
    empty_the_database()
    with pytest.raises(CommandError, match=r"does not verify: seq .*altered"):
        run("restore", str(archive))
    assert all(n == 0 for n in counts().values())
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def test_a_restore_whose_row_counts_differ_from_the_manifest_writes_nothing(tmp_path):
    build_world(with_backtest=False)
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))

    def one_candle_more(text: str) -> str:
        manifest = json.loads(text)
        for entry in manifest["models"]:
            if entry["model"] == "marketdata.Candle":
                entry["rows"] += 1
        return json.dumps(manifest)

    rewrite(archive, "manifest.json", one_candle_more)
    empty_the_database()
    with pytest.raises(
        CommandError, match=r"row counts do not match the manifest: marketdata\.Candle"
    ):
        run("restore", str(archive))
    assert all(n == 0 for n in counts().values())


def test_restore_refuses_an_archive_from_other_migrations(tmp_path):
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))

    def older(text: str) -> str:
        manifest = json.loads(text)
        manifest["migrations"]["persistence"].pop()
        return json.dumps(manifest)

    rewrite(archive, "manifest.json", older)
    names = sorted(
        name for app, name in MigrationLoader(connection).applied_migrations if app == "persistence"
    )
    with pytest.raises(
        CommandError,
        match=f"persistence: archive at {names[-2]}, database at {names[-1]}",
    ):
        run("restore", str(archive))


def test_restore_refuses_what_it_cannot_read(tmp_path):
    archive = tmp_path / "tradelab.zip"
    run("backup", str(archive))
    rewrite(
        archive, "manifest.json", lambda t: t.replace('"format_version": 1', '"format_version": 99')
    )
    with pytest.raises(CommandError, match="backup format version 99"):
        run("restore", str(archive))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(CommandError, match="not a zip archive"):
        run("restore", str(tmp_path / "junk.zip"))
    with pytest.raises(CommandError, match="no backup archive"):
        run("restore", str(tmp_path / "none.zip"))


def test_every_model_with_rows_worth_keeping_is_backed_up():
    chosen = {model._meta.label for model in backup_models()}
    for model in apps.get_models():
        label = model._meta.label
        if label in {"contenttypes.ContentType", "auth.Permission", "sessions.Session"}:
            assert label not in chosen
        elif model._meta.managed and not model._meta.proxy:
            assert label in chosen
    assert isinstance(next(iter(backup_models())), type(models.Model))
    assert connection.vendor in {"sqlite", "postgresql"}
