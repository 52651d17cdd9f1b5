"""Least-privilege PostgreSQL roles: an owner role that runs the migrations, and an app role
that only reads and writes rows, and only appends to the append-only tables.

The app role owns nothing, so it cannot TRUNCATE a table, ALTER it (DISABLE TRIGGER, DROP
TRIGGER) or DROP it; on the event log it has only SELECT and INSERT, so the append-only
promise no longer rests on the trigger alone. What the app needs at run time, and no more:

- SELECT, INSERT, UPDATE, DELETE on the ordinary tables (`SELECT ... FOR UPDATE` needs
  UPDATE; COPY into a table needs INSERT);
- SELECT and INSERT on the append-only tables (`APPEND_ONLY_MODELS`), SELECT on
  django_migrations;
- USAGE, SELECT and UPDATE on the sequences: `nextval` (persistence.bulk.reserve_ids) needs
  USAGE, `setval` (`restore` moves each id sequence past the restored rows) needs UPDATE;
- TEMPORARY on the database: the candle upsert loads through a temp table;
- advisory locks (the ledger's) need no privilege.

`setup_statements` is the one-time part a superuser runs (roles, database); `grant_statements`
is the rest, run by the owner role: `db_roles --apply`, and `migrate` after migrating as
MIGRATION_DATABASE_URL's role, so that tables added by a migration get their grants at once.
Default privileges give tables the owner creates by other means the ordinary grants too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dj_database_url
from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

# Tables whose rows are never changed or removed once written, by model label.
APPEND_ONLY_MODELS = ("persistence.Event",)
# Tables the app reads but never writes.
READ_ONLY_TABLES = ("django_migrations",)


def quote(identifier: str) -> str:
    """A PostgreSQL identifier (role, database, schema, table), quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def append_only_tables() -> list[str]:
    return sorted(apps.get_model(label)._meta.db_table for label in APPEND_ONLY_MODELS)


def setup_statements(*, app_role: str, owner_role: str, database: str) -> list[str]:
    """The one-time setup, for a superuser: the two login roles (give each a password
    afterwards, e.g. psql's `\\password`) and the database, owned by the owner role."""
    return [
        f"CREATE ROLE {quote(owner_role)} LOGIN",
        f"CREATE ROLE {quote(app_role)} LOGIN",
        f"CREATE DATABASE {quote(database)} OWNER {quote(owner_role)}",
    ]


def grant_statements(
    *,
    app_role: str,
    owner_role: str,
    database: str,
    schema: str = "public",
    tables: set[str] | None = None,
) -> list[str]:
    """The app role's privileges, for the owner role to run (again after each migration).

    They start from nothing on the schema's tables and sequences, so a second run also takes
    back what should not be there. `tables` (the tables that exist) leaves out the
    statements naming a table not created yet; None keeps them all."""
    app, owner, schema_name = quote(app_role), quote(owner_role), quote(schema)
    statements = [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {quote(database)} TO {app}",
        f"GRANT USAGE ON SCHEMA {schema_name} TO {app}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema_name} FROM {app}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_name} TO {app}",
    ]
    for table in append_only_tables():
        if tables is None or table in tables:
            statements.append(f"REVOKE UPDATE, DELETE ON {schema_name}.{quote(table)} FROM {app}")
    for table in READ_ONLY_TABLES:
        if tables is None or table in tables:
            statements.append(
                f"REVOKE INSERT, UPDATE, DELETE ON {schema_name}.{quote(table)} FROM {app}"
            )
    statements += [
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_name} FROM {app}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema_name} TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema_name} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema_name} "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app}",
    ]
    return statements


def grants_apply(*, connection: BaseDatabaseWrapper, app_role: str) -> list[str]:
    """Run `grant_statements` for `app_role` on `connection`, whose role must own the tables
    (it is the owner role the default privileges are set for); returns what it ran."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_database(), current_schema()")
        owner_role, database, schema = cursor.fetchone()
        if owner_role == app_role:
            # It would take the owner's own privileges away from it.
            raise ValueError(f"connected as {app_role!r}: connect as the owner role instead")
        statements = grant_statements(
            app_role=app_role,
            owner_role=owner_role,
            database=database,
            schema=schema,
            tables=set(connection.introspection.table_names(cursor)),
        )
        for statement in statements:
            cursor.execute(statement)
    return statements


def migration_database(alias: str = DEFAULT_DB_ALIAS) -> dict[str, Any] | None:
    """MIGRATION_DATABASE_URL's settings, when `alias` is the database DATABASE_URL names
    (not a test database made from it); else None."""
    url = settings.MIGRATION_DATABASE_URL
    if not url or alias != DEFAULT_DB_ALIAS or connections[alias].vendor != "postgresql":
        return None
    configured = dj_database_url.parse(settings.DATABASE_URL)
    if connections[alias].settings_dict["NAME"] != configured["NAME"]:
        return None
    return dict(dj_database_url.parse(url))


@contextmanager
def connected_as(connection: BaseDatabaseWrapper, target: dict[str, Any]) -> Iterator[None]:
    """Within the block, `connection` connects with `target`'s name, role, password, host,
    port and options (such as sslmode), without a pool; its settings are restored after."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(
        {key: target[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}
    )
    options = {key: value for key, value in saved.get("OPTIONS", {}).items() if key != "pool"}
    connection.settings_dict["OPTIONS"] = {**options, **target.get("OPTIONS", {})}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
