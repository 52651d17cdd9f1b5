"""Bulk writes for ingest paths: COPY, and multi-row UPDATE, on PostgreSQL.

Django's `bulk_create` and `bulk_update` are portable but slow for machine-speed ingest:
the first sends rows as INSERT parameters, the second builds one CASE WHEN per row and
field. These helpers do the same on PostgreSQL with COPY and
`UPDATE ... FROM jsonb_to_recordset(...)`. The COPY helpers and `reserve_ids` are
PostgreSQL-only (callers choose `bulk_create` elsewhere); `insert_models` and
`bulk_update_rows` fall back to Django's `bulk_create` and `bulk_update` by themselves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection
from django.db.models import Field, JSONField, Model

# Below this many rows, INSERT is as fast and returns primary keys. (Django's bulk_create
# quotes every value of every row in Python: ~25 us a row of a dozen fields, against a
# few us for a COPY line plus one round trip for the ids.)
COPY_THRESHOLD = 50


def _copy_statement(model: type[Model], columns: Sequence[str]) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(
        connection.ops.quote_name(model._meta.get_field(c).column)  # type: ignore[union-attr,arg-type]
        for c in columns
    )
    return f"COPY {table} ({names}) FROM STDIN"


def copy_insert(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows with PostgreSQL's COPY, many times faster than INSERT for bulk ingest.

    Rows go in in order, so serial primary keys follow the order of `rows`.
    """
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # the psycopg cursor: Django's wrapper has no COPY
        with raw.copy(_copy_statement(model, columns)) as copy:
            for row in rows:
                copy.write_row(row)


def reserve_ids(model: type[Model], count: int) -> list[int]:
    """Take `count` primary keys from the model's identity sequence, for rows COPY will insert.

    COPY returns no ids, so callers that must know them (to refer to the rows before or
    while they are written) take them first. The sequence is looked up once: as a plain
    subquery PostgreSQL would inline it and look it up again for every id, which took six
    times as long as the ids themselves.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) "
            "SELECT nextval(seq) FROM s, generate_series(1, %s)",
            [model._meta.db_table, _column(model._meta.pk), count],  # type: ignore[arg-type]
        )
        return [row[0] for row in cursor.fetchall()]


def copy_text(value: str) -> str:
    """A string as one field of COPY's text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def copy_insert_text(model: type[Model], columns: Sequence[str], lines: Iterable[str]) -> None:
    """`copy_insert` for rows already in COPY's text format, one line each.

    Fields are tab-separated, strings escaped with `copy_text`, NULL written as `\\N`. For
    ingest paths where formatting each value through the driver costs too much. The lines
    are sent in chunks as they come, so the server stores rows while later ones are made.
    """
    with copy_text_into(model, columns) as write:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == 256:
                write("".join(chunk))
                chunk.clear()
        if chunk:
            write("".join(chunk))


@contextmanager
def copy_text_into(model: type[Model], columns: Sequence[str]) -> Iterator[Callable[[str], None]]:
    """Open a COPY of text-format lines (as `copy_insert_text` takes) into the model's table.

    Yields the function that sends lines. The server stores rows as they arrive; leaving
    the block ends the COPY and waits for the rest. So a caller can send every row, do
    other work while the server stores them, and only then leave, without holding a
    second connection. Nothing else may use the connection inside the block.
    """
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # the psycopg cursor: Django's wrapper has no COPY
        with raw.copy(_copy_statement(model, columns)) as copy:
            yield copy.write


def insert_models(objs: Sequence[Model]) -> None:
    """`bulk_create` for unsaved instances of one model; by COPY for big batches on PostgreSQL.

    COPY returns no ids, so they are taken from the sequence first and set on the objects,
    as `bulk_create` would set them. Fields' `pre_save` runs as in `bulk_create` (so
    `auto_now` stamps); signals are not sent, by either path.
    """
    if not objs:
        return
    model = type(objs[0])
    if len(objs) < COPY_THRESHOLD or connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs, batch_size=1000)
        return
    fields = list(model._meta.concrete_fields)
    for obj, pk in zip(objs, reserve_ids(model, len(objs)), strict=True):
        obj.pk = pk
    copy_insert_text(
        model,
        [f.name for f in fields],
        ("\t".join([_copy_value(f, f.pre_save(obj, True)) for f in fields]) + "\n" for obj in objs),
    )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def _copy_value(field: Field[Any, Any], value: Any) -> str:
    """One field's Python value as a field of COPY's text format."""
    kind = type(value)
    if value is None:
        return "\\N"  # SQL NULL, as Django stores None in a JSONField too
    if isinstance(field, JSONField):
        return copy_text(json.dumps(value, cls=field.encoder, allow_nan=False))
    if kind is Decimal or kind is int:
        return str(value)
    if kind is datetime:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} for an aware column")
        return value.isoformat()
    if isinstance(value, str):  # choices enums are str subclasses
        return copy_text(str(value))
    if kind is bool:
        return "t" if value else "f"
    raise TypeError(f"cannot COPY a {kind.__name__}")


def _column(field: Field[Any, Any]) -> str:
    column = field.column
    assert column is not None, f"{field} has no column"
    return column


def bulk_update_rows(objs: Sequence[Model], fields: Sequence[str]) -> None:
    """`Model.objects.bulk_update(objs, fields)` as one statement on PostgreSQL.

    The rows travel as one JSON parameter that the server turns into typed records
    (`jsonb_to_recordset`), so the statement's size does not grow with the number of rows.
    An array parameter per field would be quoted by the driver element by element, in
    Python. Values go as JSON strings where JSON has no exact type (Decimal, datetime),
    and the server reads them with the columns' own input functions.
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, fields, batch_size=1000)
        return
    meta = model._meta
    pk: Field[Any, Any] = meta.pk  # type: ignore[assignment]
    targets: list[Field[Any, Any]] = [meta.get_field(name) for name in fields]  # type: ignore[misc]
    quote = connection.ops.quote_name
    columns = [pk, *targets]
    rows = [
        {
            f"c{i}": _json_value(field.get_db_prep_save(getattr(obj, field.attname), connection))
            for i, field in enumerate(columns)
        }
        for obj in objs
    ]
    record = ", ".join(f"c{i} {field.cast_db_type(connection)}" for i, field in enumerate(columns))
    assignments = ", ".join(f"{quote(_column(f))} = v.c{i}" for i, f in enumerate(targets, 1))
    table = quote(meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            # Identifiers come from the model, quoted; every value is in the one parameter.
            f"UPDATE {table} SET {assignments} "  # noqa: S608
            f"FROM jsonb_to_recordset(%s::jsonb) AS v({record}) "
            f"WHERE {table}.{quote(_column(pk))} = v.c0",
            [orjson.dumps(rows).decode()],
        )


def _json_value(value: Any) -> Any:
    """A prepared column value as JSON: exact types as strings, which the server parses."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is Decimal:
        return str(value)
    if isinstance(value, int):  # the driver's sized ints (Int4 and the like)
        return int(value)
    if kind is datetime:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} for an aware column")
        return value.isoformat()
    if kind is date:
        return value.isoformat()
    if isinstance(value, str):  # choices enums are str subclasses
        return str(value)
    raise TypeError(f"cannot send a {kind.__name__} as JSON for an update")
