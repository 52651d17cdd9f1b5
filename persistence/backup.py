"""Backup and restore of the whole database as one versioned zip archive.

An archive holds `manifest.json` (format version, app version, the migrations it was made
at, row counts per model, the event log's head), every model's rows as JSON lines in
`data/<app>.<model>.jsonl` (Django's serializers, by primary key, models in dependency
order), and the artifact and cached-result files stored under MEDIA_ROOT in `media/`. Blobs
stored in the database travel inside their rows. The event log goes as it is stored, hashes
and all, so a restored ledger verifies with the same head.

Rows are read in primary-key pages and written as they come, so memory does not grow with the
database; still, every row passes through Python. For big production databases, `pg_dump`
is the tool; this is the portable, versioned JSON save and load of the product's data.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.core.management.color import no_style
from django.core.serializers.base import DeserializedObject
from django.core.serializers.json import DjangoJSONEncoder
from django.core.serializers.jsonl import Serializer as JsonlSerializer
from django.db import connection, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from persistence.checkpoints import ledger_head
from persistence.events import ledger_verify
from persistence.models import Artifact, CachedResult, Event

FORMAT = "tradelab-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAGE = 2000

# Rows that `migrate` makes in every database (content types, permissions) and sessions,
# which are worth nothing in another database. Rows that point at the first two name them by
# natural key, because their ids differ from one database to the next.
SKIPPED = frozenset({"contenttypes.contenttype", "auth.permission", "sessions.session"})
BY_NATURAL_KEY: tuple[type[models.Model], ...] = (ContentType, Permission)

Progress = Callable[[int, int], None]


class BackupError(Exception):
    """An archive that cannot be made or restored; a restore that fails writes nothing."""


# --- Which models, in which order --------------------------------------------------------


def backup_models() -> list[type[models.Model]]:
    """Every model with rows worth keeping, each after the models it refers to.

    Cycles (none today) are broken in app order; foreign keys are checked at commit, so
    the order only has to be right for natural keys and for readers of the archive.
    """
    candidates = [
        model
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy and model._meta.label_lower not in SKIPPED
    ]
    known = set(candidates)

    def depends_on(model: type[models.Model]) -> list[type[models.Model]]:
        relations = [f for f in model._meta.concrete_fields if f.is_relation]
        targets = [f.related_model for f in [*relations, *model._meta.many_to_many]]
        return [t for t in targets if t in known and t is not model]  # type: ignore[misc]

    ordered: list[type[models.Model]] = []
    placed: set[type[models.Model]] = set()
    pending = list(candidates)
    while pending:
        ready = [m for m in pending if all(d in placed for d in depends_on(m))] or pending[:1]
        for model in ready:
            ordered.append(model)
            placed.add(model)
        pending = [m for m in pending if m not in placed]
    return ordered


def _member(model: type[models.Model]) -> str:
    return f"data/{model._meta.label_lower}.jsonl"


# --- Writing an archive ------------------------------------------------------------------


class _ExactEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder keeps milliseconds only; events are hashed with microseconds."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class _RowSerializer(JsonlSerializer):
    """JSON lines with foreign keys as ids, except to the rows `migrate` makes (by natural
    key): looking a natural key up for every row would cost a query per row."""

    def handle_fk_field(self, obj: models.Model, field: Any) -> None:
        self.use_natural_foreign_keys = field.remote_field.model in BY_NATURAL_KEY
        super().handle_fk_field(obj, field)

    def handle_m2m_field(self, obj: models.Model, field: Any) -> None:
        self.use_natural_foreign_keys = field.remote_field.model in BY_NATURAL_KEY
        super().handle_m2m_field(obj, field)


def _natural_joins(model: type[models.Model]) -> list[str]:
    return [
        f.name
        for f in model._meta.concrete_fields
        if f.is_relation and f.related_model in BY_NATURAL_KEY
    ]


def _rows(model: type[models.Model]) -> Iterator[models.Model]:
    """Every row of `model` by primary key, a page at a time.

    Pages by key rather than one server-side cursor, which a connection pooler in
    transaction mode (DISABLE_SERVER_SIDE_CURSORS) would turn into one huge fetch.
    """
    queryset = model._base_manager.order_by("pk")
    joins = _natural_joins(model)
    if joins:
        queryset = queryset.select_related(*joins)
    for m2m in model._meta.many_to_many:
        if _auto_through(m2m) is not None:
            target: type[models.Model] = m2m.related_model  # type: ignore[assignment]
            related = target._base_manager.all()
            if _natural_joins(target):
                related = related.select_related(*_natural_joins(target))
            queryset = queryset.prefetch_related(models.Prefetch(m2m.name, queryset=related))
    last = None
    while True:
        page = list(queryset.filter(pk__gt=last)[:PAGE] if last is not None else queryset[:PAGE])
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].pk


def _payload_files() -> Iterator[str]:
    """The paths under MEDIA_ROOT of every artifact and cached result stored as a file, each
    once: identical bytes share one file."""
    seen: set[str] = set()
    for model in (Artifact, CachedResult):
        paths = model._base_manager.exclude(file_path="").order_by("pk")
        for path in paths.values_list("file_path", flat=True).iterator(chunk_size=PAGE):
            if path not in seen:
                seen.add(path)
                yield path


def _app_version() -> str:
    try:
        return metadata.version("tradelab")
    except metadata.PackageNotFoundError:
        pass
    import tomllib

    try:
        with (Path(settings.BASE_DIR) / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app_label, name in sorted(MigrationRecorder(connection).applied_migrations()):
        applied.setdefault(app_label, []).append(name)
    return applied


class _Counter:
    """Counts the rows a serializer takes, moving the progress bar every page."""

    def __init__(self, update: Progress | None, done: int) -> None:
        self.update, self.done, self.rows = update, done, 0

    def count(self, rows: Iterator[models.Model]) -> Iterator[models.Model]:
        for row in rows:
            yield row
            self.rows += 1
            self.done += 1
            if self.update is not None and self.done % PAGE == 0:
                self.update(self.done, 0)


@dataclass
class BackupSummary:
    path: Path
    rows: dict[str, int]
    files: int
    missing_files: list[str] = field(default_factory=list)
    event_head: dict[str, Any] = field(default_factory=dict)


def backup_write(*, path: Path, progress: Callable[[int], Progress] | None = None) -> BackupSummary:
    """Write the whole database to a zip archive at `path`, as one consistent snapshot.

    `progress` is given the number of rows to write and returns the callback that follows
    them. The archive is written next to `path` and renamed into place when complete.
    A file an artifact names that is missing is listed in the manifest, not fatal: the
    rest is still worth keeping.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    outermost = not connection.in_atomic_block
    try:
        with transaction.atomic():
            if outermost and connection.vendor == "postgresql":
                # One snapshot for every table; other sessions keep writing meanwhile.
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            summary = _write_archive(partial, path, progress)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return summary


