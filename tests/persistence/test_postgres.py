"""persistence.postgres: timestamptz values through psycopg's own loader, in Django's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg.pq import Format

from persistence.postgres import TIMESTAMPTZ_OID, TzLoader

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]

TEXTS = [
    b"2024-01-01 00:00:00+00",
    b"2024-06-30 23:59:59.999999+00",
    b"2024-02-29 12:34:56.000001+00",
    b"0001-01-01 00:00:00+00",
    b"9999-12-31 23:59:59.999999+00",
]


def _loader(cls: type, zone: timezone | None):  # type: ignore[no-untyped-def]
    connection.ensure_connection()
    subclass = type("Loader", (cls,), {"timezone": zone})
    return subclass(TIMESTAMPTZ_OID, connection.connection)


@pytest.mark.parametrize("zone", [UTC, None])
def test_values_are_those_djangos_loader_gives(zone):  # type: ignore[no-untyped-def]
    ours, djangos = _loader(TzLoader, zone), _loader(BaseTzLoader, zone)
    for text in TEXTS:
        value, expected = ours.load(text), djangos.load(text)
        assert (value, value.tzinfo) == (expected, expected.tzinfo), text


def test_every_connection_and_cursor_loads_with_it():
    connection.ensure_connection()
    on_connection = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    with connection.cursor() as cursor:
        on_cursor = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        cursor.execute("SELECT %s::timestamptz", [datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC)])
        [value] = cursor.fetchone()
    assert issubclass(on_connection, TzLoader) and on_cursor is on_connection
    assert value == datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC) and value.tzinfo is UTC


def test_a_session_in_another_zone_still_gives_the_right_instant():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Kolkata'")
        cursor.execute("SELECT '2024-01-01 00:00:00+00'::timestamptz")
        [value] = cursor.fetchone()
    assert value == datetime(2024, 1, 1, tzinfo=UTC)
    assert value.utcoffset() == timedelta(0)
