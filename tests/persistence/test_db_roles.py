"""Least-privilege roles (persistence.roles): migrations run as an owner role, the app runs as
a role that cannot truncate, alter, update or delete the event log, and still does its work.

The roles and a database of their own are made in the test database's cluster, as the
one-time setup says; `manage.py migrate` runs with MIGRATION_DATABASE_URL, as an operator
runs it; then the app role is tried directly over psycopg and through the app's commands.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import errors, sql

from persistence.roles import quote, setup_statements

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
EVENT_COLUMNS = "stream, version, type, data, metadata, prev_hash, hash, created_at"


@dataclass
class Roles:
    app: str
    owner: str
    database: str
    app_url: str
    owner_url: str
    env: dict[str, str]
    migrate_output: str

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def _url(user: str, password: str, database: str) -> str:
    db = connection.settings_dict
    return (
        f"postgres://{user}:{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{database}"
    )


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    db = connection.settings_dict
    admin_url = _url(db["USER"], db["PASSWORD"], "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (row and row[0]):
            pytest.skip("needs a test database role that may create roles")
        suffix = secrets.token_hex(4)
        app, owner, database = f"tl_app_{suffix}", f"tl_owner_{suffix}", f"tl_roles_{suffix}"
        password = secrets.token_hex(12)
        try:
            for statement in setup_statements(app_role=app, owner_role=owner, database=database):
                admin.execute(statement)  # type: ignore[arg-type]
            for role in (app, owner):
                admin.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(password)
                    )
                )
            app_url, owner_url = (_url(r, password, database) for r in (app, owner))
            tmp = tmp_path_factory.mktemp("roles")
            env = {
                **{k: v for k, v in os.environ.items() if k not in {"DATABASE_POOL", "REDIS_URL"}},
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "DATABASE_URL": app_url,
                "MIGRATION_DATABASE_URL": owner_url,
                "TRADELAB_VAR_DIR": str(tmp / "var"),
                "MEDIA_ROOT": str(tmp / "media"),
            }
            found = Roles(app, owner, database, app_url, owner_url, env, migrate_output="")
            found.migrate_output = found.manage("migrate", "--no-input")
            yield found
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {quote(database)} WITH (FORCE)")  # type: ignore[arg-type]
            for role in (app, owner):
                admin.execute(f"DROP ROLE IF EXISTS {quote(role)}")  # type: ignore[arg-type]


def _refused(url: str, statement: str) -> str:
    """The message with which PostgreSQL refuses `statement` for lack of privilege."""
    with psycopg.connect(url) as conn:
        with pytest.raises(errors.InsufficientPrivilege) as refusal:
            conn.execute(statement)  # type: ignore[arg-type]
        conn.rollback()
    return str(refusal.value)


def _privileges(roles: Roles, table: str) -> set[str]:
    kinds = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    with psycopg.connect(roles.owner_url) as conn:
        return {
            kind
            for kind in kinds
            if conn.execute(
                "SELECT has_table_privilege(%s, %s, %s)", [roles.app, table, kind]
            ).fetchone()
            == (True,)
        }


def test_migrate_runs_as_the_owner_and_the_app_role_owns_nothing(roles: Roles) -> None:
    with psycopg.connect(roles.owner_url) as conn:
        owners = dict(
            conn.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        )
        owned_by_app = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", [roles.app]
        ).fetchone()
    assert "persistence_event" in owners and set(owners.values()) == {roles.owner}
    assert owned_by_app == (0,)
    assert f"privileges of '{roles.app}' granted again" in roles.migrate_output


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE persistence_event",
        "ALTER TABLE persistence_event DISABLE TRIGGER persistence_event_append_only",
        "ALTER TABLE persistence_event DISABLE TRIGGER ALL",
        "DROP TRIGGER persistence_event_append_only ON persistence_event",
        "DROP TABLE persistence_event",
    ],
)
def test_app_role_cannot_truncate_or_alter_the_event_log(roles: Roles, statement: str) -> None:
    message = _refused(roles.app_url, statement)
    assert "persistence_event" in message, message


@pytest.mark.parametrize(
    "statement",
    ["UPDATE persistence_event SET type = 'forged'", "DELETE FROM persistence_event"],
)
def test_app_role_cannot_update_or_delete_events(roles: Roles, statement: str) -> None:
    # Refused for want of the privilege, before the append-only trigger would say so.
    assert _refused(roles.app_url, statement) == "permission denied for table persistence_event"
    assert _privileges(roles, "persistence_event") == {"SELECT", "INSERT"}


def test_app_role_appends_to_and_reads_the_event_log(roles: Roles) -> None:
    with psycopg.connect(roles.app_url) as conn:
        [seq] = conn.execute(  # type: ignore[misc]
            f"INSERT INTO persistence_event ({EVENT_COLUMNS}) VALUES "
            "('roles-probe', 1, 'probe', '{}', '{}', repeat('0', 64), repeat('1', 64), now()) "
            "RETURNING seq"
        ).fetchone()
        with conn.cursor().copy(f"COPY persistence_event ({EVENT_COLUMNS}) FROM STDIN") as copy:
            copy.write_row(["roles-probe", 2, "probe", "{}", "{}", "1" * 64, "2" * 64, "now"])
        versions = conn.execute(
            "SELECT version FROM persistence_event WHERE stream = 'roles-probe' AND seq >= %s",
            [seq],
        ).fetchall()
        conn.rollback()
    assert versions == [(1,), (2,)]


def test_app_role_does_what_the_app_does_to_ordinary_tables(roles: Roles) -> None:
    with psycopg.connect(roles.app_url) as conn:
        [snapshot_id] = conn.execute(  # type: ignore[misc]
            "INSERT INTO persistence_snapshot (stream, version, state, created_at) "
            "VALUES ('roles-probe', 1, '{}', now()) RETURNING id"
        ).fetchone()
        conn.execute("SELECT * FROM persistence_snapshot WHERE id = %s FOR UPDATE", [snapshot_id])
        conn.execute("UPDATE persistence_snapshot SET version = 2 WHERE id = %s", [snapshot_id])
        deleted = conn.execute("DELETE FROM persistence_snapshot WHERE id = %s", [snapshot_id])
        assert deleted.rowcount == 1
        # persistence.bulk.reserve_ids: ids from a table's identity sequence, for COPY.
        ids = conn.execute(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) "
            "SELECT nextval(seq) FROM s, generate_series(1, 3)",
            ["persistence_event", "seq"],
        ).fetchall()
        # The candle upsert: a temp table, loaded by COPY and emptied by TRUNCATE.
        conn.execute("CREATE TEMP TABLE candle_load (ts timestamptz, close float8)")
        with conn.cursor().copy("COPY candle_load (ts, close) FROM STDIN") as copy:
            copy.write_row(["2024-01-01T00:00:00Z", 1.5])
        conn.execute("TRUNCATE candle_load")
        conn.execute("SELECT pg_advisory_xact_lock(42)")  # the ledger's chain lock
        conn.rollback()
    assert len(ids) == 3
    assert _privileges(roles, "persistence_snapshot") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    with psycopg.connect(roles.owner_url) as conn:
        # `restore` moves id sequences past the restored rows with setval: UPDATE.
        can_setval = conn.execute(
            "SELECT has_sequence_privilege(%s, pg_get_serial_sequence(%s, 'id'), 'UPDATE')",
            [roles.app, "persistence_snapshot"],
        ).fetchone()
    assert can_setval == (True,)


def test_the_app_seeds_and_verifies_its_ledger_as_the_app_role(roles: Roles) -> None:
    """The app's own writes: users, the candle upsert, strategies, orders, fills with their
    events, locks and positions, the audit log; then the chain is walked."""
    roles.manage("seed_demo", "--bars", "300")
    out = roles.manage("verify_ledger")
    with psycopg.connect(roles.app_url) as conn:
        events = conn.execute("SELECT count(*) FROM persistence_event").fetchone()
    assert events is not None and events[0] > 0
    assert "ledger OK" in out, out


def test_tables_a_later_migration_creates_get_the_ordinary_grants(roles: Roles) -> None:
    with psycopg.connect(roles.owner_url) as owner:
        owner.execute(
            "CREATE TABLE roles_probe (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "note text)"
        )
    try:
        with psycopg.connect(roles.app_url) as conn:
            [probe_id] = conn.execute(  # type: ignore[misc]
                "INSERT INTO roles_probe (note) VALUES ('a') RETURNING id"
            ).fetchone()
            conn.execute("UPDATE roles_probe SET note = 'b' WHERE id = %s", [probe_id])
            conn.execute("DELETE FROM roles_probe WHERE id = %s", [probe_id])
        assert "roles_probe" in _refused(roles.app_url, "TRUNCATE roles_probe")
    finally:
        with psycopg.connect(roles.owner_url) as owner:
            owner.execute("DROP TABLE roles_probe")


def test_db_roles_apply_takes_back_privileges_the_app_role_should_not_have(
    roles: Roles,
) -> None:
    with psycopg.connect(roles.owner_url) as owner:
        owner.execute(f"GRANT ALL ON persistence_event TO {quote(roles.app)}")  # type: ignore[arg-type]
    assert "UPDATE" in _privileges(roles, "persistence_event")
    roles.manage("db_roles", "--apply")
    assert _privileges(roles, "persistence_event") == {"SELECT", "INSERT"}
    assert _privileges(roles, "django_migrations") == {"SELECT"}


def test_db_roles_prints_the_one_time_setup_and_the_grants() -> None:
    out = io.StringIO()
    call_command("db_roles", app_role="tl_app", owner_role="tl_owner", stdout=out)
    printed = out.getvalue()
    assert 'CREATE ROLE "tl_app" LOGIN;' in printed
    assert 'CREATE DATABASE "' in printed and 'OWNER "tl_owner";' in printed
    grants = printed[printed.index("BEGIN;") :]
    assert 'REVOKE UPDATE, DELETE ON "public"."persistence_event" FROM "tl_app";' in grants
    assert "TRUNCATE" not in grants and "OWNER" not in grants