def _write_archive(
    partial: Path, path: Path, progress: Callable[[int], Progress] | None
) -> BackupSummary:
    chosen = backup_models()
    totals = {model: model._base_manager.count() for model in chosen}
    update = progress(sum(totals.values())) if progress else None
    head = ledger_head()
    summary = BackupSummary(
        path=path,
        rows={},
        files=0,
        event_head={"seq": head.seq, "hash": head.hash, "events": head.event_count},
    )
    done = 0
    media_root = Path(settings.MEDIA_ROOT)
    with ZipFile(partial, "w", compression=ZIP_DEFLATED, allowZip64=True) as archive:
        for model in chosen:
            counter = _Counter(update, done)
            with (
                archive.open(_member(model), "w", force_zip64=True) as raw,
                io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text,
            ):
                _RowSerializer().serialize(
                    counter.count(_rows(model)), stream=text, cls=_ExactEncoder
                )
            summary.rows[model._meta.label] = counter.rows
            done = counter.done
        if update is not None:
            update(done, 0)
        for relative in _payload_files():
            source = media_root / relative
            if source.is_file():
                archive.write(source, f"media/{relative}")
                summary.files += 1
            else:
                summary.missing_files.append(relative)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": _app_version(),
            "created_at": timezone.now().isoformat(),
            "database_vendor": connection.vendor,
            "migrations": _migrations(),
            "models": [
                {"model": model._meta.label, "file": _member(model), "rows": summary.rows[label]}
                for model in chosen
                for label in [model._meta.label]
            ],
            "event_log": summary.event_head,
            "media": {"files": summary.files, "missing": summary.missing_files},
        }
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return summary


# --- Restoring ---------------------------------------------------------------------------


@dataclass
class RestoreSummary:
    rows: dict[str, int]
    files: int
    event_head: dict[str, Any]


