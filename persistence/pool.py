"""Dead pooled connections are found all at once, not one request at a time.

The web server keeps its PostgreSQL connections in psycopg-pool's pool (DATABASE_POOL), which
checks each one before handing it out (CONN_HEALTH_CHECKS). After a failed check the pool
tries the next connection at once, but before each further try it sleeps, 1 s, then 2 s, then
4 s. When PostgreSQL restarts, every pooled connection dies with it, and the first request
after the restart walked through them all: with four, 7 s, past the pool's 5 s timeout, so
it was refused. Instead, at the start of a request, every idle connection is checked at once
(`pool.check()`: one empty query each) and the dead ones are replaced together, before the
request draws one.

That is done at most once every `SWEEP_EVERY` seconds, so it costs little under traffic
(one round trip per idle connection per sweep) and nothing when no request comes. A crash
and restart of PostgreSQL takes longer than that (0.35 s for `pg_ctl stop -m immediate` and
`start` of a small database on the 2-core CI box), so the first request after one sweeps.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import connections

SWEEP_EVERY = 0.1  # seconds

_sweeping = threading.Lock()
_last_sweep = 0.0


def sweep_dead_connections(**_: Any) -> None:
    """`request_started` receiver: check every idle pooled connection, unless that was done
    less than SWEEP_EVERY seconds ago. One thread sweeps while the others go on."""
    global _last_sweep
    if time.monotonic() - _last_sweep < SWEEP_EVERY or not _sweeping.acquire(blocking=False):
        return
    try:
        _last_sweep = time.monotonic()
        for alias in connections:
            pool = getattr(connections[alias], "pool", None)
            if pool is not None and not pool.closed:
                pool.check()
    finally:
        _sweeping.release()
