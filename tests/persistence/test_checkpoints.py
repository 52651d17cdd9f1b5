"""Signed checkpoints of the chain's head: truncation and rewriting behind them are caught."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from persistence.checkpoints import (
    WITNESS_TABLE,
    CheckpointRefused,
    DatabaseWitness,
    FileWitness,
    SignedCheckpoint,
    checkpoint_age_seconds,
    checkpoint_latest,
    checkpoint_write,
    checkpoints_verify,
    ledger_head,
    signing_key,
    verification_keys,
    witnesses_configured,
)
from persistence.events import (
    GENESIS_HASH,
    canonical_event,
    event_append,
    event_hash,
    ledger_verify,
    stream_versions,
)
from persistence.models import Checkpoint, Event
from tests.trading.conftest import submit
from trading.services import order_cancel

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def witness_file(settings, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    settings.LEDGER_CHECKPOINT_KEY = "checkpoint-key-for-tests"
    settings.LEDGER_CHECKPOINT_KEY_FALLBACKS = []
    settings.LEDGER_CHECKPOINT_PATH = tmp_path / "witness" / "checkpoints.jsonl"
    settings.LEDGER_CHECKPOINT_DATABASE_URL = ""
    return Path(settings.LEDGER_CHECKPOINT_PATH)


def append_some(n: int) -> list[Event]:
    events = []
    for i in range(n):
        stream = f"s-{i % 2}"
        events.append(
            event_append(
                stream=stream,
                type="Tested",
                data={"i": i, "amount": Decimal("1.10")},
                expected_version=stream_versions([stream])[stream],
            )
        )
    return events


def tamper(sql: str, params: list[object]) -> None:
    """Change the event table as an attacker with database rights would: on PostgreSQL the
    append-only trigger is switched off first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE persistence_event DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE persistence_event ENABLE TRIGGER USER")


