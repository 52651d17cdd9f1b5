"""End to end on the real stack: PostgreSQL, Redis, daphne and TWO Celery worker processes,
driven over HTTP and a real WebSocket.

1. A study's trials are spread over both workers (each trial records its worker), the
   WebSocket reports every trial and the final result.
2. A worker killed mid-study (SIGKILL, with its pool) loses at most the trial it was
   running; the other worker finishes the study.

    .venv/bin/python tests/run_with_postgres.py -- \
        .venv/bin/pytest -q -p no:cacheprovider tests/studies/test_e2e_workers.py
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
from django.utils import timezone

from config.serve import free_port, port_open, start_embedded_redis, web_command, web_env
from marketdata.services import random_walk_candles
from studies.models import Study, StudyTrial
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T0 = datetime(2023, 1, 1, tzinfo=UTC)
PASSWORD = "pass-word-123"
WAIT = 180.0
STALE_SECONDS = 6
BARS = 300_000


def _wait(check: Any, what: str, timeout: float = WAIT, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _copy_candles(instrument_id: int) -> None:
    frame = random_walk_candles(bars=BARS, timeframe="1m", seed=11, start=T0)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY trading_candle (instrument_id, timeframe, ts, open, high, low, close, volume) "
            "FROM STDIN"
        ) as copy,
    ):
        for ts, row in zip(frame.index.to_pydatetime(), frame.itertuples(index=False), strict=True):
            copy.write_row((instrument_id, "1m", ts, *row))


class Api:
    def __init__(self, host: str, username: str) -> None:
        self.host = host
        self.access = ""
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
        if self.access:
            request.add_header("Authorization", f"Bearer {self.access}")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _start_worker(name: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", "1"),
            *("-n", f"{name}@%h", "--without-gossip", "--without-mingle"),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def stack(transactional_db, tmp_path) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end needs PostgreSQL: workers, server and test share one database")
    web_port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "TRADELAB_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "PYTHONUNBUFFERED": "1",
        # A lost worker is noticed within seconds here, not the minute of production.
        "STUDY_STALE_AFTER_SECONDS": str(STALE_SECONDS),
        "STUDY_HEARTBEAT_SECONDS": "0.5",
    }
    names = ("redis", "w1", "w2", "web")
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in names}  # noqa: SIM115
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["redis"], env["REDIS_URL"] = start_embedded_redis(
            tmp_path / "redis", log=logs["redis"]
        )
        for name in ("w1", "w2"):
            procs[name] = _start_worker(name, env, logs[name])
        procs["web"] = subprocess.Popen(
            web_command("127.0.0.1", web_port),
            cwd=BASE_DIR,
            env=web_env(env),
            stdout=logs["web"],
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: port_open(web_port), "daphne", timeout=60)
        for name in ("w1", "w2"):
            _wait(
                lambda name=name: b"ready." in (tmp_path / f"{name}.log").read_bytes(),
                f"worker {name}",
                timeout=60,
            )
        yield {"web": f"127.0.0.1:{web_port}", "procs": procs, "logs": tmp_path}
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


@pytest.fixture
def market(stack):  # type: ignore[no-untyped-def]
    user = UserFactory()
    instrument = InstrumentFactory(symbol="E2ESTUDYUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user,
        instrument=instrument,
        timeframe="1m",
        kind="sma_cross",
        parameters={"fast": 10, "slow": 60},
    )
    return Api(stack["web"], user.username), strategy


def _submit(api: Api, strategy: Any, bars: int, **extra: Any) -> dict[str, Any]:
    body = {
        "strategy": strategy.pk,
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=bars)).isoformat(),
        "sampler": "tpe",
        "search_space": {"fast": {"low": 5, "high": 40}, "slow": {"low": 50, "high": 300}},
        "parallelism": 2,
        **extra,
    }
    return api.call("POST", "/api/v1/studies/", body)  # type: ignore[no-any-return]


def _listen(host: str, study_id: int, token: str) -> list[dict[str, Any]]:
    from websockets.sync.client import connect

    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT
    url = f"ws://{host}/ws/studies/{study_id}/?token={token}"
    with connect(url, origin=f"http://{host}", open_timeout=20) as ws:  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            messages.append(message)
            if message["type"] == "final":
                return messages
    raise AssertionError(f"no final message within {WAIT}s; got {messages[-3:]}")


def _finished(study_id: int) -> Study | None:
    study = Study.objects.get(pk=study_id)
    return study if study.status not in ("queued", "running") else None


def test_a_studys_trials_are_spread_over_both_workers(stack, market) -> None:  # type: ignore[no-untyped-def]
    api, strategy = market
    created = _submit(api, strategy, 100_000, n_trials=24)
    messages = _listen(stack["web"], created["id"], api.access)
    final = messages[-1]
    assert final["status"] == "succeeded", final
    assert final["trials_done"] == 24 and final["best_parameters"]
    assert len([m for m in messages if m["type"] == "trial"]) >= 20
    workers = set(
        StudyTrial.objects.filter(study_id=created["id"], cache_hit=False)
        .exclude(worker="")
        .values_list("worker", flat=True)
    )
    hosts = {worker.split("@")[0] for worker in workers}
    assert hosts == {"w1", "w2"}, workers
    trials = api.call("GET", f"/api/v1/studies/{created['id']}/trials/?limit=1000")["results"]
    assert len(trials) == 24


def test_a_worker_killed_mid_study_loses_at_most_its_running_trial(stack, market) -> None:  # type: ignore[no-untyped-def]
    api, strategy = market
    created = _submit(api, strategy, BARS, n_trials=40, seed=5)
    study_id = created["id"]

    def both_busy() -> bool:
        done = StudyTrial.objects.filter(study_id=study_id, state="complete")
        hosts = {w.split("@")[0] for w in done.values_list("worker", flat=True) if w}
        return len(hosts) == 2 and done.count() >= 6

    _wait(both_busy, "both workers to finish trials", timeout=WAIT, every=0.1)
    victim = psutil.Process(stack["procs"]["w1"].pid)
    for process in [*victim.children(recursive=True), victim]:
        os.kill(process.pid, signal.SIGKILL)
    killed_at = timezone.now()

    study = _wait(lambda: _finished(study_id), "the study to finish", timeout=WAIT, every=0.2)
    assert study.status == "succeeded", study.error
    trials = StudyTrial.objects.filter(study_id=study_id)
    assert trials.count() == 40 == study.trials_done
    failed = list(trials.filter(state="failed"))
    assert len(failed) <= 1, [(t.worker, t.error) for t in failed]
    assert all("lost" in t.error and t.worker.startswith("w1@") for t in failed)
    assert not trials.filter(state__in=["asked", "queued", "running"]).exists()
    # The other worker carried on: every trial computed after the kill ran on it.
    late = trials.filter(finished_at__gt=killed_at, cache_hit=False, state="complete")
    assert late.exists()
    assert {t.worker.split("@")[0] for t in late} == {"w2"}
