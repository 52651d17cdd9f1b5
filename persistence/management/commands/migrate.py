"""`migrate`, as the owner role when MIGRATION_DATABASE_URL is set (see persistence.roles).

Django's own command, connected with MIGRATION_DATABASE_URL instead of DATABASE_URL when it
migrates the database DATABASE_URL names: the owner role creates and alters the tables.
Afterwards it gives DATABASE_URL's role its privileges again, so that a table this run
created gets them at once (an append-only one without UPDATE and DELETE). Unset, or for a
test database, it is Django's `migrate` unchanged.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import migrate
from django.db import connections

from persistence.roles import connected_as, grants_apply, migration_database


class Command(migrate.Command):
    help = (
        f"{migrate.Command.help} With MIGRATION_DATABASE_URL set, connects as that URL's role "
        "(the tables' owner) and then grants DATABASE_URL's role its privileges."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        target = migration_database(options["database"])
        if target is None:
            super().handle(*args, **options)
            return
        connection = connections[options["database"]]
        app_role = connection.settings_dict["USER"]
        with connected_as(connection, target):
            super().handle(*args, **options)
            if options["plan"] or options["check_unapplied"] or app_role in ("", target["USER"]):
                return
            grants_apply(connection=connection, app_role=app_role)
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"Migrated as {target['USER']!r}; privileges of {app_role!r} granted again."
            )
