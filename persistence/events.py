"""The event store: appends to a single hash chain, stream versions, snapshots and verification.

Canonical form and hash (the contract `verify_ledger` checks):

    canonical = JSON of {"created_at", "data", "metadata", "stream", "type", "version"}
                with sorted keys, no whitespace, ASCII only, no floats (Decimals are
                strings), `created_at` as UTC ISO-8601 with microseconds
    hash      = sha256(prev_hash + canonical), hex; the first event's prev_hash is 64 zeros

The chain is global, in `seq` order. Appends therefore take one lock for the rest of their
transaction (a PostgreSQL advisory lock; SQLite serialises writers already), which also
makes `seq` order and chain order the same, and commit order too. Every appender waits on
that lock for whatever its holder does until commit, so a caller takes the chain lock last:
it takes its other locks, and writes what does not need the chain, before it appends. (The
trading ledger's order is written down once, in trading/ingest.py.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import sha256
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from persistence.bulk import copy_insert_text, copy_text, insert_models
from persistence.models import Event, Snapshot

GENESIS_HASH = "0" * 64
# Any constant works; this one spells "ledger" so it is recognisable in pg_locks.
CHAIN_LOCK_KEY = 0x6C6564676572


class StreamVersionConflict(Exception):
    """An append's expected version is not the stream's version: someone appended first."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, not {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class NewEvent(NamedTuple):
    """An event to append. A named tuple, not a dataclass: a bulk ingest makes one per fill,
    and a tuple is made in a fraction of the time."""

    stream: str
    type: str
    data: Mapping[str, Any]
    # The stream's version before this event; the event itself gets expected_version + 1.
    expected_version: int
    metadata: Mapping[str, Any] = _NO_METADATA
    # The producer promises `data` is JSON-safe already (str, int, bool, None, dicts and
    # lists of them: no Decimal, datetime or float), so it is encoded as it is.
    json_ready: bool = False


_PLAIN = (str, int, bool, type(None))


def json_safe(value: Any) -> Any:
    """Decimals and datetimes as strings; floats refused, because they would not round-trip."""
    kind = type(value)
    # Exact type checks first: this runs for every value of every event in a bulk ingest.
    if kind in _PLAIN:
        return value
    if kind is Decimal:
        return str(value)
    if kind is dict:
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        raise TypeError("floats are not allowed in events; use Decimal or str")
    if value is None or isinstance(value, str | int | bool):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in an event")


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_event(
    *,
    stream: str,
    version: int,
    type: str,
    data: Any,
    metadata: Any,
    created_at: datetime,
) -> str:
    return json.dumps(
        {
            "created_at": format_timestamp(created_at),
            "data": data,
            "metadata": metadata,
            "stream": stream,
            "type": type,
            "version": version,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def event_hash(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode("ascii")).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def lock_streams(streams: Iterable[str]) -> None:
    """Serialise writers of these streams until commit, in one global order (no deadlocks).

    Needed where no row exists yet to lock, such as a stream's first event.
    """
    lock_names(streams)


def lock_names(names: Iterable[str]) -> None:
    """Hold an advisory lock on each name until commit, taken in sorted order, so holders of
    overlapping sets queue instead of deadlocking. SQLite has a single writer, so there is
    nothing to do there.
    """
    if connection.vendor != "postgresql":
        return
    ordered = sorted(set(names))
    if not ordered:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(s, 0)) FROM unnest(%s::text[]) AS s "
            "ORDER BY s",
            [ordered],
        )


def chain_head() -> str:
    head = Event.objects.order_by("-seq").values_list("hash", flat=True).first()
    return head or GENESIS_HASH


def stream_versions(streams: Iterable[str]) -> dict[str, int]:
    """Each stream's current version (0 for a stream with no events)."""
    wanted = list(set(streams))
    latest = latest_events(wanted)
    return {s: (latest[s].version if s in latest else 0) for s in wanted}


