"""Run a command against a throwaway PostgreSQL cluster, then stop it, pass or fail.

`make test` uses this when no DATABASE_URL is given. The cluster is started from the
machine's `initdb`/`pg_ctl` by pytest-postgresql's executor, on a port and socket
directory of its own. PostgreSQL refuses to run as root, so as root the binaries run as
the `postgres` user (via `runuser`) on a data directory that user owns.

    python tests/run_with_postgres.py -- pytest -q

Tests that must crash and restart a server of their own (tests/e2e/test_db_restart.py)
use `Cluster` directly.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pytest_postgresql.executors.proc import PostgreSQLExecutor

PG_USER = "postgres"
PG_CTL_TIMEOUT = 60  # seconds: the bound on every pg_ctl start and stop


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pg_ctl() -> str | None:
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True):
            return str(candidate)
    return pg_ctl


def _pg_ctl(workdir: Path, pg_ctl: str) -> str:
    if os.geteuid() != 0:
        return pg_ctl
    # As root, wrap pg_ctl so that it (and the initdb/postgres it spawns) run as postgres.
    wrapper = workdir / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u {PG_USER} -- "{pg_ctl}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


class Cluster:
    """A throwaway cluster in a temporary directory, with `PG_USER` as its superuser and
    trust authentication on loopback; `with Cluster() as cluster:` starts it and removes it."""

    def __init__(self, *, dbname: str = "tradelab") -> None:
        pg_ctl = find_pg_ctl()
        if pg_ctl is None:
            raise RuntimeError("pg_ctl not found; install PostgreSQL or set DATABASE_URL")
        self.workdir = Path(tempfile.mkdtemp(prefix="tradelab-pg-"))
        # The postgres user must be able to reach the data and socket directories.
        self.workdir.chmod(self.workdir.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
        self.datadir, sockdir = self.workdir / "data", self.workdir / "sock"
        sockdir.mkdir()
        self.logfile = self.workdir / "postgresql.log"
        if os.geteuid() == 0:
            self.logfile.touch()
            shutil.chown(sockdir, PG_USER)
            shutil.chown(self.workdir, PG_USER)
            shutil.chown(self.logfile, PG_USER)
        self.port = _free_port()
        self.dbname = dbname
        self.pg_ctl = _pg_ctl(self.workdir, pg_ctl)
        self.executor = PostgreSQLExecutor(
            executable=self.pg_ctl,
            host="127.0.0.1",
            port=self.port,
            datadir=str(self.datadir),
            unixsocketdir=str(sockdir),
            logfile=str(self.logfile),
            startparams="-w",
            dbname=dbname,
            user=PG_USER,
            timeout=PG_CTL_TIMEOUT,
            postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        )

    def url(self, dbname: str | None = None, user: str = PG_USER) -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{dbname or self.dbname}"

    def start(self) -> None:
        """initdb and start; returns once the server takes connections."""
        self.executor.start()
        self.wait_until_ready()

    def wait_until_ready(self, timeout: float = PG_CTL_TIMEOUT) -> None:
        """The executor is satisfied once the port is open, which is before the server
        accepts connections ("the database system is starting up")."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def crash(self) -> None:
        """Stop the server as a crash would: no shutdown checkpoint, every backend killed."""
        self._run_pg_ctl("stop", "-D", str(self.datadir), "-m", "immediate")

    def restart_after_crash(self) -> None:
        """Start the crashed server again, with the same options; returns once it takes
        connections (after crash recovery)."""
        subprocess.run(
            self.executor.command_parts,
            check=True,
            timeout=PG_CTL_TIMEOUT,
            env={**os.environ, **self.executor.envvars},
            stdout=subprocess.DEVNULL,
        )
        self.wait_until_ready()

    def _run_pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [self.pg_ctl, *args],
            check=True,
            timeout=PG_CTL_TIMEOUT,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        try:
            if self.executor.running():
                self.executor.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        sys.exit("usage: run_with_postgres.py -- COMMAND [ARGS...]")
    if find_pg_ctl() is None:
        sys.exit("run_with_postgres: pg_ctl not found; install PostgreSQL or set DATABASE_URL")

    cluster = Cluster()
    print(
        f"run_with_postgres: starting PostgreSQL on 127.0.0.1:{cluster.port} ({cluster.datadir})",
        flush=True,
    )
    with cluster:
        env = {**os.environ, "DATABASE_URL": cluster.url()}
        code = subprocess.call(argv, env=env)
    print("run_with_postgres: PostgreSQL stopped and removed", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
