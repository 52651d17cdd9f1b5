"""Signed checkpoints of the event chain's head, kept by witnesses outside the event table.

The chain proves every event up to its head, but not that the head is the newest event:
deleting the newest events leaves a shorter chain that verifies. A checkpoint records the
head's sequence number and hash and how many events lead up to it, signed with HMAC-SHA256,
and is appended to every witness: a JSON-lines file (`LEDGER_CHECKPOINT_PATH`) and, when
`LEDGER_CHECKPOINT_DATABASE_URL` is set, a table in a second database. `checkpoints_verify`
holds the ledger against them: a checkpointed event that is gone means the ledger was
truncated (or events were deleted), one with another hash means history was rewritten.

The key is `LEDGER_CHECKPOINT_KEY`. Unset, it is derived from SECRET_KEY with a purpose
string of its own, so it is not SECRET_KEY itself, but it changes when SECRET_KEY does (the
keys derived from SECRET_KEY_FALLBACKS keep verifying old checkpoints).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from persistence.events import GENESIS_HASH, Problem, format_timestamp
from persistence.models import Checkpoint, Event

FORMAT = 1
# Part of what is hashed, so a key derived for checkpoints is useless for anything else
# SECRET_KEY signs, and the other way round.
KEY_PURPOSE = b"tradelab.persistence.checkpoints: ledger checkpoint signing key, v1"
WITNESS_TABLE = "tradelab_ledger_checkpoint"


class CheckpointRefused(Exception):
    """The ledger no longer holds what the newest checkpoint signed; nothing was written."""


# --- Keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    key_id: str  # a fingerprint of the secret, recorded with each checkpoint it signs
    secret: bytes = field(repr=False)
    derived: bool  # from SECRET_KEY, because LEDGER_CHECKPOINT_KEY is unset


def _key(secret: bytes, *, derived: bool) -> SigningKey:
    fingerprint = hashlib.sha256(b"tradelab ledger checkpoint key id\0" + secret).hexdigest()
    return SigningKey(key_id=fingerprint[:16], secret=secret, derived=derived)


def _derived(secret_key: str) -> SigningKey:
    return _key(hmac.new(secret_key.encode(), KEY_PURPOSE, hashlib.sha256).digest(), derived=True)


def signing_key() -> SigningKey:
    """The key new checkpoints are signed with."""
    configured: str = settings.LEDGER_CHECKPOINT_KEY
    if configured:
        return _key(configured.encode(), derived=False)
    return _derived(settings.SECRET_KEY)


def verification_keys() -> dict[str, SigningKey]:
    """Every key a checkpoint may have been signed with, by key id: the signing key and its
    fallbacks (LEDGER_CHECKPOINT_KEY_FALLBACKS, or the keys derived from SECRET_KEY_FALLBACKS
    when the key is derived)."""
    current = signing_key()
    if current.derived:
        older = [_derived(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    else:
        fallbacks: list[str] = settings.LEDGER_CHECKPOINT_KEY_FALLBACKS
        older = [_key(old.encode(), derived=False) for old in fallbacks]
    keys: dict[str, SigningKey] = {}
    for key in [current, *older]:
        keys.setdefault(key.key_id, key)
    return keys


# --- Checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerHead:
    seq: int  # 0 for an empty ledger
    hash: str
    event_count: int


def ledger_head() -> LedgerHead:
    """The chain's head and how many events lead up to it, as one consistent reading.

    Appends commit in `seq` order (persistence.events), so counting up to the head's seq
    counts exactly the events the head's hash covers, whatever commits meanwhile.
    """
    head = Event.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None:
        return LedgerHead(seq=0, hash=GENESIS_HASH, event_count=0)
    seq, digest = head
    return LedgerHead(seq=seq, hash=digest, event_count=Event.objects.filter(seq__lte=seq).count())


_FIELDS = ("seq", "head_hash", "event_count", "created_at", "key_id", "signature")


@dataclass(frozen=True)
class SignedCheckpoint:
    """One checkpoint as the witnesses keep it: a JSON object on one line."""

    seq: int
    head_hash: str
    event_count: int
    created_at: str  # UTC, ISO 8601 with microseconds; kept as signed
    key_id: str
    signature: str

    def signed_text(self) -> str:
        """What the signature covers: every field but the signature, as canonical JSON."""
        fields = {name: value for name, value in asdict(self).items() if name != "signature"}
        return json.dumps({"format": FORMAT, **fields}, sort_keys=True, separators=(",", ":"))

    def signature_for(self, key: SigningKey) -> str:
        return hmac.new(key.secret, self.signed_text().encode(), hashlib.sha256).hexdigest()

    def to_line(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"))

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    @classmethod
    def parse(cls, text: str) -> SignedCheckpoint:
        """A checkpoint from its JSON; ValueError naming what is wrong with anything else."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw.get("format") != FORMAT:
            raise ValueError(f"unknown format {raw.get('format')!r}")
        missing = [name for name in _FIELDS if name not in raw]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        kinds = {"seq": int, "event_count": int}
        for name in _FIELDS:
            value = raw[name]
            wanted = kinds.get(name, str)
            if type(value) is not wanted:
                raise ValueError(f"{name} is not a{'n int' if wanted is int else ' string'}")
        checkpoint = cls(**{name: raw[name] for name in _FIELDS})
        try:
            checkpoint.created  # noqa: B018  (a date that does not parse is a bad line)
        except ValueError:
            raise ValueError("created_at is not an ISO 8601 timestamp") from None
        return checkpoint


