"""The event store: hash chain, expected versions, tamper detection, the append-only trigger."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from persistence.events import (
    GENESIS_HASH,
    NewEvent,
    StreamVersionConflict,
    _dumps,
    canonical_event,
    chain_head,
    dumps_ready,
    event_append,
    event_hash,
    events_append,
    ledger_verify,
    stream_versions,
)
from persistence.models import Event

pytestmark = pytest.mark.django_db
on_postgres = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="needs PostgreSQL triggers"
)


def append_some(n: int = 5) -> list[Event]:
    events = []
    for i in range(n):
        stream = f"s-{i % 2}"
        version = stream_versions([stream])[stream]
        events.append(
            event_append(
                stream=stream,
                type="Tested",
                data={"i": i, "amount": Decimal("1.10")},
                expected_version=version,
            )
        )
    return events


def raw(sql: str, params: list[object]) -> None:
    """Change the table behind the store's back, as an attacker with database rights would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE persistence_event DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE persistence_event ENABLE TRIGGER USER")


def test_each_event_hashes_its_canonical_form_and_the_previous_hash():
    events = append_some(3)
    assert events[0].prev_hash == GENESIS_HASH
    for before, event in itertools.pairwise(events):
        assert event.prev_hash == before.hash
    stored = Event.objects.get(seq=events[2].seq)
    canonical = canonical_event(
        stream=stored.stream,
        version=stored.version,
        type=stored.type,
        data=stored.data,
        metadata=stored.metadata,
        created_at=stored.created_at,
    )
    assert event_hash(stored.prev_hash, canonical) == stored.hash
    assert chain_head() == stored.hash
    # Decimals are stored as strings, so they come back exactly.
    assert stored.data["amount"] == "1.10"


def test_stream_versions_count_from_one():
    append_some(5)
    assert stream_versions(["s-0", "s-1", "none"]) == {"s-0": 3, "s-1": 2, "none": 0}


def test_append_with_a_stale_expected_version_fails_and_writes_nothing():
    event_append(stream="a", type="T", data={}, expected_version=0)
    with pytest.raises(StreamVersionConflict) as excinfo, transaction.atomic():
        events_append(
            [
                NewEvent("b", "T", {}, expected_version=0),
                NewEvent("a", "T", {}, expected_version=0),
            ]
        )
    assert (excinfo.value.expected, excinfo.value.actual) == (0, 1)
    assert Event.objects.count() == 1


def test_stream_version_is_unique_in_the_database():
    [event] = append_some(1)
    with pytest.raises(DatabaseError), transaction.atomic():
        Event.objects.create(
            stream=event.stream,
            version=event.version,
            type="T",
            data={},
            prev_hash=event.hash,
            hash="f" * 64,
            created_at=timezone.now(),
        )


def test_floats_are_refused_because_they_would_not_round_trip():
    with pytest.raises(TypeError):
        event_append(stream="a", type="T", data={"price": 1.1}, expected_version=0)


def test_verify_passes_on_an_untouched_chain():
    append_some(6)
    report = ledger_verify(chunk_size=4)
    assert report.ok
    assert (report.events, report.streams) == (6, 2)


def test_verify_names_an_event_whose_payload_was_altered():
    events = append_some(5)
    victim = events[2]
    tampered = {**victim.data, "amount": "1000.00"}
    raw("UPDATE persistence_event SET data = %s WHERE seq = %s", [json.dumps(tampered), victim.seq])
    report = ledger_verify()
    assert not report.ok
    assert [p.seq for p in report.problems] == [victim.seq]
    assert "altered" in str(report.problems[0])


def test_verify_names_the_event_after_a_deleted_one():
    events = append_some(5)
    raw("DELETE FROM persistence_event WHERE seq = %s", [events[2].seq])
    report = ledger_verify()
    bad = {p.seq for p in report.problems}
    # The chain breaks at the next event; the stream s-0 misses a version at its next event.
    assert events[3].seq in bad
    assert events[4].seq in bad
    assert any(f"seq {events[1].seq}" in p.message for p in report.problems)


def test_verify_names_a_skipped_stream_version_even_with_a_valid_chain():
    append_some(2)
    created = timezone.now()
    prev = chain_head()
    canonical = canonical_event(
        stream="s-0", version=3, type="Tested", data={}, metadata={}, created_at=created
    )
    skipped = Event.objects.create(
        stream="s-0",
        version=3,
        type="Tested",
        data={},
        metadata={},
        prev_hash=prev,
        hash=event_hash(prev, canonical),
        created_at=created,
    )
    report = ledger_verify()
    assert [p.seq for p in report.problems] == [skipped.seq]
    assert "version 3 where 2 was expected" in report.problems[0].message


@on_postgres
def test_postgres_rejects_update_and_delete_of_events():
    [event] = append_some(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Event.objects.filter(pk=event.pk).update(type="Changed")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Event.objects.filter(pk=event.pk).delete()
    assert Event.objects.get(pk=event.pk).type == "Tested"


json_safe_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.django_db(databases=[])
@given(json_safe_values)
def test_the_fast_encoder_writes_exactly_what_the_canonical_encoder_does(value):
    # Bulk ingest hashes what `dumps_ready` writes; `ledger_verify` re-encodes what it
    # reads with the standard library. Any difference would fail verification.
    assert dumps_ready(value) == _dumps(value)


@pytest.mark.django_db(databases=[])
def test_the_fast_encoder_falls_back_for_escapes_and_huge_integers():
    for value in ({"b": "caf\u00e9", "a": 'q"'}, {"n": 2**70}, ["\x00\t"], {"\x7f": None}):
        assert dumps_ready(value) == _dumps(value)
