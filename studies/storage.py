"""Optuna's RDB storage on the project's own database: its URL, one storage per process,
and the DDL of its tables for this app's migration.

Optuna's tables (`studies`, `trials`, `trial_params`, ... and `alembic_version`) are
created by the migration `0002_optuna_tables`, through Django's connection, so they exist
wherever `migrate` has run (test databases included) and get the app role's grants like
every other table (persistence.roles). The storage itself then connects with SQLAlchemy,
with the URL built from Django's DATABASES: PostgreSQL through psycopg 3, SQLite through the
same file (or the test run's shared in-memory database). It never creates tables: the app
role may not (skip_table_creation), and a schema that does not match the installed Optuna
is reported at first use (Optuna's own compatibility check), which means a new migration
running Optuna's alembic upgrade is due.

Optuna's connection is not Django's: never call Optuna inside a Django transaction that
has written rows (on SQLite the two would wait for each other's lock).

A study's finished trials reach Optuna in bulk (`optuna_trials_append`: one transaction
for any number of trials, where Optuna's own API takes one per trial and several queries
per field); what they hold and how it is stored are Optuna's, checked by the tests that
load them back with Optuna (tests/studies/test_sampling.py).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

optuna.logging.set_verbosity(optuna.logging.WARNING)

ALEMBIC_TABLE = "alembic_version"

_storages: dict[tuple[int, str], optuna.storages.BaseStorage] = {}
_lock = threading.Lock()


def optuna_url(connection: BaseDatabaseWrapper | None = None) -> str:
    """SQLAlchemy's URL for the database `connection` (Django's default) points at."""
    from sqlalchemy.engine import URL

    connection = connection or connections["default"]
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        if name.startswith("file:"):
            # Django's test database: a shared-cache in-memory database named by a URI.
            return f"sqlite:///{name}{'&' if '?' in name else '?'}uri=true"
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor == "postgresql":
        options = db.get("OPTIONS") or {}
        query = {key: str(options[key]) for key in ("sslmode", "sslrootcert") if key in options}
        url = URL.create(
            "postgresql+psycopg",
            username=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            host=db.get("HOST") or None,
            port=int(db["PORT"]) if db.get("PORT") else None,
            database=db.get("NAME") or None,
            query=query,
        )
        return url.render_as_string(hide_password=False)
    raise NotImplementedError(f"studies support SQLite and PostgreSQL, not {connection.vendor}")


def _sqlite_immediate(engine: Any) -> None:
    """Begin SQLite transactions IMMEDIATE, as Django's connection does (settings): a
    deferred transaction that upgrades to a write fails at once when another process holds
    the write lock, where an immediate one waits for it (SQLAlchemy's pysqlite recipe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def optuna_storage() -> optuna.storages.BaseStorage:
    """This process's storage on the project's database (a prefork child builds its own:
    connections must not cross a fork), wrapped in Optuna's cache of finished trials."""
    url = optuna_url()
    key = (os.getpid(), url)
    with _lock:
        storage = _storages.get(key)
        if storage is None:
            sqlite = url.startswith("sqlite")
            engine_kwargs: dict[str, Any] = (
                {"connect_args": {"timeout": 30}}
                if sqlite
                else {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4}
            )
            if "mode=memory" in url:
                from sqlalchemy.pool import SingletonThreadPool

                # The test run's in-memory database lives while a connection to it is open.
                engine_kwargs["poolclass"] = SingletonThreadPool
            rdb = optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, skip_table_creation=True
            )
            if sqlite:
                _sqlite_immediate(rdb.engine)
                rdb.engine.dispose()  # connections opened by the check predate the hooks
            storage = optuna.storages.get_storage(rdb)
            _storages.clear()
            _storages[key] = storage
        return storage


def _rdb() -> optuna.storages.RDBStorage:
    storage = optuna_storage()
    backend = getattr(storage, "_backend", storage)  # under Optuna's cache of finished trials
    assert isinstance(backend, optuna.storages.RDBStorage)
    return backend


def optuna_trial_count(study_name: str) -> int | None:
    """How many trials Optuna holds for `study_name`; None when it has no such study."""
    from optuna.storages._rdb import models
    from sqlalchemy import func

    rdb = _rdb()
    session = rdb.scoped_session()
    try:
        study = models.StudyModel.find_by_name(study_name, session)
        if study is None:
            return None
        count = (
            session.query(func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study.study_id)
            .scalar()
        )
        session.commit()
        return int(count or 0)
    finally:
        rdb.scoped_session.remove()