def checkpoint_sign(head: LedgerHead, *, at: datetime, key: SigningKey) -> SignedCheckpoint:
    unsigned = SignedCheckpoint(
        seq=head.seq,
        head_hash=head.hash,
        event_count=head.event_count,
        created_at=format_timestamp(at),
        key_id=key.key_id,
        signature="",
    )
    return replace(unsigned, signature=unsigned.signature_for(key))


def signature_problem(checkpoint: SignedCheckpoint, keys: dict[str, SigningKey]) -> str | None:
    """Why the checkpoint's signature is not to be trusted; None when it is good."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        return (
            f"is signed with an unknown key {checkpoint.key_id!r}: forged, or signed with a "
            "key that is not configured (LEDGER_CHECKPOINT_KEY and its fallbacks)"
        )
    if not hmac.compare_digest(checkpoint.signature_for(key), checkpoint.signature):
        return "has a bad signature: the checkpoint was altered or forged"
    return None


# --- Witnesses ---------------------------------------------------------------------------


class Witness(Protocol):
    """Somewhere outside the event table that keeps every checkpoint, in order."""

    name: str

    def append(self, line: str) -> None: ...

    def lines(self) -> Iterator[tuple[str, str]]:
        """(where, text) of every line, oldest first; `where` names the line for people."""
        ...

    def last_line(self) -> str | None: ...


class FileWitness:
    """An append-only JSON-lines file. Each line is one write() with O_APPEND, so two
    writers never interleave, and is flushed to disk before the checkpoint counts as taken."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = str(self.path)

    def append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (line + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def lines(self) -> Iterator[tuple[str, str]]:
        if not self.path.exists():
            raise FileNotFoundError(f"no checkpoint file at {self.path}")
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield f"{self.path}:{number}", line.strip()

    def last_line(self) -> str | None:
        """The file's last line, read from its end: the file grows for ever."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            tail = b""
            while position > 0:
                step = min(4096, position)
                position -= step
                handle.seek(position)
                tail = handle.read(step) + tail
                body = tail.rstrip(b"\r\n")
                if b"\n" in body:
                    return body.rsplit(b"\n", 1)[1].decode("utf-8", "replace").strip() or None
            return tail.strip().decode("utf-8", "replace") or None


class DatabaseWitness:
    """A table in a second database (PostgreSQL or SQLite), given by URL. Its role needs only
    INSERT and SELECT on the table once it exists."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        if self.scheme not in {"postgres", "postgresql", "sqlite"}:
            raise ValueError(f"a checkpoint database URL is postgres:// or sqlite://, not {url!r}")
        self.name = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"  # no password
        # sqlite:///relative/path or sqlite:////absolute/path, as dj-database-url reads them.
        self._sqlite_path = unquote(parts.path[1:]) if self.scheme == "sqlite" else ""

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.scheme == "sqlite":
            with closing(sqlite3.connect(self._sqlite_path, isolation_level=None)) as sqlite:
                return sqlite.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as postgres:
            cursor = postgres.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def _table_exists(self) -> bool:
        if self.scheme == "sqlite":
            found = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s"
        else:
            found = "SELECT to_regclass(%s)"
        rows = self._execute(found, [WITNESS_TABLE])
        return bool(rows and rows[0][0])

    def append(self, line: str) -> None:
        # Made only when missing: the witness's role need not be allowed to create tables.
        if not self._table_exists():
            key = "INTEGER PRIMARY KEY" if self.scheme == "sqlite" else "BIGSERIAL PRIMARY KEY"
            self._execute(
                f"CREATE TABLE IF NOT EXISTS {WITNESS_TABLE} "
                f"(id {key}, seq BIGINT NOT NULL, line TEXT NOT NULL)"
            )
        seq = json.loads(line)["seq"]
        self._execute(f"INSERT INTO {WITNESS_TABLE} (seq, line) VALUES (%s, %s)", [seq, line])  # noqa: S608

    def lines(self) -> Iterator[tuple[str, str]]:
        if not self._table_exists():
            return
        rows = self._execute(f"SELECT id, line FROM {WITNESS_TABLE} ORDER BY id")  # noqa: S608
        for row_id, line in rows:
            yield f"{self.name} {WITNESS_TABLE} row {row_id}", line

    def last_line(self) -> str | None:
        if not self._table_exists():  # it is made with the first checkpoint
            return None
        rows = self._execute(f"SELECT line FROM {WITNESS_TABLE} ORDER BY id DESC LIMIT 1")  # noqa: S608
        return rows[0][0] if rows else None


class InlineWitness:
    """One checkpoint's JSON given on the command line: read-only."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.name = "the checkpoint given"

    def append(self, line: str) -> None:
        raise TypeError("a checkpoint given on the command line cannot be written to")

    def lines(self) -> Iterator[tuple[str, str]]:
        yield self.name, self.text

    def last_line(self) -> str | None:
        return self.text


def witness_for(spec: str) -> Witness:
    """A witness from what an operator typed: a database URL, one checkpoint's JSON, or a
    file path."""
    if spec.lstrip().startswith("{"):
        return InlineWitness(spec)
    if urlsplit(spec).scheme in {"postgres", "postgresql", "sqlite"}:
        return DatabaseWitness(spec)
    return FileWitness(spec)


def witnesses_configured() -> list[Witness]:
    """The file at LEDGER_CHECKPOINT_PATH, and the LEDGER_CHECKPOINT_DATABASE_URL table."""
    witnesses: list[Witness] = [FileWitness(settings.LEDGER_CHECKPOINT_PATH)]
    if settings.LEDGER_CHECKPOINT_DATABASE_URL:
        witnesses.append(DatabaseWitness(settings.LEDGER_CHECKPOINT_DATABASE_URL))
    return witnesses


# --- Writing -----------------------------------------------------------------------------


@transaction.atomic
def checkpoint_write(
    *, witnesses: Sequence[Witness] | None = None, at: datetime | None = None
) -> Checkpoint:
    """Sign the chain's head, append it to every witness and keep a local record of it.

    Refuses with `CheckpointRefused`, writing nothing, when a witness's newest checkpoint
    signed an event the ledger no longer holds as it was: signing the shorter head would
    bury the evidence under a newer line. (After restoring an older backup on purpose, that
    is the truth too: start a new witness file, and keep the old one.)
    """
    targets = list(witnesses) if witnesses is not None else witnesses_configured()
    key = signing_key()
    for witness in targets:
        last = witness.last_line()
        if last is None:
            continue
        try:
            newest = SignedCheckpoint.parse(last)
        except ValueError:
            continue  # verify_ledger --against reports the bad line; it proves nothing
        if signature_problem(newest, verification_keys()) is None:
            problems = ledger_against([newest])
            if problems:
                raise CheckpointRefused(f"{witness.name}: {problems[0]}")
    signed = checkpoint_sign(ledger_head(), at=at or timezone.now(), key=key)
    record = Checkpoint.objects.create(
        seq=signed.seq,
        head_hash=signed.head_hash,
        event_count=signed.event_count,
        created_at=signed.created,
        key_id=signed.key_id,
        signature=signed.signature,
    )
    # Last, so that a witness that cannot be written rolls the record back with it.
    for witness in targets:
        witness.append(signed.to_line())
    return record


def checkpoint_latest() -> Checkpoint | None:
    """The newest checkpoint written from this database (its local record), or None."""
    return Checkpoint.objects.order_by("-created_at", "-id").first()


def checkpoint_age_seconds(*, now: datetime | None = None) -> float | None:
    """Seconds since the newest checkpoint was written; None when there is none."""
    latest = checkpoint_latest()
    if latest is None:
        return None
    return ((now or timezone.now()) - latest.created_at).total_seconds()


# --- Verifying ---------------------------------------------------------------------------


@dataclass
class CheckpointReport:
    checkpoints: int = 0  # lines read
    signed: int = 0  # of them with a good signature, held against the ledger
    newest: SignedCheckpoint | None = None  # the good one with the highest seq
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoints > 0


def _chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def ledger_against(checkpoints: Iterable[SignedCheckpoint]) -> list[Problem]:
    """What the ledger lacks or has changed, compared with checkpoints already trusted.

    The chain links each event to all before it, so an event that still has its
    checkpointed hash (with `ledger_verify` passing) vouches for its whole history; the
    checks are therefore one lookup per checkpoint, not a walk.
    """
    trusted = sorted(checkpoints, key=lambda c: c.seq)
    wanted = sorted({c.seq for c in trusted if c.seq > 0})
    stored: dict[int, str] = {}
    for chunk in _chunks(wanted, 1000):
        stored.update(Event.objects.filter(seq__in=chunk).values_list("seq", "hash"))
    head_seq = Event.objects.aggregate(head=Max("seq"))["head"] or 0
    problems: list[Problem] = []
    gone: dict[int, list[SignedCheckpoint]] = {}  # by the last seq kept before them
    for checkpoint in trusted:
        if checkpoint.seq == 0:
            continue  # the empty ledger: nothing to lose
        actual = stored.get(checkpoint.seq)
        if actual is None:
            kept = Event.objects.filter(seq__lt=checkpoint.seq).aggregate(m=Max("seq"))["m"]
            gone.setdefault(kept or 0, []).append(checkpoint)
        elif actual != checkpoint.head_hash:
            problems.append(
                Problem(
                    checkpoint.seq,
                    f"history was rewritten: this event's hash is {actual}, but the "
                    f"checkpoint of {checkpoint.created_at} signed {checkpoint.head_hash}",
                )
            )
    for kept, lost in sorted(gone.items()):
        first_missing, newest = kept + 1, lost[-1]
        if head_seq < newest.seq:
            what = f"the ledger was truncated: it ends at seq {head_seq}"
        else:
            what = f"events were deleted: seq {newest.seq} is gone"
        problems.append(
            Problem(
                first_missing,
                f"{what}, but the checkpoint of {newest.created_at} signed seq {newest.seq} "
                f"({newest.event_count} events); first missing sequence number: {first_missing}",
            )
        )
    if not problems and trusted and trusted[-1].seq > 0:
        newest = trusted[-1]
        count = Event.objects.filter(seq__lte=newest.seq).count()
        if count != newest.event_count:
            problems.append(
                Problem(
                    None,
                    f"{count} events up to seq {newest.seq}, where the checkpoint of "
                    f"{newest.created_at} counted {newest.event_count}: events were deleted or "
                    "inserted before it",
                )
            )
    return problems


def checkpoints_verify(witnesses: Sequence[Witness]) -> CheckpointReport:
    """Check every checkpoint's signature, then hold the ledger against the good ones.

    A line that is not a checkpoint, or whose signature fails, is a problem of its own: a
    witness is append-only, so anything in it that does not verify was tampered with.
    """
    report = CheckpointReport()
    keys = verification_keys()
    trusted: list[SignedCheckpoint] = []
    for witness in witnesses:
        for where, text in witness.lines():
            report.checkpoints += 1
            try:
                checkpoint = SignedCheckpoint.parse(text)
            except ValueError as exc:
                report.problems.append(Problem(None, f"{where} is not a checkpoint: {exc}"))
                continue
            bad = signature_problem(checkpoint, keys)
            if bad is not None:
                report.problems.append(
                    Problem(None, f"checkpoint {where} (seq {checkpoint.seq}) {bad}")
                )
                continue
            trusted.append(checkpoint)
    if report.checkpoints == 0:
        names = ", ".join(w.name for w in witnesses)
        report.problems.append(Problem(None, f"no checkpoints in {names}"))
    report.signed = len(trusted)
    report.newest = max(trusted, key=lambda c: (c.seq, c.created_at), default=None)
    report.problems.extend(ledger_against(trusted))
    return report
