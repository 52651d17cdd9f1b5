"""Writes to the result cache and the artifact store.

Payloads live either in the row's blob column (``ARTIFACT_STORE=db``) or in a file under
``MEDIA_ROOT`` (``ARTIFACT_STORE=file``); callers never see the difference. One params hash
means one result, so storing a hash that is already stored keeps the first copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from persistence.hashing import canonical_json
from persistence.hashing import params_hash as hash_of
from persistence.models import Artifact, CachedResult, ParamSet, StorageFormat

logger = logging.getLogger(__name__)

STORES = ("db", "file")


def artifact_store() -> str:
    store = settings.ARTIFACT_STORE
    if store not in STORES:
        raise ImproperlyConfigured(f"ARTIFACT_STORE must be one of {STORES}, not {store!r}")
    return store


def _media_path(relative: str) -> Path:
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative).resolve()
    # Paths come from hashes and our own names, but a stored row must never point outside.
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside MEDIA_ROOT")
    return path


def _write_file(relative: str, content: bytes) -> str:
    path = _media_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees half a file, even from another process.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return relative


def _delete_file_on_commit(relative: str) -> None:
    if relative:
        transaction.on_commit(lambda: _media_path(relative).unlink(missing_ok=True))


def payload_read(*, blob: bytes | memoryview | None, file_path: str) -> bytes:
    """The bytes of a cached result or artifact, from whichever store holds them."""
    if blob is not None:
        return bytes(blob)
    return _media_path(file_path).read_bytes()


# --- The result cache -----------------------------------------------------------------


@transaction.atomic
def params_record(*, payload: dict[str, object]) -> str:
    """The params hash of `payload`, remembering its canonical JSON for anyone debugging a key."""
    digest = hash_of(payload)
    ParamSet.objects.get_or_create(
        params_hash=digest, defaults={"canonical_json": canonical_json(payload)}
    )
    return digest


@transaction.atomic
def cache_lookup(*, kind: str, params_hash: str) -> CachedResult | None:
    """The cached result for (kind, params_hash), counting the hit; None on a miss."""
    entry = CachedResult.objects.filter(kind=kind, params_hash=params_hash).first()
    if entry is None:
        return None
    now = timezone.now()
    # F() so concurrent hits on one entry are all counted.
    CachedResult.objects.filter(pk=entry.pk).update(hit_count=F("hit_count") + 1, last_hit_at=now)
    entry.hit_count += 1
    entry.last_hit_at = now
    return entry


def cache_peek(*, kind: str, params_hash: str) -> CachedResult | None:
    """The cached result for (kind, params_hash) without counting a hit: a plain read.

    For readers that are part of work already counted once, such as the chunks of a sweep
    whose launch looked the candles up; on SQLite a counted hit is a write, and writes from
    parallel workers queue for the one database lock.
    """
    return CachedResult.objects.filter(kind=kind, params_hash=params_hash).first()


def cache_peek_content(*, kind: str, params_hash: str) -> bytes | None:
    """The bytes cached for (kind, params_hash), or None: cache_peek for a caller that wants
    nothing else of the entry (two columns read, not the entry's every one)."""
    found = (
        CachedResult.objects.filter(kind=kind, params_hash=params_hash)
        .values_list("blob", "file_path")
        .first()
    )
    return None if found is None else payload_read(blob=found[0], file_path=found[1])


@transaction.atomic
def cache_lookup_many(*, kinds: list[str], params_hashes: list[str]) -> dict[str, CachedResult]:
    """Cached results for many hashes at once (first kind in `kinds` wins), hits counted."""
    found: dict[str, CachedResult] = {}
    if not params_hashes:
        return found
    entries = CachedResult.objects.filter(kind__in=kinds, params_hash__in=set(params_hashes))
    rank = {kind: position for position, kind in enumerate(kinds)}
    for entry in sorted(entries, key=lambda e: rank[e.kind]):
        found.setdefault(entry.params_hash, entry)
    if found:
        CachedResult.objects.filter(pk__in=[e.pk for e in found.values()]).update(
            hit_count=F("hit_count") + 1, last_hit_at=timezone.now()
        )
    return found


@transaction.atomic
def cache_store(
    *,
    kind: str,
    params_hash: str,
    content: bytes,
    format: str,
    row_count: int = 0,
) -> CachedResult:
    """Store `content` as the result of (kind, params_hash), or return what is already there."""
    existing = CachedResult.objects.filter(kind=kind, params_hash=params_hash).first()
    if existing is not None:
        return existing
    entry = CachedResult(
        kind=kind,
        params_hash=params_hash,
        format=format,
        row_count=row_count,
        size_bytes=len(content),
    )
    if artifact_store() == "db":
        entry.blob = content
    else:
        # The path is a function of the key, so a racing writer writes the same bytes there.
        entry.file_path = _write_file(
            f"cache/{kind}/{params_hash[:2]}/{params_hash}.{format}", content
        )
    entry.full_clean(exclude=["blob"])
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        # Another process stored the same key between our check and our insert.
        return CachedResult.objects.get(kind=kind, params_hash=params_hash)
    return entry


# Hashes per `IN (...)` query, well below SQLite's limit on bound parameters.
LOOKUP_BATCH = 500


def cache_store_many(*, kind: str, contents: dict[str, bytes], format: str) -> None:
    """Store many results of one kind at once ({params_hash: content}).

    Hashes already stored keep their first copy, as with cache_store: one bulk insert that
    skips the keys it conflicts on. With files, one existence query per LOOKUP_BATCH
    hashes comes first, so that no file is written for a key stored already. In the
    caller's transaction when there is one (no savepoint: nothing here needs rolling back
    alone), else in one of its own.
    """
    if format not in StorageFormat.values:
        raise ValueError(f"unknown storage format {format!r}")
    if not contents:
        return
    for params_hash in contents:
        if len(params_hash) != 64:
            raise ValueError(f"{params_hash!r} is not a params hash")
    with transaction.atomic(savepoint=False):
        store = artifact_store()
        existing: set[str] = set()
        if store != "db":
            hashes = list(contents)
            for i in range(0, len(hashes), LOOKUP_BATCH):
                existing.update(
                    CachedResult.objects.filter(
                        kind=kind, params_hash__in=hashes[i : i + LOOKUP_BATCH]
                    ).values_list("params_hash", flat=True)
                )
        entries = []
        for params_hash, content in contents.items():
            if params_hash in existing:
                continue
            entry = CachedResult(
                kind=kind, params_hash=params_hash, format=format, size_bytes=len(content)
            )
            if store == "db":
                entry.blob = content
            else:
                entry.file_path = _write_file(
                    f"cache/{kind}/{params_hash[:2]}/{params_hash}.{format}", content
                )
            entries.append(entry)
        # A racing writer may have stored some of the same keys since the check: theirs stay.
        CachedResult.objects.bulk_create(entries, batch_size=LOOKUP_BATCH, ignore_conflicts=True)


@transaction.atomic
def cache_evict(*, entry: CachedResult) -> None:
    """Forget one cached result, e.g. because what it points at no longer exists."""
    CachedResult.objects.filter(pk=entry.pk).delete()
    _delete_file_on_commit(entry.file_path)


@dataclass
class PurgeReport:
    entries: int = 0
    size_bytes: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)


