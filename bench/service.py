"""Benchmark of backtests as a service; prints figures, asserts nothing.

    .venv/bin/python bench/service.py [--bars 1000000] [--sweep-bars 1000000]

1. Cache hit against recompute for one backtest over --bars 1-minute bars, in process
   through backtest_submit (Celery eager): a cold recompute (candles from the database),
   a warm one (candles from the parquet copy), and the median of several cache hits.
2. Submit-to-result over HTTP: daphne + a Celery worker + the embedded Redis, JWT auth,
   POST then poll GET until the run has finished; a recompute, then a cache hit.
3. Sweep speed-up: the same-sized sweep with one worker process, then with two.

Uses DATABASE_URL when set (PostgreSQL recommended), else a throwaway SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from config.serve import free_port, port_open, start_embedded_redis, web_command  # noqa: E402

BIN = Path(sys.executable).parent
T0 = datetime(2022, 1, 1, tzinfo=UTC)
PASSWORD = "bench-password-123"  # noqa: S105  (a throwaway user in a temp database)


def _wait(check: Any, what: str, timeout: float = 600.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--sweep-bars", type=int, default=1_000_000)
    parser.add_argument("--hits", type=int, default=7)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tradelab-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "TRADELAB_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
    procs: list[subprocess.Popen[bytes]] = []
    throwaway_db = _create_postgres_database(env)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0", "--no-input"],
            cwd=BASE_DIR,
            env=env,
            check=True,
        )
        # This process computes in-line (eager); the worker subprocesses never do.
        os.environ.update({**env, "CELERY_TASK_ALWAYS_EAGER": "1"})
        import django

        django.setup()
        user, strategy = _setup_market(args.bars)
        _bench_cache(user, strategy, args.bars, args.hits)

        redis, env["REDIS_URL"] = start_embedded_redis(workdir / "redis")
        procs.append(redis)
        web_port = free_port()
        procs.append(
            subprocess.Popen(
                web_command("127.0.0.1", web_port),
                cwd=BASE_DIR,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait(lambda: port_open(web_port), "daphne", 60)
        api = Api(f"127.0.0.1:{web_port}", user.username)

        worker = _start_worker(env, 1, workdir)
        _bench_http(api, strategy, args.bars)
        # Both sweeps should find the parquet copy of their candles; otherwise the first
        # one alone reads the database, and the speed-up measures that rather than workers.
        _warm_candles(strategy, args.sweep_bars)
        t_one = _bench_sweep(api, strategy, args.sweep_bars, fee="0.0011", label="1 worker")
        _stop(worker)
        _print_task_times(workdir / "worker-1.log", "backtests.tasks.")
        worker = _start_worker(env, 2, workdir)
        t_two = _bench_sweep(api, strategy, args.sweep_bars, fee="0.0012", label="2 workers")
        _stop(worker)
        _print_task_times(workdir / "worker-2.log", "backtests.tasks.")
        print(
            f"\nsweep speed-up, 2 workers vs 1: {t_one / t_two:.2f}x (ideal 2.00x on 2 free cores)"
        )
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
        if throwaway_db:
            from django.db import connections

            connections.close_all()
            _drop_postgres_database(throwaway_db)


def _admin_dsn(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _create_postgres_database(env: dict[str, str]) -> str:
    """On PostgreSQL, a database of our own, so the bench never touches real data."""
    url = env.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return ""
    import psycopg

    name = f"tradelab_bench_{os.getpid()}"
    with psycopg.connect(_admin_dsn(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    env["THROWAWAY_ADMIN_DSN"] = _admin_dsn(url)
    return name


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["THROWAWAY_ADMIN_DSN"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _setup_market(bars: int) -> tuple[Any, Any]:
    from accounts.models import User
    from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
    from strategies.models import Strategy

    user = User.objects.create_user(username="bench", password=PASSWORD)
    instrument = instrument_for_symbol("BENCHUSDT")
    started = time.perf_counter()
    frame = random_walk_candles(bars=bars, timeframe="1m", seed=3, start=T0)
    candles_upsert(instrument=instrument, timeframe="1m", frame=frame)
    print(f"setup: {bars:,} 1m candles written in {time.perf_counter() - started:.1f} s")
    strategy = Strategy.objects.create(
        owner=user,
        name="bench",
        kind="sma_cross",
        parameters={"fast": 10, "slow": 50},
        instrument=instrument,
        timeframe="1m",
    )
    return user, strategy


def _bench_cache(user: Any, strategy: Any, bars: int, hits: int) -> None:
    from backtests.services import backtest_submit

    end = T0 + timedelta(minutes=bars)

    def submit(use_cache: bool) -> tuple[float, Any]:
        started = time.perf_counter()
        run = backtest_submit(user=user, strategy=strategy, start=T0, end=end, use_cache=use_cache)
        run.refresh_from_db()
        return time.perf_counter() - started, run

    cold, run = submit(False)
    assert run.status == "succeeded", run.error
    warm, _ = submit(False)
    hit_times = []
    for _ in range(hits):
        elapsed, hit = submit(True)
        assert hit.cache_hit
        hit_times.append(elapsed)
    hit_median = statistics.median(hit_times)
    print(f"\n1) one backtest, {bars:,} bars, {run.metrics['num_trades']} trades (in process)")
    print(f"   recompute, candles from the database: {cold * 1000:9.1f} ms")
    print(f"   recompute, candles from parquet:      {warm * 1000:9.1f} ms")
    print(f"   cache hit (median of {hits}):            {hit_median * 1000:9.1f} ms")
    print(
        f"   hit is {warm / hit_median:.0f}x faster than a warm recompute, "
        f"{cold / hit_median:.0f}x faster than a cold one (target: >= 50x)"
    )


class Api:
    def __init__(self, host: str, username: str) -> None:
        self.host = host
        self.access = ""
        self.access = self.call(
            "POST", "/api/v1/auth/token/", {"username": username, "password": PASSWORD}
        )["access"]

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://{self.host}{path}",
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        if self.access:
            request.add_header("Authorization", f"Bearer {self.access}")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def until_finished(self, path: str) -> dict[str, Any]:
        state: dict[str, Any] = {}

        def finished() -> bool:
            state.update(self.call("GET", path))
            return state["status"] in ("succeeded", "failed", "cancelled")

        _wait(finished, path, every=0.1)
        return state


def _bench_http(api: Api, strategy: Any, bars: int) -> None:
    end = T0 + timedelta(minutes=bars)
    body = {
        "strategy": strategy.pk,
        "start": T0.isoformat(),
        "end": end.isoformat(),
        "parameters": {"fast": 20, "slow": 100},
    }
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        run = api.call("POST", "/api/v1/backtests/", body)
        run = api.until_finished(f"/api/v1/backtests/{run['id']}/")
        timings.append((time.perf_counter() - started, run))
    (compute, first), (hit, second) = timings
    assert first["status"] == "succeeded" and second["cache_hit"], (first, second)
    print(f"\n2) over HTTP (daphne + Celery worker + Redis), {bars:,} bars")
    print(f"   submit to result, computed by the worker: {compute * 1000:9.1f} ms")
    print(f"   submit to result, cache hit:              {hit * 1000:9.1f} ms")


def _start_worker(env: dict[str, str], processes: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = workdir / f"worker-{processes}.log"
    proc = subprocess.Popen(
        [
            *(str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", str(processes)),
            *("-n", f"bench{processes}@%h", "--without-gossip", "--without-mingle"),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _wait(lambda: b"ready." in log.read_bytes(), "the worker", 60)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _warm_candles(strategy: Any, bars: int) -> None:
    from marketdata.selectors import candles_load

    candles_load(
        instrument_id=strategy.instrument_id,
        timeframe=strategy.timeframe,
        start=T0,
        end=T0 + timedelta(minutes=bars),
    )


def _print_task_times(log: Path, prefix: str) -> None:
    """Where a sweep's time went, from the worker's "Task ... succeeded in N s" lines."""
    pattern = re.compile(rf"Task {re.escape(prefix)}(\w+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")
    seconds: dict[str, list[float]] = {}
    for match in pattern.finditer(log.read_text(errors="replace")):
        seconds.setdefault(match[1], []).append(float(match[2]))
    parts = [
        f"{name} {len(times)} x {sum(times) / len(times):.2f} s" for name, times in seconds.items()
    ]
    print(f"      task times: {'; '.join(parts)}")


def _bench_sweep(api: Api, strategy: Any, bars: int, *, fee: str, label: str) -> float:
    body = {
        "strategy": strategy.pk,
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=bars)).isoformat(),
        # A large sweep: 198 combinations, so fixed launch costs don't hide the workers.
        "grid": {"fast": list(range(4, 40, 2)), "slow": list(range(40, 260, 20))},
        "rank_metric": "sharpe",
        "fee_rate": fee,  # a fee of its own, so no combination is answered from the cache
    }
    # A small sweep first, so each pool process has done its one-off work (connections,
    # first reads) and the timed sweep measures steady running, as for a worker in use.
    warmup = {**body, "grid": {"fast": [5, 8], "slow": [40, 60]}, "fee_rate": f"{fee}9"}
    api.until_finished(f"/api/v1/sweeps/{api.call('POST', '/api/v1/sweeps/', warmup)['id']}/")
    started = time.perf_counter()
    sweep = api.call("POST", "/api/v1/sweeps/", body)
    sweep = api.until_finished(f"/api/v1/sweeps/{sweep['id']}/")
    elapsed = time.perf_counter() - started
    assert sweep["status"] == "succeeded", sweep["error"]
    if label == "1 worker":
        print(f"\n3) sweep of {sweep['combinations_total']} combinations over {bars:,} bars")
    print(
        f"   {label}: {elapsed:6.2f} s (best {sweep['best_parameters']}, sharpe {sweep['best_value']:.2f})"
    )
    return elapsed


if __name__ == "__main__":
    main()
