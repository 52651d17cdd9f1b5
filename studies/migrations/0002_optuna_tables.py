"""Optuna's own tables, in this database, where every study keeps its trials.

Created through Django's connection (see studies.storage), so test databases and the app
role's grants get them like any other table.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def create(apps: Any, schema_editor: Any) -> None:
    from studies.storage import optuna_schema_create

    optuna_schema_create(schema_editor)


def drop(apps: Any, schema_editor: Any) -> None:
    from studies.storage import optuna_schema_drop

    optuna_schema_drop(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("studies", "0001_initial")]

    operations = [migrations.RunPython(create, drop)]
