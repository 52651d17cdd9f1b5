"""`db_roles [--app-role NAME] [--owner-role NAME] [--apply]`: the least-privilege roles'
SQL (see persistence.roles), printed for review, or the grants applied as the owner role."""

from __future__ import annotations

from typing import Any

import dj_database_url
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from persistence.roles import (
    connected_as,
    grant_statements,
    grants_apply,
    migration_database,
    setup_statements,
)


def _url_user(url: str) -> str:
    return str(dj_database_url.parse(url)["USER"] or "") if url else ""


class Command(BaseCommand):
    help = (
        "Print the SQL that sets up an owner role (runs migrations) and an app role (reads and "
        "writes rows, only appends to the event log), or with --apply grant the app role its "
        "privileges now, connected as MIGRATION_DATABASE_URL's role (the tables' owner)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app-role", help="The app's role; by default DATABASE_URL's user (set it if empty)"
        )
        parser.add_argument(
            "--owner-role",
            help="The role that owns the tables; by default MIGRATION_DATABASE_URL's user",
        )
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Run the grants (not the one-time CREATE ROLE / CREATE DATABASE part)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.vendor != "postgresql":
            raise CommandError("database roles are for PostgreSQL: set DATABASE_URL")
        app_role = options["app_role"] or _url_user(settings.DATABASE_URL)
        if not app_role:
            raise CommandError("name the app's role: --app-role, or a user in DATABASE_URL")
        if options["apply"]:
            self._apply(connection, app_role)
            return
        owner_role = options["owner_role"] or _url_user(settings.MIGRATION_DATABASE_URL)
        if not owner_role:
            raise CommandError(
                "name the owner role: --owner-role, or a user in MIGRATION_DATABASE_URL"
            )
        if owner_role == app_role:
            raise CommandError("the owner role and the app role must be two different roles")
        database = str(dj_database_url.parse(settings.DATABASE_URL)["NAME"])
        out = self.stdout
        out.write("-- 1. Once, as a superuser: the two roles and the database.")
        for statement in setup_statements(
            app_role=app_role, owner_role=owner_role, database=database
        ):
            out.write(f"{statement};")
        out.write(f"-- Then give each role a password (psql: \\password {app_role}) and,")
        out.write("-- on PostgreSQL 14 or older, connected to the database as a superuser:")
        out.write(f"--   ALTER SCHEMA public OWNER TO {owner_role};")
        out.write("--   REVOKE CREATE ON SCHEMA public FROM PUBLIC;")
        out.write("")
        out.write(f"-- 2. As {owner_role}, connected to {database}, after `migrate`: the app")
        out.write("-- role's privileges. `migrate` with MIGRATION_DATABASE_URL runs these itself,")
        out.write("-- and `db_roles --apply` does too.")
        out.write("BEGIN;")
        for statement in grant_statements(
            app_role=app_role, owner_role=owner_role, database=database
        ):
            out.write(f"{statement};")
        out.write("COMMIT;")

    def _apply(self, connection: Any, app_role: str) -> None:
        # Without MIGRATION_DATABASE_URL, DATABASE_URL's role must be the owner.
        target = migration_database(connection.alias)
        try:
            if target is None:
                statements = grants_apply(connection=connection, app_role=app_role)
            else:
                with connected_as(connection, target):
                    statements = grants_apply(connection=connection, app_role=app_role)
        except ValueError as exc:
            raise CommandError(f"{exc} (MIGRATION_DATABASE_URL names it)") from exc
        self.stdout.write(
            self.style.SUCCESS(f"{len(statements)} statements run: {app_role!r} has its privileges")
        )