def manifest_read(archive: ZipFile) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise BackupError(f"not a Tradelab backup: no {MANIFEST}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"not a Tradelab backup: format {manifest.get('format')!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"backup format version {manifest.get('format_version')!r}; this version of "
            f"Tradelab restores version {FORMAT_VERSION} (the archive was made by "
            f"{manifest.get('app_version')})"
        )
    return manifest


def _restore_plan(manifest: dict[str, Any]) -> list[tuple[type[models.Model], str, int]]:
    plan = []
    for entry in manifest["models"]:
        try:
            model = apps.get_model(entry["model"])
        except LookupError:
            raise BackupError(
                f"the archive has rows of {entry['model']}, which this version does not know"
            ) from None
        plan.append((model, entry["file"], int(entry["rows"])))
    return plan


def _refuse_unless_migrated_alike(manifest: dict[str, Any]) -> None:
    ours, theirs = _migrations(), manifest["migrations"]
    if ours == theirs:
        return
    differences = []
    for app_label in sorted(set(ours) | set(theirs)):
        here, there = ours.get(app_label, []), theirs.get(app_label, [])
        if here != there:
            differences.append(
                f"{app_label}: archive at {there[-1] if there else 'nothing'}, "
                f"database at {here[-1] if here else 'nothing'}"
            )
    raise BackupError(
        "the database is not migrated as the archive was made ("
        + "; ".join(differences)
        + "): migrate it to the archive's state (`manage.py migrate <app> <migration>`), "
        "restore, then migrate forward"
    )


def _refuse_unless_empty() -> None:
    occupied = [m._meta.label for m in backup_models() if m._base_manager.exists()]
    if occupied:
        shown = ", ".join(occupied[:8]) + (" and more" if len(occupied) > 8 else "")
        raise BackupError(
            f"the database is not empty ({shown} have rows): restore only into an empty, "
            "migrated database"
        )


def _insert_raw(model: type[models.Model], objects: Sequence[models.Model]) -> None:
    """Insert rows exactly as archived, in multi-row INSERTs.

    `bulk_create` would restamp `auto_now` fields with the time of the restore; a raw insert
    (what `loaddata` does one row at a time with `save_base(raw=True)`) keeps every value.
    It sends no signals either, so django-auditlog records nothing: the audit entries come
    from the archive.
    """
    fields = list(model._meta.local_concrete_fields)
    size = max(1, connection.ops.bulk_batch_size(fields, objects))
    for start in range(0, len(objects), size):
        model._base_manager._insert(  # type: ignore[attr-defined]
            objects[start : start + size], fields=fields, using=connection.alias, raw=True
        )


def _auto_through(m2m: Any) -> type[models.Model] | None:
    """The table Django made for a many-to-many field (its rows travel with the model's);
    None for a `through` model of our own, which is in the archive by itself."""
    through: type[models.Model] = m2m.remote_field.through
    return through if through._meta.auto_created else None


def _insert_m2m(model: type[models.Model], loaded: Sequence[DeserializedObject]) -> None:
    for m2m in model._meta.many_to_many:
        through = _auto_through(m2m)
        if through is None:
            continue
        source = through._meta.get_field(m2m.m2m_field_name()).attname  # type: ignore[union-attr]
        target = through._meta.get_field(m2m.m2m_reverse_field_name()).attname  # type: ignore[union-attr]
        links = [
            through(**{source: row.object.pk, target: pk})
            for row in loaded
            for pk in (row.m2m_data or {}).get(m2m.name, [])
        ]
        through._base_manager.bulk_create(links, batch_size=1000)


def _load_model(
    archive: ZipFile, model: type[models.Model], member: str, advance: Callable[[int], None]
) -> int:
    loaded = 0
    with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8") as text:
        batch: list[DeserializedObject] = []
        for row in serializers.deserialize("jsonl", text):
            if type(row.object) is not model:
                raise BackupError(f"{member} holds a row of {row.object._meta.label}")
            batch.append(row)
            if len(batch) == PAGE:
                _flush(model, batch)
                loaded += len(batch)
                advance(len(batch))
                batch = []
        if batch:
            _flush(model, batch)
            loaded += len(batch)
            advance(len(batch))
    return loaded


def _flush(model: type[models.Model], batch: Sequence[DeserializedObject]) -> None:
    _insert_raw(model, [row.object for row in batch])
    _insert_m2m(model, batch)


def _check_events(archive: ZipFile, manifest: dict[str, Any]) -> None:
    """The restored events are the archive's, hash for hash, and the chain verifies."""
    member = _member(Event)
    stored = Event.objects.order_by("seq").values_list("seq", "hash").iterator(chunk_size=PAGE)
    with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8") as text:
        archived = ((row["pk"], row["fields"]["hash"]) for row in map(json.loads, text))
        for expected, actual in zip(archived, stored, strict=True):
            if expected != actual:
                raise BackupError(
                    f"event seq {expected[0]} was restored as seq {actual[0]} with hash "
                    f"{actual[1]}, not {expected[1]}"
                )
    head = ledger_head()
    wanted = manifest["event_log"]
    if (head.seq, head.hash, head.event_count) != (wanted["seq"], wanted["hash"], wanted["events"]):
        raise BackupError(
            f"the restored event log ends at seq {head.seq} ({head.event_count} events, hash "
            f"{head.hash}); the archive's ends at seq {wanted['seq']} ({wanted['events']} "
            f"events, hash {wanted['hash']})"
        )
    report = ledger_verify()
    if not report.ok:
        shown = "; ".join(str(p) for p in report.problems[:5])
        raise BackupError(f"the restored ledger does not verify: {shown}")


def _place_files(archive: ZipFile, created: list[Path]) -> int:
    """Copy the archive's media files under MEDIA_ROOT; remember the ones made, so that a
    failed restore can take them away again."""
    root = Path(settings.MEDIA_ROOT).resolve()
    placed = 0
    for info in archive.infolist():
        if not info.filename.startswith("media/") or info.is_dir():
            continue
        target = (root / info.filename.removeprefix("media/")).resolve()
        if root not in target.parents:
            raise BackupError(f"{info.filename} would be written outside MEDIA_ROOT")
        existed = target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, target.open("wb") as destination:
            shutil.copyfileobj(source, destination)
        if not existed:
            created.append(target)
        placed += 1
    return placed


def backup_restore(
    *, path: Path, progress: Callable[[int], Progress] | None = None
) -> RestoreSummary:
    """Load an archive into an empty database, in one transaction, and prove it arrived whole.

    Refuses, writing nothing, a database with any row in it or migrated otherwise than the
    archive. Then it inserts every row as archived, resets the id sequences, checks foreign
    keys, row counts per model and every event's hash against the archive, and that the
    ledger verifies; any failure rolls the whole restore back (and removes the media files
    it created). Events are only inserted, which the append-only trigger allows: nothing is
    bypassed.
    """
    with ZipFile(path) as archive:
        manifest = manifest_read(archive)
        plan = _restore_plan(manifest)
        _refuse_unless_migrated_alike(manifest)
        _refuse_unless_empty()
        update = progress(sum(rows for _, _, rows in plan)) if progress else None
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if update is not None:
                update(done, 0)

        created: list[Path] = []
        try:
            with transaction.atomic():
                loaded = {
                    model._meta.label: _load_model(archive, model, member, advance)
                    for model, member, _ in plan
                }
                restored = [model for model, _, _ in plan]
                connection.check_constraints(table_names=[m._meta.db_table for m in restored])
                _reset_sequences(restored)
                wrong = {
                    label: (loaded[label], rows)
                    for label, rows in ((m._meta.label, r) for m, _, r in plan)
                    if loaded[label] != rows or apps.get_model(label)._base_manager.count() != rows
                }
                if wrong:
                    shown = ", ".join(f"{k}: {v[0]} of {v[1]}" for k, v in wrong.items())
                    raise BackupError(f"row counts do not match the manifest: {shown}")
                _check_events(archive, manifest)
                files = _place_files(archive, created)
        except BaseException:
            for made in created:
                made.unlink(missing_ok=True)
            raise
    return RestoreSummary(rows=loaded, files=files, event_head=manifest["event_log"])


def _reset_sequences(restored: Sequence[type[models.Model]]) -> None:
    """Set each id sequence past the restored ids, so that new rows do not collide.

    SQLite's AUTOINCREMENT follows explicit ids by itself; PostgreSQL's sequences do not.
    """
    throughs = [_auto_through(m2m) for model in restored for m2m in model._meta.many_to_many]
    with_through = list(restored) + [through for through in throughs if through is not None]
    statements = connection.ops.sequence_reset_sql(no_style(), with_through)
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