@transaction.atomic
def cache_purge(*, older_than: timedelta, dry_run: bool = False) -> PurgeReport:
    """Delete cached results neither stored nor hit within `older_than`; report what it frees.

    Only the cache is purged: artifacts that runs point at are results, not cache.
    """
    cutoff = timezone.now() - older_than
    stale = CachedResult.objects.annotate(last_used=Coalesce("last_hit_at", "created_at")).filter(
        Q(last_used__lt=cutoff)
    )
    report = PurgeReport()
    rows = list(stale.values_list("pk", "kind", "size_bytes", "file_path"))
    for _pk, kind, size, _path in rows:
        per_kind = report.by_kind.setdefault(kind, {"entries": 0, "size_bytes": 0})
        per_kind["entries"] += 1
        per_kind["size_bytes"] += size
        report.entries += 1
        report.size_bytes += size
    if not dry_run and rows:
        CachedResult.objects.filter(pk__in=[row[0] for row in rows]).delete()
        for *_rest, path in rows:
            _delete_file_on_commit(path)
    return report


# --- Artifacts ------------------------------------------------------------------------


@transaction.atomic
def artifact_save(
    *,
    name: str,
    mime_type: str,
    content: bytes,
    owner: User | None = None,
    run_id: int | None = None,
    params_hash: str = "",
) -> Artifact:
    """Store a file produced for a run or for a params hash (shared by every run with it)."""
    sha256 = hashlib.sha256(content).hexdigest()
    artifact = Artifact(
        owner=owner,
        run_id=run_id,
        params_hash=params_hash,
        name=name,
        mime_type=mime_type,
        size_bytes=len(content),
        sha256=sha256,
    )
    if artifact_store() == "db":
        artifact.blob = content
    else:
        # Content-addressed: identical bytes share one file.
        artifact.file_path = _write_file(f"artifacts/{sha256[:2]}/{sha256}/{name}", content)
    artifact.full_clean(exclude=["blob", "owner", "run"])
    artifact.save()
    return artifact


def artifact_load(*, artifact: Artifact) -> bytes:
    """The artifact's bytes, checked against the SHA-256 recorded when it was saved."""
    content = payload_read(blob=artifact.blob, file_path=artifact.file_path)
    if hashlib.sha256(content).hexdigest() != artifact.sha256:
        raise OSError(f"artifact {artifact.pk} ({artifact.name}) is corrupt: checksum mismatch")
    return content


def cache_load(*, entry: CachedResult) -> bytes:
    return payload_read(blob=entry.blob, file_path=entry.file_path)


__all__ = [
    "STORES",
    "PurgeReport",
    "StorageFormat",
    "artifact_load",
    "artifact_save",
    "artifact_store",
    "cache_evict",
    "cache_load",
    "cache_lookup",
    "cache_lookup_many",
    "cache_peek",
    "cache_peek_content",
    "cache_purge",
    "cache_store",
    "cache_store_many",
    "params_record",
    "payload_read",
]
