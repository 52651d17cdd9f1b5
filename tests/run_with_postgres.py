"""Run a command against a throwaway PostgreSQL cluster, then stop it, pass or fail.

`make test` uses this when no DATABASE_URL is given. The cluster is started from the
machine's `initdb`/`pg_ctl` by pytest-postgresql's executor, on a port and socket
directory of its own. PostgreSQL refuses to run as root, so as root the binaries run as
the `postgres` user (via `runuser`) on a data directory that user owns.

    python tests/run_with_postgres.py -- pytest -q
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_postgresql.executors.proc import PostgreSQLExecutor

PG_USER = "postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_ctl(workdir: Path) -> str:
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True):
            pg_ctl = str(candidate)
            break
    if pg_ctl is None:
        sys.exit("run_with_postgres: pg_ctl not found; install PostgreSQL or set DATABASE_URL")
    if os.geteuid() != 0:
        return pg_ctl
    # As root, wrap pg_ctl so that it (and the initdb/postgres it spawns) run as postgres.
    wrapper = workdir / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u {PG_USER} -- "{pg_ctl}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        sys.exit("usage: run_with_postgres.py -- COMMAND [ARGS...]")

    workdir = Path(tempfile.mkdtemp(prefix="tradelab-pg-"))
    # The postgres user must be able to reach the data and socket directories.
    workdir.chmod(workdir.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
    datadir, sockdir = workdir / "data", workdir / "sock"
    sockdir.mkdir()
    logfile = workdir / "postgresql.log"
    if os.geteuid() == 0:
        logfile.touch()
        shutil.chown(sockdir, PG_USER)
        shutil.chown(workdir, PG_USER)
        shutil.chown(logfile, PG_USER)

    port = _free_port()
    executor = PostgreSQLExecutor(
        executable=_pg_ctl(workdir),
        host="127.0.0.1",
        port=port,
        datadir=str(datadir),
        unixsocketdir=str(sockdir),
        logfile=str(logfile),
        startparams="-w",
        dbname="tradelab",
        user=PG_USER,
        postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
    )
    print(f"run_with_postgres: starting PostgreSQL on 127.0.0.1:{port} ({datadir})", flush=True)
    executor.start()
    try:
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://{PG_USER}@127.0.0.1:{port}/tradelab"
        return subprocess.call(argv, env=env)
    finally:
        executor.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print("run_with_postgres: PostgreSQL stopped and removed", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