def latest_events(streams: Iterable[str]) -> dict[str, Event]:
    """The newest event of each stream: one backward index probe per stream, however long.

    A correlated `version = (SELECT max ...)` filter looks the same but makes PostgreSQL
    visit every event of the stream; a LATERAL join with LIMIT 1 reads one index entry.
    """
    wanted = sorted(set(streams))
    if not wanted:
        return {}
    if connection.vendor == "postgresql":
        rows = Event.objects.raw(
            "SELECT e.* FROM unnest(%s::text[]) AS s(name) CROSS JOIN LATERAL ("
            "  SELECT * FROM persistence_event WHERE stream = s.name"
            "  ORDER BY version DESC LIMIT 1"
            ") AS e",
            [wanted],
        )
        return {event.stream: event for event in rows}
    latest: dict[str, Event] = {}
    for stream in wanted:
        event = Event.objects.filter(stream=stream).order_by("-version").first()
        if event is not None:
            latest[stream] = event
    return latest


_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


def dumps_ready(data: Any) -> str:
    """`_dumps` for JSON-safe data, several times faster: the bulk ingest's encoder.

    orjson writes the same text as the standard library (sorted keys, no whitespace) for
    everything JSON-safe data holds, except how strings are escaped: it leaves non-ASCII
    as UTF-8, and DEL (0x7f) as it is, where the standard library writes `\\u007f`. Any
    output with an escape, DEL or non-ASCII is therefore made again by the standard
    library, so the result is always exactly `_dumps(data)`.
    """
    try:
        fast = orjson.dumps(data, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits
        return _dumps(data)
    if fast.isascii() and b"\\" not in fast and b"\x7f" not in fast:
        return fast.decode("ascii")
    return _dumps(data)


# Datetimes and the like are not JSON-safe: pass them on, so that `_dumps` refuses them.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)

# One chained row: (stream, version, type, data, data_json, metadata, metadata_json,
# prev_hash, hash). `data` and `metadata` are JSON-safe.
ChainedRow = tuple[str, int, str, Any, str, Any, str, str, str]


def _chain_start(streams: Iterable[str]) -> tuple[dict[str, int], str]:
    """Take the chain lock; return the streams' versions and the chain's head hash."""
    _lock_chain()
    return stream_versions(streams), chain_head()


def _chained(
    new_events: Iterable[NewEvent], now: datetime, current: dict[str, int], prev_hash: str
) -> Iterator[ChainedRow]:
    """Check each event's expected version and hash it onto the chain, in order.

    The canonical form is put together from the JSON of its parts: the same text
    `canonical_event` makes (its keys are in sorted order already), with each event's data
    encoded once for the hash and the row. Batches share their metadata objects.
    """
    stamp = _dumps(format_timestamp(now))
    metadata_json: dict[int, tuple[Any, Any, str]] = {}
    # Each stream and type is encoded once per batch, not once per event.
    names_json: dict[str, str] = {}
    for new in new_events:
        actual = current.get(new.stream)
        if actual is None:
            raise ValueError(f"stream {new.stream!r} was not named when the append began")
        if new.expected_version != actual:
            raise StreamVersionConflict(new.stream, new.expected_version, actual)
        version = actual + 1
        current[new.stream] = version
        if new.json_ready:
            data, data_json = new.data, dumps_ready(new.data)
        else:
            data = json_safe(new.data)
            data_json = _dumps(data)
        cached = metadata_json.get(id(new.metadata))
        if cached is None or cached[0] is not new.metadata:
            metadata = json_safe(new.metadata)
            cached = (new.metadata, metadata, _dumps(metadata))
            metadata_json[id(new.metadata)] = cached
        _, metadata, meta_json = cached
        stream_json = names_json.get(new.stream) or names_json.setdefault(
            new.stream, _dumps(new.stream)
        )
        type_json = names_json.get(new.type) or names_json.setdefault(new.type, _dumps(new.type))
        canonical = (
            f'{{"created_at":{stamp},"data":{data_json},"metadata":{meta_json},'
            f'"stream":{stream_json},"type":{type_json},"version":{version}}}'
        )
        digest = sha256((prev_hash + canonical).encode("ascii")).hexdigest()
        yield (
            new.stream,
            version,
            new.type,
            data,
            data_json,
            metadata,
            meta_json,
            prev_hash,
            digest,
        )
        prev_hash = digest


def _event(row: ChainedRow, now: datetime) -> Event:
    stream, version, type_, data, _, metadata, _, prev_hash, digest = row
    return Event(
        stream=stream,
        version=version,
        type=type_,
        data=data,
        metadata=metadata,
        prev_hash=prev_hash,
        hash=digest,
        created_at=now,
    )


# Appends inside a caller's transaction take no savepoint of their own (two round trips):
# an error rolls back the caller's whole transaction, which is what every caller wants.
@transaction.atomic(savepoint=False)
def events_append(
    new_events: Sequence[NewEvent], *, created_at: datetime | None = None
) -> list[Event]:
    """Append events to the chain, checking each stream's expected version; return them saved.

    Raises `StreamVersionConflict` and writes nothing when a stream has moved on. Events of
    one stream in one batch carry consecutive expected versions.
    """
    if not new_events:
        return []
    now = created_at or timezone.now()
    current, head = _chain_start(e.stream for e in new_events)
    rows = [_event(row, now) for row in _chained(new_events, now, current, head)]
    return Event.objects.bulk_create(rows, batch_size=2000)


EVENT_COLUMNS = ["stream", "version", "type", "data", "metadata", "prev_hash", "hash", "created_at"]


@transaction.atomic(savepoint=False)
def events_ingest(
    new_events: Iterable[NewEvent], *, streams: Iterable[str], created_at: datetime
) -> list[str]:
    """`events_append` for machine-speed ingest: returns only the events' hashes, in order.

    `new_events` may be a lazy iterable, consumed once; `streams` names every stream its
    events may touch. On PostgreSQL the events are hashed while COPY streams them, so the
    server stores one part while the next is being made; no model instance is made per
    event. An exception raised while consuming `new_events` aborts the whole append.
    """
    current, head = _chain_start(streams)
    rows = _chained(new_events, created_at, current, head)
    if connection.vendor != "postgresql":
        saved = [_event(row, created_at) for row in rows]
        Event.objects.bulk_create(saved, batch_size=2000)
        return [event.hash for event in saved]
    hashes: list[str] = []
    stamp = created_at.isoformat()

    def lines() -> Iterator[str]:
        for stream, version, type_, _, data_json, _, meta_json, prev_hash, digest in rows:
            hashes.append(digest)
            yield (
                f"{copy_text(stream)}\t{version}\t{copy_text(type_)}\t{copy_text(data_json)}\t"
                f"{copy_text(meta_json)}\t{prev_hash}\t{digest}\t{stamp}\n"
            )

    copy_insert_text(Event, EVENT_COLUMNS, lines())
    return hashes


def event_append(
    *,
    stream: str,
    type: str,
    data: Mapping[str, Any],
    expected_version: int,
    metadata: Mapping[str, Any] | None = None,
) -> Event:
    [event] = events_append(
        [
            NewEvent(
                stream=stream,
                type=type,
                data=data,
                expected_version=expected_version,
                metadata=metadata or {},
            )
        ]
    )
    return event


@dataclass(frozen=True)
class StreamTail:
    """What a replay of a stream starts from: its newest snapshot and the events after it."""

    snapshot_version: int  # 0: no snapshot, replay from the first event
    snapshot_state: dict[str, Any] | None
    events: list[tuple[int, dict[str, Any]]]  # (version, data), in version order


def stream_tail(
    stream: str, *, as_of: datetime | None = None, use_snapshot: bool = True
) -> StreamTail:
    """The stream's newest snapshot taken at or before `as_of` (none without `use_snapshot`)
    and its events after that snapshot, up to `as_of`: one query, JSON decoded by orjson.

    A replay is two index range scans; as two ORM queries it spent more time in Django
    than in the database.
    """
    quote = connection.ops.quote_name
    events, snapshots = quote(Event._meta.db_table), quote(Snapshot._meta.db_table)
    until = " AND created_at <= %s" if as_of is not None else ""
    # As the ORM would send it: SQLite compares datetimes as text, in its own format.
    bound: list[Any] = (
        [connection.ops.adapt_datetimefield_value(as_of)] if as_of is not None else []
    )
    if use_snapshot:
        head = (
            f"WITH snap AS (SELECT version, state FROM {snapshots} "  # noqa: S608
            f"WHERE stream = %s{until} ORDER BY version DESC LIMIT 1) "
            "SELECT 0, version, CAST(state AS text) FROM snap UNION ALL "
        )
        after = "COALESCE((SELECT version FROM snap), 0)"
        params = [stream, *bound]
    else:
        head, after, params = "", "0", []
    sql = (
        f"{head}SELECT 1, version, CAST(data AS text) FROM {events} "  # noqa: S608
        f"WHERE stream = %s AND version > {after}{until} ORDER BY 1, 2"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, stream, *bound])
        rows = cursor.fetchall()
    snapshot = rows[0] if rows and rows[0][0] == 0 else None
    return StreamTail(
        snapshot_version=snapshot[1] if snapshot else 0,
        snapshot_state=orjson.loads(snapshot[2]) if snapshot else None,
        events=[(version, orjson.loads(data)) for kind, version, data in rows if kind == 1],
    )


