"""Benchmark of the back-office at scale; prints figures, asserts nothing.

    .venv/bin/python bench/ux.py [--trades 10000 50000] [--bars 20000] [--repeat 5]

For each --trades size, a backtest run with that many trades (a real run over --bars
1-minute bars, so its metrics and equity curve are real, topped up with bulk-inserted
trades), then, through Django's test client as a superuser (the full Django stack and the
database, in process, no network):

1. the run's admin change page,
2. the run's trade list (`/admin/backtests/backtesttrade/?run__id__exact=<id>`), page one;

each with its HTML size, the server time (median of --repeat requests after one warm-up)
and the number of database queries. The target for both pages is under 1 s.

Uses a scratch database: DATABASE_URL's server when set (a database of its own, dropped at
the end), else a throwaway SQLite file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, nargs="+", default=[10_000])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tradelab-ux-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TRADELAB_VAR_DIR": str(workdir / "var"),
            "MEDIA_ROOT": str(workdir / "media"),
            # The run is computed in-line: no broker, no worker.
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    throwaway_db = _create_postgres_database()
    _load()
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        vendor = connection.vendor
        print(f"database: {vendor}" + ("" if vendor == "postgresql" else " (SQLite file)"))
        user, strategy = _setup_market(args.bars)
        for size in args.trades:
            _bench_size(user, strategy, args.bars, size, args.repeat)
    finally:
        _load()
        if throwaway_db:
            from django.db import connections

            connections.close_all()
            _drop_postgres_database(throwaway_db)
        shutil.rmtree(workdir, ignore_errors=True)


def _load() -> None:
    """The machine's load, with every figure (CONTRIBUTING.md, "Measure on a shared machine")."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"load: {uptime.strip()} ({os.cpu_count()} cores)")


def _create_postgres_database() -> str:
    """On PostgreSQL, a database of our own, so the bench never touches real data."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return ""
    import psycopg

    name = f"tradelab_ux_{os.getpid()}"
    admin_dsn = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    os.environ["THROWAWAY_ADMIN_DSN"] = admin_dsn
    return name


def _drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["THROWAWAY_ADMIN_DSN"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _setup_market(bars: int) -> tuple[Any, Any]:
    from accounts.models import User
    from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
    from strategies.models import Strategy

    user = User.objects.create_superuser("bench", "bench@example.com", "bench-password-123")
    instrument = instrument_for_symbol("BENCHUSDT")
    frame = random_walk_candles(bars=bars, timeframe="1m", seed=5, start=T0)
    candles_upsert(instrument=instrument, timeframe="1m", frame=frame)
    strategy = Strategy.objects.create(
        owner=user,
        name="ux bench",
        kind="sma_cross",
        parameters={"fast": 5, "slow": 20},
        instrument=instrument,
        timeframe="1m",
    )
    return user, strategy


def _bench_size(user: Any, strategy: Any, bars: int, trades: int, repeat: int) -> None:
    from backtests.models import BacktestTrade
    from backtests.services import backtest_submit

    started = time.perf_counter()
    # A fee of its own per size, so each size computes a run rather than hitting the cache.
    strategy.fee_rate = f"0.00{trades % 97 + 1:02d}"
    strategy.save(update_fields=["fee_rate"])
    run = backtest_submit(
        user=user, strategy=strategy, start=T0, end=T0 + timedelta(minutes=bars), use_cache=False
    )
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    computed = BacktestTrade.objects.filter(run=run).count()
    _top_up(run, trades - computed)
    total = BacktestTrade.objects.filter(run=run).count()
    print(
        f"\nrun #{run.pk}: {total:,} trades ({computed:,} computed over {bars:,} bars, the rest "
        f"bulk-inserted), set up in {time.perf_counter() - started:.1f} s"
    )
    pages = {
        "run change page": f"/admin/backtests/backtestrun/{run.pk}/change/",
        "trade list, page 1": f"/admin/backtests/backtesttrade/?run__id__exact={run.pk}",
    }
    print(f"   {'page':<20} {'HTML':>10} {'server (median)':>16} {'queries':>8}")
    for label, url in pages.items():
        size, median, queries = _measure(user, url, repeat)
        print(f"   {label:<20} {size / 1024:8.1f} kB {median * 1000:13.1f} ms {queries:8d}")


def _top_up(run: Any, count: int) -> None:
    """`count` more trades in the run's range, one a minute from its start."""
    from backtests.models import BacktestTrade

    if count <= 0:
        return
    BacktestTrade.objects.bulk_create(
        (
            BacktestTrade(
                run=run,
                direction="long" if i % 2 else "short",
                entry_time=run.start + timedelta(minutes=i),
                exit_time=run.start + timedelta(minutes=i, seconds=30),
                entry_price=100.0 + i % 7,
                exit_price=100.5 + i % 5,
                quantity=1.0,
                pnl=0.5 if i % 3 else -0.75,
                pnl_pct=0.5 if i % 3 else -0.75,
                fees=0.01,
                duration_seconds=30.0,
                exit_reason="signal",
            )
            for i in range(count)
        ),
        batch_size=5_000,
    )


def _measure(user: Any, url: str, repeat: int) -> tuple[int, float, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    first = client.get(url)  # warm-up: templates compiled, caches filled
    assert first.status_code == 200, (url, first.status_code)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    # Counted on a request of its own: capturing queries slows the cursor down.
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return len(first.content), statistics.median(times), len(queries)


if __name__ == "__main__":
    main()