def verify(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_ledger", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def verify_fails(*args: str) -> str:
    err = StringIO()
    with pytest.raises(CommandError, match="ledger verification failed"):
        call_command("verify_ledger", *args, stdout=StringIO(), stderr=err)
    return err.getvalue()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- Writing ------------------------------------------------------------------------------


def test_a_checkpoint_signs_the_head_and_is_appended_to_the_witness_file(witness_file):
    events = append_some(5)
    record = checkpoint_write()
    [line] = lines(witness_file)
    assert line["seq"] == events[-1].seq == record.seq
    assert line["head_hash"] == events[-1].hash == record.head_hash
    assert line["event_count"] == 5 == record.event_count
    assert line["key_id"] == signing_key().key_id == record.key_id
    assert line["signature"] == record.signature
    assert len(str(line["signature"])) == 64
    created = datetime.fromisoformat(str(line["created_at"]))
    assert created.utcoffset() == timedelta(0)
    assert created == record.created_at
    assert checkpoint_latest() == record
    assert Checkpoint.objects.count() == 1


def test_each_checkpoint_is_a_new_line_and_the_latest_is_the_newest(witness_file):
    append_some(2)
    first = checkpoint_write(at=datetime(2026, 1, 1, tzinfo=UTC))
    append_some(1)
    second = checkpoint_write(at=datetime(2026, 1, 1, 0, 10, tzinfo=UTC))
    assert [line["seq"] for line in lines(witness_file)] == [first.seq, second.seq]
    assert second.seq > first.seq
    assert checkpoint_latest() == second
    now = datetime(2026, 1, 1, 0, 25, tzinfo=UTC)
    assert checkpoint_age_seconds(now=now) == 15 * 60


def test_no_checkpoint_means_no_latest_and_no_age():
    assert checkpoint_latest() is None
    assert checkpoint_age_seconds() is None


def test_a_checkpoint_of_the_empty_ledger_holds(witness_file):
    record = checkpoint_write()
    assert (record.seq, record.head_hash, record.event_count) == (0, GENESIS_HASH, 0)
    out, _ = verify("--against", str(witness_file))
    assert "1 signed checkpoint(s) hold" in out


def test_the_head_counts_only_events_up_to_it():
    events = append_some(3)
    head = ledger_head()
    assert (head.seq, head.hash, head.event_count) == (events[-1].seq, events[-1].hash, 3)


def test_the_witness_file_last_line_is_read_from_the_end(tmp_path):
    witness = FileWitness(tmp_path / "w.jsonl")
    assert witness.last_line() is None
    for i in range(300):  # well past one 4 KiB block
        witness.append(json.dumps({"i": i, "padding": "x" * 40}))
    assert json.loads(witness.last_line() or "")["i"] == 299
    assert len(list(witness.lines())) == 300


# --- Truncation, deletion, rewriting ---------------------------------------------------------


def test_a_lost_trailing_order_cancelled_passes_plain_verify_but_not_the_checkpoint(
    user, instrument, witness_file
):
    order = submit(user, instrument, "buy", "1")
    order_cancel(order=order, actor=user)
    cancelled = Event.objects.get(type="OrderCancelled")
    assert Event.objects.order_by("seq").last() == cancelled
    checkpoint_write()
    tamper("DELETE FROM persistence_event WHERE seq = %s", [cancelled.seq])

    out, _ = verify()
    assert "ledger OK: 2 events" in out  # the chain alone cannot tell
    err = verify_fails("--against", str(witness_file))
    assert f"TAMPERED seq {cancelled.seq}: the ledger was truncated" in err
    assert f"first missing sequence number: {cancelled.seq}" in err
    assert f"signed seq {cancelled.seq} (3 events)" in err


def test_truncation_names_the_first_missing_sequence_number(witness_file):
    events = append_some(8)
    checkpoint_write()
    tamper("DELETE FROM persistence_event WHERE seq >= %s", [events[5].seq])
    assert ledger_verify().ok
    err = verify_fails("--against", str(witness_file))
    assert f"first missing sequence number: {events[5].seq}" in err
    assert f"it ends at seq {events[4].seq}" in err


def test_events_deleted_then_the_chain_extended_again_are_caught(witness_file):
    events = append_some(6)
    checkpoint_write()
    tamper("DELETE FROM persistence_event WHERE seq >= %s", [events[4].seq])
    append_some(4)  # the chain goes on from the shortened head, and verifies
    assert ledger_verify().ok
    assert ledger_head().seq > events[-1].seq
    err = verify_fails("--against", str(witness_file))
    assert f"events were deleted: seq {events[-1].seq} is gone" in err
    assert f"first missing sequence number: {events[4].seq}" in err


def test_rewriting_history_behind_a_checkpoint_is_caught_even_when_rehashed(witness_file):
    events = append_some(6)
    checkpoint_write()
    # A careful attacker changes an old amount and re-hashes every event after it, so the
    # chain itself verifies again.
    prev_hash = events[1].hash
    for event in Event.objects.filter(seq__gte=events[2].seq).order_by("seq"):
        data = {**event.data, "amount": "999.00"} if event.seq == events[2].seq else event.data
        canonical = canonical_event(
            stream=event.stream,
            version=event.version,
            type=event.type,
            data=data,
            metadata=event.metadata,
            created_at=event.created_at,
        )
        digest = event_hash(prev_hash, canonical)
        tamper(
            "UPDATE persistence_event SET data = %s, prev_hash = %s, hash = %s WHERE seq = %s",
            [json.dumps(data), prev_hash, digest, event.seq],
        )
        prev_hash = digest
    assert ledger_verify().ok
    err = verify_fails("--against", str(witness_file))
    assert f"TAMPERED seq {events[-1].seq}: history was rewritten" in err
    assert events[-1].hash in err


def test_every_checkpoint_in_the_file_is_held_against_the_ledger(witness_file):
    events = append_some(3)
    checkpoint_write()
    append_some(3)
    checkpoint_write()
    # Rewriting the newest event is caught by the newest checkpoint; the older one still holds.
    tamper(
        "UPDATE persistence_event SET hash = %s WHERE seq = %s",
        ["f" * 64, Event.objects.last().seq],
    )  # type: ignore[union-attr]
    report = checkpoints_verify([FileWitness(witness_file)])
    assert [p.seq for p in report.problems] == [Event.objects.last().seq]  # type: ignore[union-attr]
    assert report.signed == 2
    assert events[-1].seq < report.problems[0].seq  # type: ignore[operator]


def test_verify_against_an_intact_ledger_passes_and_says_what_it_checked(witness_file):
    events = append_some(4)
    checkpoint_write()
    append_some(2)  # events after the newest checkpoint are fine
    out, _ = verify("--against", str(witness_file))
    assert "ledger OK: 6 events" in out
    assert f"1 signed checkpoint(s) hold, the newest of seq {events[-1].seq} (4 events)" in out


def test_against_alone_uses_the_configured_witness(witness_file):
    events = append_some(3)
    checkpoint_write()
    tamper("DELETE FROM persistence_event WHERE seq = %s", [events[-1].seq])
    err = verify_fails("--against")
    assert f"first missing sequence number: {events[-1].seq}" in err


def test_writing_a_checkpoint_over_a_truncated_ledger_is_refused(witness_file):
    events = append_some(4)
    checkpoint_write()
    tamper("DELETE FROM persistence_event WHERE seq = %s", [events[-1].seq])
    with pytest.raises(CheckpointRefused, match=f"first missing sequence number: {events[-1].seq}"):
        checkpoint_write()
    assert len(lines(witness_file)) == 1
    assert Checkpoint.objects.count() == 1
    with pytest.raises(CommandError, match="checkpoint refused"):
        call_command("ledger_checkpoint", stdout=StringIO(), stderr=StringIO())


# --- Signatures and keys ------------------------------------------------------------------


def forge(line: dict[str, object], **changes: object) -> str:
    return json.dumps({**line, **changes})


def test_a_checkpoint_with_a_forged_signature_is_rejected(witness_file):
    events = append_some(3)
    checkpoint_write()
    [line] = lines(witness_file)
    # A forger moves the checkpoint back to cover a truncation; without the key the
    # signature cannot follow.
    witness_file.write_text(forge(line, seq=events[0].seq, head_hash=events[0].hash) + "\n")
    err = verify_fails("--against", str(witness_file))
    assert f"checkpoint {witness_file}:1 (seq {events[0].seq}) has a bad signature" in err
    assert "altered or forged" in err


def test_a_single_checkpoint_given_as_json_is_checked(witness_file):
    events = append_some(3)
    checkpoint_write()
    [line] = lines(witness_file)
    out, _ = verify("--against", json.dumps(line))
    assert "1 signed checkpoint(s) hold" in out
    err = verify_fails("--against", forge(line, event_count=2))
    assert "the checkpoint given (seq " in err
    assert "bad signature" in err
    tamper("DELETE FROM persistence_event WHERE seq = %s", [events[-1].seq])
    err = verify_fails("--against", json.dumps(line))
    assert f"first missing sequence number: {events[-1].seq}" in err


def test_a_checkpoint_signed_with_another_key_is_rejected(settings, witness_file):
    append_some(2)
    settings.LEDGER_CHECKPOINT_KEY = "the attackers own key"
    checkpoint_write()
    settings.LEDGER_CHECKPOINT_KEY = "checkpoint-key-for-tests"
    err = verify_fails("--against", str(witness_file))
    assert "signed with an unknown key" in err


def test_a_line_that_is_not_a_checkpoint_is_reported(witness_file):
    append_some(1)
    checkpoint_write()
    with witness_file.open("a") as handle:
        handle.write('{"format": 1, "seq": "7"}\nnot json\n')
    err = verify_fails("--against", str(witness_file))
    assert f"{witness_file}:2 is not a checkpoint: missing" in err
    assert f"{witness_file}:3 is not a checkpoint: not JSON" in err


def test_an_empty_or_missing_witness_fails(witness_file, tmp_path):
    witness_file.parent.mkdir(parents=True)
    witness_file.write_text("")
    err = verify_fails("--against", str(witness_file))
    assert "no checkpoints in" in err
    with pytest.raises(CommandError, match="no checkpoint file at"):
        call_command("verify_ledger", "--against", str(tmp_path / "none.jsonl"), stderr=StringIO())


def test_checkpoints_signed_before_a_key_rotation_verify_with_the_fallback(settings, witness_file):
    append_some(2)
    checkpoint_write()
    settings.LEDGER_CHECKPOINT_KEY = "the new key"
    assert "unknown key" in verify_fails("--against", str(witness_file))
    settings.LEDGER_CHECKPOINT_KEY_FALLBACKS = ["checkpoint-key-for-tests"]
    append_some(1)
    checkpoint_write()
    out, _ = verify("--against", str(witness_file))
    assert "2 signed checkpoint(s) hold" in out
    assert len({line["key_id"] for line in lines(witness_file)}) == 2


def test_without_a_key_one_is_derived_from_secret_key_for_this_purpose(settings, witness_file):
    settings.LEDGER_CHECKPOINT_KEY = ""
    settings.SECRET_KEY = "secret-key-one"
    key = signing_key()
    assert key.derived
    assert key.secret not in {b"secret-key-one", b""}
    append_some(1)
    err = StringIO()
    call_command("ledger_checkpoint", stdout=StringIO(), stderr=err)
    assert "derived from SECRET_KEY" in err.getvalue()
    # A new SECRET_KEY is a new key; the old one verifies as a fallback.
    settings.SECRET_KEY = "secret-key-two"
    assert signing_key().key_id != key.key_id
    assert "unknown key" in verify_fails("--against", str(witness_file))
    settings.SECRET_KEY_FALLBACKS = ["secret-key-one"]
    assert key.key_id in verification_keys()
    verify("--against", str(witness_file))


def test_the_signature_covers_every_field():
    key = signing_key()
    checkpoint = SignedCheckpoint(
        seq=3,
        head_hash="a" * 64,
        event_count=3,
        created_at="2026-01-01T00:00:00.000000+00:00",
        key_id=key.key_id,
        signature="",
    )
    signature = checkpoint.signature_for(key)
    for change in ({"seq": 4}, {"head_hash": "b" * 64}, {"event_count": 2}, {"created_at": "x"}):
        changed = SignedCheckpoint(**{**checkpoint.__dict__, **change})
        assert changed.signature_for(key) != signature


# --- The command, the task and the schedule --------------------------------------------


def test_ledger_checkpoint_command_writes_a_line_and_reports_it(witness_file, tmp_path):
    events = append_some(2)
    out = StringIO()
    other = tmp_path / "elsewhere.jsonl"
    call_command("ledger_checkpoint", "--to", str(other), stdout=out, stderr=StringIO())
    assert f"checkpoint: seq {events[-1].seq}, 2 events" in out.getvalue()
    assert str(other) in out.getvalue()
    assert lines(other)[0]["seq"] == events[-1].seq
    assert not witness_file.exists()


def test_the_beat_schedule_runs_the_checkpoint_task(settings):
    from config.celery import app
    from persistence.tasks import ledger_checkpoint

    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == ledger_checkpoint.name
    ]
    assert len(entries) == 1
    assert entries[0]["schedule"] == float(settings.LEDGER_CHECKPOINT_INTERVAL_SECONDS) > 0
    assert ledger_checkpoint.name in app.tasks
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_the_checkpoint_task_writes_a_checkpoint_line(witness_file):
    from persistence.tasks import ledger_checkpoint

    events = append_some(3)
    result = ledger_checkpoint.apply().get()
    assert result["seq"] == events[-1].seq
    assert result["witnesses"] == [str(witness_file)]
    [line] = lines(witness_file)
    assert (line["seq"], line["head_hash"], line["event_count"]) == (
        events[-1].seq,
        events[-1].hash,
        3,
    )


