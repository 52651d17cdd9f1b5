"""End to end, with the real things: a Redis server, a Celery worker and daphne as separate
processes, on the PostgreSQL test database, driven over HTTP and a real WebSocket.

1. A backtest submitted over HTTP sends several progress messages and a final one.
2. The same request again is a cache hit, answered without any task.
3. A worker process killed mid-run leaves nothing running and nothing stored twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.db import connection

from backtests.models import BacktestRun, BacktestTrade
from config.serve import free_port, port_open, start_embedded_redis, web_command, web_env
from marketdata.services import random_walk_candles
from persistence.models import Artifact, CachedResult
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T0 = datetime(2023, 1, 1, tzinfo=UTC)
BARS = 300_000
PASSWORD = "pass-word-123"
WAIT = 90.0  # seconds: the bound on every wait, generous for a loaded 2-core CI box


def _wait_for(check: Any, what: str, timeout: float = WAIT, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def stack(transactional_db, tmp_path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end needs PostgreSQL: worker, server and test share one database")
    web_port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "TRADELAB_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "PYTHONUNBUFFERED": "1",
    }
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("redis", "worker", "web")}  # noqa: SIM115
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["redis"], env["REDIS_URL"] = start_embedded_redis(
            tmp_path / "redis", log=logs["redis"]
        )
        procs["worker"] = subprocess.Popen(
            [str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", "1"],
            cwd=BASE_DIR,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
        )
        procs["web"] = subprocess.Popen(
            web_command("127.0.0.1", web_port),
            cwd=BASE_DIR,
            env=web_env(env),  # as `make run` serves it: with a connection pool
            stdout=logs["web"],
            stderr=subprocess.STDOUT,
        )
        _wait_for(lambda: port_open(web_port), "daphne", timeout=60)
        _wait_for(
            lambda: b"ready." in (tmp_path / "worker.log").read_bytes(), "the worker", timeout=60
        )
        yield {"web": f"127.0.0.1:{web_port}", "worker": procs["worker"], "logs": tmp_path}
    finally:
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(list(procs.values())):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for handle in logs.values():
            handle.close()


def _copy_candles(instrument_id: int) -> None:
    frame = random_walk_candles(bars=BARS, timeframe="1m", seed=11, start=T0)
    # COPY: a few hundred thousand bars in about a second, where ORM inserts take many.
    with connection.cursor() as cursor:
        raw = cursor.cursor
        sql = (
            "COPY trading_candle (instrument_id, timeframe, ts, open, high, low, close, volume) "
            "FROM STDIN"
        )
        with raw.copy(sql) as copy:
            for ts, o, h, lo, c, v in zip(
                frame.index.to_pydatetime(),
                frame["open"],
                frame["high"],
                frame["low"],
                frame["close"],
                frame["volume"],
                strict=True,
            ):
                copy.write_row((instrument_id, "1m", ts, o, h, lo, c, v))


class Api:
    def __init__(self, host: str, username: str) -> None:
        self.host = host
        token = self.call(
            "POST", "/api/v1/auth/token/", {"username": username, "password": PASSWORD}
        )
        self.access = token["access"]

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://{self.host}{path}",
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Host": "127.0.0.1"},
        )
        if getattr(self, "access", None):
            request.add_header("Authorization", f"Bearer {self.access}")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def submit(self, strategy_id: int, bars: int, **extra: Any) -> dict[str, Any]:
        end = T0 + timedelta(minutes=bars)
        body = {"strategy": strategy_id, "start": T0.isoformat(), "end": end.isoformat(), **extra}
        return self.call("POST", "/api/v1/backtests/", body)


def _listen(host: str, run_id: int, token: str) -> list[dict[str, Any]]:
    from websockets.sync.client import connect

    messages: list[dict[str, Any]] = []
    url = f"ws://{host}/ws/backtests/{run_id}/?token={token}"
    deadline = time.monotonic() + WAIT
    with connect(url, origin=f"http://{host}", open_timeout=20) as ws:  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            messages.append(message)
            if message["type"] == "final":
                return messages
    raise AssertionError(f"no final message within {WAIT}s; got {messages}")


def test_backtests_run_on_real_workers_with_live_progress_and_cache(stack) -> None:  # type: ignore[no-untyped-def]
    user = UserFactory()
    instrument = InstrumentFactory(symbol="E2EUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user,
        instrument=instrument,
        timeframe="1m",
        kind="sma_cross",
        parameters={"fast": 10, "slow": 60},
    )
    api = Api(stack["web"], user.username)

    # The worker has one process: run A keeps it busy while we subscribe to B, which is still
    # queued, so B's whole life is watched. B's range differs from A's, so B reads the
    # database rather than A's parquet copy and has several phases to report.
    api.submit(strategy.pk, 150_000)
    b = api.submit(strategy.pk, 200_000, parameters={"fast": 7, "slow": 30})
    assert b["cache_hit"] is False
    messages = _listen(stack["web"], b["id"], api.access)

    progress = [m for m in messages if m["type"] == "progress"]
    assert len(progress) >= 3, messages
    assert {"status", "progress", "bars_done", "bars_total", "eta_seconds"} <= set(progress[-1])
    assert [m["progress"] for m in progress] == sorted(m["progress"] for m in progress)
    final = messages[-1]
    assert final["status"] == "succeeded", final
    assert final["metrics"]["num_trades"] > 0 and "sharpe" in final["metrics"]

    # The same request again: answered from the cache, already succeeded, no task at all.
    again = api.submit(strategy.pk, 200_000, parameters={"fast": 7, "slow": 30})
    assert again["cache_hit"] is True and again["status"] == "succeeded"
    assert again["params_hash"] == b["params_hash"]
    hit = BacktestRun.objects.get(pk=again["id"])
    assert hit.celery_task_id == "" and hit.attempts == 0

    # Kill the worker process running C midway: the parent rejects the message back to the
    # queue (reject_on_worker_lost), a fresh process takes C over and stores it once.
    c = api.submit(strategy.pk, BARS, parameters={"fast": 12, "slow": 90})
    _wait_for(
        lambda: BacktestRun.objects.filter(pk=c["id"], status="running").exists(), "C to start"
    )
    pool = psutil.Process(stack["worker"].pid).children()
    assert pool, "the worker has no pool process"
    for child in pool:
        os.kill(child.pid, signal.SIGKILL)

    def finished() -> BacktestRun | None:
        run = BacktestRun.objects.get(pk=c["id"])
        return run if run.status not in ("queued", "running") else None

    run = _wait_for(finished, "C to finish after the worker was killed", every=0.2)
    assert run.status in ("succeeded", "failed"), run.status
    if run.status == "succeeded":
        expected = run.metrics["num_trades"] + run.metrics["open_trades"]
        assert BacktestTrade.objects.filter(run=run).count() == expected
        assert run.attempts >= 2, "the run finished before the kill; nothing was tested"
    assert CachedResult.objects.filter(kind="backtest", params_hash=run.params_hash).count() <= 1
    assert Artifact.objects.filter(params_hash=run.params_hash, name="equity.parquet").count() <= 1
    assert not BacktestRun.objects.filter(status="running").exists()


def _sessions_opened() -> int:
    """PostgreSQL's count of the sessions ever opened on this database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_the_web_server_reuses_its_database_connections(stack) -> None:  # type: ignore[no-untyped-def]
    """Under ASGI, Django serves each request on a thread of its own. Without the pool that
    `make run` (and this stack) gives daphne, every request opened a PostgreSQL connection."""
    api = Api(stack["web"], UserFactory().username)
    api.call("GET", "/api/v1/orders/")
    before = _sessions_opened()
    for _ in range(20):
        api.call("GET", "/api/v1/orders/")
    time.sleep(2)  # a backend reports its session by the time it exits, or within seconds
    assert _sessions_opened() - before <= 2


def test_changes_over_the_api_are_audited_with_their_actor_under_asgi(stack) -> None:  # type: ignore[no-untyped-def]
    from auditlog.models import LogEntry

    user = UserFactory()
    InstrumentFactory(symbol="E2EUSDT")
    api = Api(stack["web"], user.username)
    body = {"client_order_id": "e2e-1", "symbol": "E2EUSDT", "side": "buy", "quantity": "1"}
    order = api.call("POST", "/api/v1/orders/", body)
    entry = LogEntry.objects.get(content_type__model="order", object_pk=str(order["id"]))
    assert entry.actor_id == user.pk
