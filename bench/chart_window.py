"""Benchmark of the run page's chart window; prints figures, asserts nothing.

    .venv/bin/python bench/chart_window.py [--bars 1000000] [--repeat 5]

Runs one backtest over --bars 1-minute bars, then times `chart_window` (what
GET /api/v1/backtests/<id>/chart/ computes) for windows from the whole run down to two
hours: with the run's parquet copy of its candles in the cache, and without it (every
window from the database). Prints the median time, the candles drawn, the bars per candle
and the trades of each window.

Uses DATABASE_URL when set (PostgreSQL recommended), else a throwaway SQLite file.
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

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        print("using DATABASE_URL: the bench writes a user, an instrument and a run there")
    workdir = Path(tempfile.mkdtemp(prefix="tradelab-bench-chart-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "TRADELAB_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0", "--no-input"],
            cwd=BASE_DIR,
            env=env,
            check=True,
        )
        os.environ.update(env)
        import django

        django.setup()
        run = _finished_run(args.bars)
        _bench(run, args.bars, args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finished_run(bars: int) -> Any:
    from accounts.models import User
    from backtests import services
    from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
    from strategies.models import Strategy

    user = User.objects.create_user(username=f"chart-bench-{os.getpid()}")
    instrument = instrument_for_symbol(f"CHART{os.getpid()}USDT")
    started = time.perf_counter()
    frame = random_walk_candles(bars=bars, timeframe="1m", seed=5, start=T0)
    candles_upsert(instrument=instrument, timeframe="1m", frame=frame)
    print(f"setup: {bars:,} 1m candles written in {time.perf_counter() - started:.1f} s")
    strategy = Strategy.objects.create(
        owner=user,
        name="chart bench",
        kind="sma_cross",
        parameters={"fast": 10, "slow": 60},
        instrument=instrument,
        timeframe="1m",
    )
    started = time.perf_counter()
    run = services.backtest_submit(
        user=user,
        strategy=strategy,
        start=T0,
        end=T0 + timedelta(minutes=bars),
        enqueue=False,
    )
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    print(f"setup: backtest {run.status} in {time.perf_counter() - started:.1f} s")
    return run


def _bench(run: Any, bars: int, repeat: int) -> None:
    from backtests.chart_window import chart_window
    from marketdata import selectors as market_selectors

    end = T0 + timedelta(minutes=bars)
    windows = [
        ("whole run", None, None),
        ("a tenth", T0 + (end - T0) * 0.45, T0 + (end - T0) * 0.55),
        ("one day", T0 + (end - T0) / 2, T0 + (end - T0) / 2 + timedelta(days=1)),
        ("two hours", T0 + (end - T0) / 2, T0 + (end - T0) / 2 + timedelta(hours=2)),
    ]
    threshold = market_selectors.WINDOW_PARQUET_MIN_BARS
    for label, use_parquet in (("parquet copy cached", True), ("database only", False)):
        market_selectors.WINDOW_PARQUET_MIN_BARS = threshold if use_parquet else 10**12
        print(f"\nchart windows, {label} (median of {repeat}):")
        for name, start, stop in windows:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                window = chart_window(run=run, start=start, end=stop)
                times.append(time.perf_counter() - started)
            print(
                f"  {name:>10}: {statistics.median(times) * 1000:8.1f} ms  "
                f"{window['bars']:>9,} bars as {len(window['candles']['ts']):>5,} candles "
                f"of {window['bucket_bars']:>4} bars, {len(window['trades']):>6,} trades"
            )
    market_selectors.WINDOW_PARQUET_MIN_BARS = threshold


if __name__ == "__main__":
    main()
