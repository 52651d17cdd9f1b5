"""Benchmark of research studies on real Celery workers; prints figures, asserts nothing.

    .venv/bin/python tests/run_with_postgres.py -- .venv/bin/python bench/studies.py \
        [--bars 1000000] [--trials 200] [--wf-bars 1000000] [--wf-folds 10] [--wf-combos 100]

1. A TPE study of --trials trials over --bars 1-minute bars (sma_cross, Sharpe), run by a
   Celery worker with one process, then by one with two: wall time from submit to
   succeeded, and the speed-up (target >= 1.6x).
2. Overhead per trial beyond the engine's own time (target <= 20 ms median), on the
   one-process run, where trials follow each other: each computed trial's cycle (the time
   between its finish and the previous one's: record, ask, backtest, cache) minus the
   backtest's own time as the worker measured it (StudyTrial.engine_seconds); and the
   whole study's time beyond its backtests, per trial. The same backtests run bare in this
   process (run_backtest, the study's settings) are printed beside them.
3. The identical study again: answered from the cache (target >= 50x faster).
4. A walk-forward of --wf-folds rolling folds x --wf-combos grid combinations over
   --wf-bars bars, with two worker processes, against the same backtests run bare one
   after another in this process, with the study's settings (target: at most 1.3x their
   time; the default-settings figure is printed too).

Every figure comes with the machine's load (`uptime`): on a shared 2-core machine, the load
from other work moves them a lot. Uses DATABASE_URL when set (PostgreSQL), else SQLite.
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

from config.serve import start_embedded_redis  # noqa: E402

BIN = Path(sys.executable).parent
T0 = datetime(2022, 1, 1, tzinfo=UTC)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _wait(check: Any, what: str, timeout: float = 3600.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def _create_postgres_database(env: dict[str, str]) -> str:
    url = env.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return ""
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = f"tradelab_bench_studies_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    env["THROWAWAY_ADMIN_DSN"] = admin
    return name


def _start_worker(env: dict[str, str], processes: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = workdir / f"worker-{processes}.log"
    proc = subprocess.Popen(
        [
            *(str(BIN / "celery"), "-A", "config", "worker", "-l", "warning", "-c", str(processes)),
            *("-n", f"bench{processes}@%h", "--without-gossip", "--without-mingle"),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(2)
    _wait(lambda: proc.poll() is None and _worker_ready(env, processes), "the worker", 60)
    return proc


def _worker_ready(env: dict[str, str], processes: int) -> bool:
    from config.celery import app

    replies = app.control.ping(timeout=0.5) or []
    return any(f"bench{processes}@" in name for reply in replies for name in reply)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _setup(bars: int) -> tuple[Any, Any]:
    from accounts.models import User
    from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
    from strategies.models import Strategy

    user = User.objects.create_user(username="bench-studies", password="bench-pass-123")  # noqa: S106
    instrument = instrument_for_symbol("STUDYBENCHUSDT")
    started = time.perf_counter()
    frame = random_walk_candles(bars=bars, timeframe="1m", seed=3, start=T0)
    candles_upsert(instrument=instrument, timeframe="1m", frame=frame)
    print(f"setup: {bars:,} 1m candles written in {time.perf_counter() - started:.1f} s")
    strategy = Strategy.objects.create(
        owner=user,
        name="bench",
        kind="sma_cross",
        parameters={"fast": 10, "slow": 100},
        instrument=instrument,
        timeframe="1m",
    )
    return user, strategy


def _run(user: Any, strategy: Any, bars: int, **request: Any) -> tuple[float, Any]:
    """Submit a study and wait for it; (seconds from submit to succeeded, the study)."""
    from studies.models import Study
    from studies.services import study_submit

    submitted = datetime.now(UTC)
    study = study_submit(
        user=user, strategy=strategy, start=T0, end=T0 + timedelta(minutes=bars), **request
    )

    def finished() -> Any:
        row = Study.objects.get(pk=study.pk)
        return row if row.status in ("succeeded", "failed", "cancelled") else None

    # Polled every 0.1 s, not faster: on a 2-core machine a busy poller takes CPU from the
    # workers. The time is the study's own finished_at (same clock), not the poll's.
    done = _wait(finished, f"study {study.pk}", every=0.1)
    elapsed = (done.finished_at - submitted).total_seconds() if done.finished_at else 0.0
    if done.status != "succeeded":
        raise SystemExit(f"study {done.pk} {done.status}: {done.error}")
    return elapsed, done


TPE_SPACE = {"fast": {"low": 5, "high": 50}, "slow": {"low": 60, "high": 400, "step": 10}}


def _bare_seconds(
    candles: Any,
    params: dict[str, Any],
    start: int = 0,
    end: int | None = None,
    *,
    config: Any = None,
) -> float:
    """One backtest run bare: `run_backtest` on the bars [start, end), under `config` (the
    study's own engine settings: fees, the instrument's quantity step; the engine's
    defaults when None, which take its faster vectorised path)."""
    from backtests.engine import BacktestConfig, run_backtest
    from strategies.library.base import StrategyRef

    window = candles.iloc[start:end]
    began = time.perf_counter()
    run_backtest(window, StrategyRef("sma_cross", params), config or BacktestConfig(timeframe="1m"))
    return time.perf_counter() - began


def _timeline(study: Any) -> str:
    """Where a study's wall time went: queued (created to started), each worker's first
    start, busy share and trials, and the close (last trial to finished)."""
    from studies.models import StudyTrial

    trials = list(
        StudyTrial.objects.filter(study=study).exclude(started_at=None).exclude(finished_at=None)
    )
    if not trials:
        return "no trial ran"
    span = (study.finished_at - study.started_at).total_seconds()
    parts = [
        f"queued {(study.started_at - study.created_at).total_seconds() * 1000:.0f} ms",
        f"running {span:.2f} s",
    ]
    for worker in sorted({t.worker for t in trials}):
        mine = [t for t in trials if t.worker == worker]
        first = min(t.started_at for t in mine if t.started_at)
        busy = sum(t.duration_seconds or 0.0 for t in mine)
        engine = sum(t.engine_seconds or 0.0 for t in mine)
        parts.append(
            f"{worker or 'the pump'}: {len(mine)} trials, first at "
            f"{(first - study.started_at).total_seconds():.2f} s, busy {busy:.1f} s "
            f"(engine {engine:.1f} s)"
        )
    last = max(t.finished_at for t in trials if t.finished_at)
    parts.append(f"close {(study.finished_at - last).total_seconds() * 1000:.0f} ms")
    return "; ".join(parts)


def _bench_tpe(env: dict[str, str], workdir: Path, user: Any, strategy: Any, args: Any) -> None:
    from backtests.services import run_engine_config
    from marketdata.selectors import candles_load
    from studies.models import StudyTrial

    candles, _ = candles_load(
        instrument_id=strategy.instrument_id,
        timeframe="1m",
        start=T0,
        end=T0 + timedelta(minutes=args.bars),
    )
    request = {"sampler": "tpe", "n_trials": args.trials, "search_space": TPE_SPACE}
    results = {}
    for processes, fee in ((1, "0.0011"), (2, "0.0012")):
        worker = _start_worker(env, processes, workdir)
        try:
            print(f"\nload before: {_uptime()}")
            seconds, study = _run(
                user,
                strategy,
                args.bars,
                parallelism=processes,
                seed=processes,
                overrides={"fee_rate": fee},
                **request,
            )
            print(
                f"TPE {args.trials} trials x {args.bars:,} bars, {processes} worker process(es): "
                f"{seconds:.1f} s ({seconds / args.trials * 1000:.0f} ms a trial)"
            )
            results[processes] = (seconds, study)
            if processes == 2:
                again, cached = _run(
                    user,
                    strategy,
                    args.bars,
                    parallelism=2,
                    seed=2,
                    overrides={"fee_rate": fee},
                    **request,
                )
                print(
                    f"the identical study again: {again * 1000:.0f} ms "
                    f"({cached.trials_cached}/{cached.trials_done} trials cached): "
                    f"{seconds / again:.0f}x faster (target >= 50x); timeline: {_timeline(cached)}"
                )
            print(f"timeline: {_timeline(study)}; load after: {_uptime()}")
        finally:
            _stop(worker)
    one, two = results[1][0], results[2][0]
    print(f"\nspeed-up, 2 worker processes vs 1: {one / two:.2f}x (target >= 1.6x)")
    # The two studies sample different points (TPE, another seed), and the engine's time
    # depends on the parameters (trades): the same ratio per second of engine work.
    work = {
        processes: sum(
            _bare_seconds(
                candles, {**study.parameters, **trial.params}, config=run_engine_config(study)
            )
            for trial in StudyTrial.objects.filter(study=study, state="complete", cache_hit=False)
        )
        for processes, (_, study) in results.items()
    }
    print(
        f"engine work of each study, bare: 1 process {work[1]:.1f} s, 2 processes "
        f"{work[2]:.1f} s; speed-up per second of engine work: "
        f"{(one / work[1]) / (two / work[2]):.2f}x; load: {_uptime()}"
    )

    # Overhead: on the one-process run trials follow each other, so each one's cycle is
    # the time from the previous trial's finish to its own; the engine's share is the
    # backtest's own time, which the worker measures (StudyTrial.engine_seconds).
    study = results[1][1]
    config = run_engine_config(study)
    trials = list(StudyTrial.objects.filter(study=study).order_by("finished_at"))
    previous = study.started_at
    overheads, engines, bare = [], [], []
    for trial in trials:
        cycle = (trial.finished_at - previous).total_seconds()
        previous = trial.finished_at
        if trial.engine_seconds is None:
            continue
        engines.append(trial.engine_seconds)
        overheads.append(cycle - trial.engine_seconds)
        bare.append(_bare_seconds(candles, {**study.parameters, **trial.params}, config=config))
    span = (study.finished_at - study.started_at).total_seconds()
    print(
        f"engine per computed trial: median {statistics.median(engines) * 1000:.1f} ms in the "
        f"worker, {statistics.median(bare) * 1000:.1f} ms run bare here (run_backtest, the "
        f"study's settings)"
    )
    print(
        f"overhead per trial beyond the engine (1 process, {len(overheads)} computed trials): "
        f"median {statistics.median(overheads) * 1000:.1f} ms, "
        f"p90 {sorted(overheads)[int(0.9 * len(overheads))] * 1000:.1f} ms "
        f"(target <= 20 ms median); over the whole study, start and close included: "
        f"{(span - sum(engines)) / len(trials) * 1000:.1f} ms a trial ({len(trials)} trials, "
        f"{len(trials) - len(engines)} answered without a backtest); load: {_uptime()}"
    )


def _bench_walk_forward(
    env: dict[str, str], workdir: Path, user: Any, strategy: Any, args: Any
) -> None:
    from backtests.services import run_engine_config
    from marketdata.selectors import candles_load
    from studies.models import StudyFold

    bars = args.wf_bars
    side = round(args.wf_combos**0.5)
    space = {
        "fast": {"choices": [5 + 5 * i for i in range(side)]},
        "slow": {"choices": [100 + 50 * i for i in range(args.wf_combos // side)]},
    }
    out_of_sample = bars // (2 * args.wf_folds)
    in_sample = bars - args.wf_folds * out_of_sample
    worker = _start_worker(env, 2, workdir)
    try:
        print(f"\nload before: {_uptime()}")
        seconds, study = _run(
            user,
            strategy,
            bars,
            sampler="grid",
            n_trials=args.wf_combos,
            search_space=space,
            parallelism=2,
            seed=0,
            compare_whole_period=False,
            overrides={"fee_rate": "0.0013"},
            walk_forward={
                "mode": "rolling",
                "in_sample": in_sample,
                "out_of_sample": out_of_sample,
            },
        )
    finally:
        _stop(worker)
    folds = list(StudyFold.objects.filter(study=study).order_by("index"))
    runs = study.trials_done + len(folds) + 1  # trials, out-of-sample tests, the stitched run
    print(
        f"walk-forward {len(folds)} folds x {args.wf_combos} combinations over {bars:,} bars "
        f"(in-sample {in_sample:,}, out-of-sample {out_of_sample:,}), 2 worker processes: "
        f"{seconds:.1f} s for {runs} engine runs; load after: {_uptime()}"
    )
    print(f"timeline: {_timeline(study)}")
    candles, _ = candles_load(
        instrument_id=strategy.instrument_id,
        timeframe="1m",
        start=T0,
        end=T0 + timedelta(minutes=bars),
    )
    combos = [
        {"fast": f, "slow": s} for f in space["fast"]["choices"] for s in space["slow"]["choices"]
    ]
    config = run_engine_config(study)

    def bare_runs(config: Any) -> float:
        bare = 0.0
        for fold in folds:
            for params in combos:
                bare += _bare_seconds(
                    candles, params, fold.is_first_bar, fold.is_end_bar, config=config
                )
            bare += _bare_seconds(
                candles,
                fold.chosen_parameters or combos[0],
                fold.is_end_bar,
                fold.oos_end_bar,
                config=config,
            )
        return bare + _bare_seconds(
            candles, combos[0], folds[0].is_end_bar, folds[-1].oos_end_bar, config=config
        )

    bare = bare_runs(config)
    print(
        f"the same {runs} backtests run bare, one after another, with the study's settings: "
        f"{bare:.1f} s; walk-forward / bare: {seconds / bare:.2f}x (target <= 1.3x); "
        f"load: {_uptime()}"
    )
    defaults = bare_runs(None)
    print(
        f"(the same backtests with the engine's default settings, as figures before "
        f"2026-11-30 took them: {defaults:.1f} s; walk-forward / that: "
        f"{seconds / defaults:.2f}x; load: {_uptime()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--wf-bars", type=int, default=1_000_000)
    parser.add_argument("--wf-folds", type=int, default=10)
    parser.add_argument("--wf-combos", type=int, default=100)
    parser.add_argument("--skip-tpe", action="store_true")
    parser.add_argument("--skip-walk-forward", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tradelab-bench-studies-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "TRADELAB_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }
    throwaway_db = _create_postgres_database(env)
    redis, env["REDIS_URL"] = start_embedded_redis(workdir / "redis")
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
        user, strategy = _setup(max(args.bars, args.wf_bars))
        from marketdata.selectors import candles_load

        for bars in {args.bars, args.wf_bars}:
            candles_load(
                instrument_id=strategy.instrument_id,
                timeframe="1m",
                start=T0,
                end=T0 + timedelta(minutes=bars),
            )
        if not args.skip_tpe:
            _bench_tpe(env, workdir, user, strategy, args)
        if not args.skip_walk_forward:
            _bench_walk_forward(env, workdir, user, strategy, args)
    finally:
        _stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
        if throwaway_db:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect(os.environ["THROWAWAY_ADMIN_DSN"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{throwaway_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