# --- A second database as witness --------------------------------------------------------


def test_a_sqlite_database_can_be_a_second_witness(settings, tmp_path, witness_file):
    url = f"sqlite:///{tmp_path / 'witness.sqlite3'}"
    settings.LEDGER_CHECKPOINT_DATABASE_URL = url
    events = append_some(3)
    checkpoint_write()
    assert len(lines(witness_file)) == 1
    [(where, text)] = list(DatabaseWitness(url).lines())
    assert json.loads(text)["seq"] == events[-1].seq
    assert WITNESS_TABLE in where
    out, _ = verify("--against", url)
    assert "1 signed checkpoint(s) hold" in out
    tamper("DELETE FROM persistence_event WHERE seq = %s", [events[-1].seq])
    assert f"first missing sequence number: {events[-1].seq}" in verify_fails("--against", url)
    # Alone, --against reads both witnesses; the one loss they both show is named once.
    report = checkpoints_verify(witnesses_configured())
    assert (report.checkpoints, report.signed) == (2, 2)
    assert verify_fails("--against").count("first missing sequence number") == 1


@pytest.mark.postgres_only
def test_a_postgres_database_can_be_a_second_witness():
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
    if db.get("PASSWORD"):
        url = url.replace("@", f":{db['PASSWORD']}@", 1)
    witness = DatabaseWitness(url)
    try:
        events = append_some(2)
        checkpoint_write(witnesses=[witness])
        assert witness.last_line() is not None
        assert json.loads(witness.last_line() or "")["seq"] == events[-1].seq
        report = checkpoints_verify([witness])
        assert report.ok
    finally:
        witness._execute(f"DROP TABLE IF EXISTS {WITNESS_TABLE}")