def snapshots_store(snapshots: Sequence[Snapshot]) -> None:
    insert_models(snapshots)


# --- Verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.message}" if self.seq else self.message


@dataclass
class VerifyReport:
    events: int = 0
    streams: int = 0
    snapshots: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_verify(
    *, chunk_size: int = 5000, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Walk the whole chain in `seq` order and every stream's versions; collect every problem.

    - a stored hash that is not the hash of the stored event: the event was altered;
    - a prev_hash that is not the previous event's hash: an event before it was deleted,
      inserted or reordered;
    - a stream version that is not the previous one plus one: an event of that stream is
      missing (or was inserted).
    Deleting the newest events leaves no trace in the chain itself; signed checkpoints of
    the head kept elsewhere catch that (persistence.checkpoints, `verify_ledger --against`).
    """
    report = VerifyReport()
    total = Event.objects.count()
    last_version: dict[str, int] = {}
    prev_hash, prev_seq = GENESIS_HASH, 0
    columns = ("seq", "stream", "version", "type", "data", "metadata", "prev_hash", "hash")
    after = 0
    while True:
        chunk = list(
            Event.objects.filter(seq__gt=after)
            .order_by("seq")
            .values_list(*columns, "created_at")[:chunk_size]
        )
        if not chunk:
            break
        for seq, stream, version, type_, data, metadata, stored_prev, stored, created in chunk:
            if stored_prev != prev_hash:
                where = f"seq {prev_seq}" if prev_seq else "the start of the chain"
                report.problems.append(
                    Problem(
                        seq,
                        f"prev_hash does not match the hash of {where}: an event between "
                        "them was deleted, inserted or reordered",
                    )
                )
            canonical = canonical_event(
                stream=stream,
                version=version,
                type=type_,
                data=data,
                metadata=metadata,
                created_at=created,
            )
            if event_hash(stored_prev, canonical) != stored:
                report.problems.append(Problem(seq, "hash does not match the event: altered"))
            expected = last_version.get(stream, 0) + 1
            if version != expected:
                report.problems.append(
                    Problem(
                        seq,
                        f"stream {stream!r} has version {version} where {expected} was "
                        "expected: an event is missing or was inserted",
                    )
                )
            last_version[stream] = version
            prev_hash, prev_seq = stored, seq
            report.events += 1
        after = chunk[-1][0]
        if progress is not None:
            progress(report.events, total)
    report.streams = len(last_version)
    report.head_hash = prev_hash
    _verify_snapshots(report)
    return report


def _verify_snapshots(report: VerifyReport) -> None:
    # A snapshot records the hash of the event it was taken after; one that no longer
    # matches the chain was taken from, or points at, a history that has been changed.
    anchor = Event.objects.filter(stream=OuterRef("stream"), version=OuterRef("version"))
    snapshots = Snapshot.objects.annotate(
        event_seq=Subquery(anchor.values("seq")[:1]),
        event_hash=Subquery(anchor.values("hash")[:1]),
    ).values_list("stream", "version", "state", "event_seq", "event_hash")
    for stream, version, state, event_seq, anchored in snapshots.iterator(chunk_size=5000):
        report.snapshots += 1
        if anchored is None or state.get("event_hash") != anchored:
            report.problems.append(
                Problem(
                    event_seq,
                    f"snapshot {stream}@{version} does not match the event it was taken after",
                )
            )