def optuna_trials_append(
    *,
    study_name: str,
    directions: Sequence[Any],
    first_number: int,
    trials: Sequence[optuna.trial.FrozenTrial],
) -> int:
    """Append finished `trials`, numbered from `first_number` in order, to the Optuna study
    `study_name` (created with `directions` if it does not exist), in one transaction under
    the study row's lock. Trials Optuna already has (numbers below its count) are skipped,
    so callers racing with the same trials write them once; a batch that would leave a gap
    in the numbers writes nothing. Returns how many trials were written."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from sqlalchemy import func

    if optuna_trial_count(study_name) is None:
        optuna.create_study(
            study_name=study_name,
            storage=optuna_storage(),
            directions=list(directions),
            load_if_exists=True,  # another process may be creating it too
        )
    rdb = _rdb()
    session = rdb.scoped_session()
    try:
        study = models.StudyModel.find_by_name(study_name, session)
        if study is None:
            raise KeyError(f"no Optuna study {study_name!r}")
        study_id = int(study.study_id)
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        count = int(
            session.query(func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
            or 0
        )
        skip = count - first_number
        todo = list(trials[skip:]) if skip >= 0 else []
        if not todo:
            session.rollback()
            return 0
        rows = [
            models.TrialModel(
                number=count + position,
                study_id=study_id,
                state=trial.state,
                datetime_start=trial.datetime_start,
                datetime_complete=trial.datetime_complete,
            )
            for position, trial in enumerate(todo)
        ]
        session.add_all(rows)
        session.flush()  # the trial ids, for the rows that refer to them
        children: list[Any] = []
        for row, trial in zip(rows, todo, strict=True):
            for name, value in trial.params.items():
                distribution = trial.distributions[name]
                children.append(
                    models.TrialParamModel(
                        trial_id=row.trial_id,
                        param_name=name,
                        param_value=distribution.to_internal_repr(value),
                        distribution_json=distribution_to_json(distribution),
                    )
                )
            for objective, value in enumerate(trial.values or []):
                stored, value_type = models.TrialValueModel.value_to_stored_repr(value)
                children.append(
                    models.TrialValueModel(
                        trial_id=row.trial_id,
                        objective=objective,
                        value=stored,
                        value_type=value_type,
                    )
                )
            for key, value in trial.system_attrs.items():
                children.append(
                    models.TrialSystemAttributeModel(
                        trial_id=row.trial_id, key=key, value_json=json.dumps(value)
                    )
                )
            for key, value in trial.user_attrs.items():
                children.append(
                    models.TrialUserAttributeModel(
                        trial_id=row.trial_id, key=key, value_json=json.dumps(value)
                    )
                )
        session.add_all(children)
        session.commit()
        return len(rows)
    except BaseException:
        session.rollback()
        raise
    finally:
        rdb.scoped_session.remove()


# --- The migration's DDL ---------------------------------------------------------------


def _dialect(vendor: str) -> Any:
    if vendor == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect()


def _metadata() -> Any:
    from optuna.storages._rdb import models

    return models.BaseModel.metadata


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory
    from optuna.storages import _rdb

    head = ScriptDirectory(str(Path(_rdb.__file__).parent / "alembic")).get_current_head()
    assert head is not None
    return head


def _ddl(schema_editor: Any, build: Any) -> None:
    """Run the DDL `build(mock_engine)` emits through Django's schema editor: SQLAlchemy's
    mock engine compiles each statement for the database's dialect (enum types, tables,
    indexes, in dependency order) and hands it over instead of executing it."""
    from sqlalchemy import create_mock_engine

    dialect = _dialect(schema_editor.connection.vendor)

    def execute(statement: Any, *multiparams: Any, **params: Any) -> None:
        schema_editor.execute(str(statement.compile(dialect=dialect)), params=None)

    build(create_mock_engine(f"{dialect.name}://", execute))


def optuna_schema_create(schema_editor: Any) -> None:
    """Create Optuna's tables and stamp them with its schema and alembic versions, exactly as
    a fresh RDBStorage would."""
    from optuna.storages._rdb import models

    _ddl(schema_editor, lambda engine: _metadata().create_all(engine, checkfirst=False))
    schema_editor.execute(
        "INSERT INTO version_info (version_info_id, schema_version, library_version) "
        "VALUES (1, %s, %s)",
        params=[models.SCHEMA_VERSION, optuna.__version__],
    )
    schema_editor.execute(
        f"CREATE TABLE {ALEMBIC_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {ALEMBIC_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    schema_editor.execute(
        f"INSERT INTO {ALEMBIC_TABLE} (version_num) VALUES (%s)",  # noqa: S608 (a constant)
        params=[_alembic_head()],
    )


def optuna_schema_drop(schema_editor: Any) -> None:
    schema_editor.execute(f"DROP TABLE {ALEMBIC_TABLE}")
    _ddl(schema_editor, lambda engine: _metadata().drop_all(engine, checkfirst=False))
