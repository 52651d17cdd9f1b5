"""`seed_research`: finished backtest runs and a finished sweep for the demo user, so the
lab's research pages have something to show on a fresh `make run`.

Everything is computed here, in-process, through the same services a worker runs. Each
run or sweep is seeded in a transaction of its own: it is kept finished, or not at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import User
from backtests import selectors, services
from backtests.models import RunStatus
from marketdata.selectors import candle_span
from marketdata.timeframes import TIMEFRAME_SECONDS
from persistence.progress import progress_bar
from strategies.models import Strategy
from strategies.selectors import strategy_owned_list

# Names of strategies `seed_demo` creates (trading may not be imported from here).
SEED_RUNS = (
    "BTC SMA 20/100",
    "ETH MACD",
    "BTC buy & hold",
    "BTC Donchian",
    "ETH Bollinger",
    "BTC RSI reversion",
)
# Three varied parameters, 4 x 4 x 3 = 48 combinations: the heatmap shows the first two.
SEED_SWEEP_STRATEGY = "BTC RSI reversion"
SEED_SWEEP_GRID: dict[str, list[Any]] = {
    "window": [7, 14, 21, 28],
    "oversold": [20, 25, 30, 35],
    "overbought": [65, 70, 75],
}


class SeedItemFailed(Exception):
    """One run or sweep did not finish; its transaction is rolled back."""


@dataclass
class Seeded:
    runs: int = 0
    trades: int = 0
    sweeps: int = 0
    combinations: int = 0
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@contextmanager
def tasks_in_process() -> Iterator[None]:
    """Run Celery tasks eagerly, here, for the duration: a sweep fans out as a chord of
    chunk tasks (backtests.services.dispatch), which then run in this process, in order."""
    conf = current_app.conf
    previous = conf.task_always_eager
    conf.task_always_eager = True
    try:
        yield
    finally:
        conf.task_always_eager = previous


def _full_range(strategy: Strategy) -> tuple[datetime, datetime]:
    """From the first stored bar of the strategy's series to one bar past the last."""
    span = candle_span(instrument_id=strategy.instrument_id, timeframe=strategy.timeframe)
    if span is None:
        raise SeedItemFailed(
            f"no {strategy.timeframe} candles of {strategy.instrument.symbol} are stored"
        )
    bar = timedelta(seconds=TIMEFRAME_SECONDS[strategy.timeframe])
    return span[0].to_pydatetime(), span[1].to_pydatetime() + bar


def _run_seed(user: User, strategy: Strategy) -> int:
    """Submit and execute one run; its trade count. Raises SeedItemFailed unless it
    succeeded (the caller's transaction then drops it)."""
    start, end = _full_range(strategy)
    run = services.backtest_submit(
        user=user, strategy=strategy, start=start, end=end, enqueue=False
    )
    if not run.cache_hit:
        services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
        run.refresh_from_db()
    if run.status != RunStatus.SUCCEEDED:
        raise SeedItemFailed(run.error or f"the run ended {run.status}")
    return selectors.backtest_trades(run=run).count()


def _sweep_seed(user: User, strategy: Strategy) -> int:
    """Submit and launch the sweep, chunks and ranking included; its combination count."""
    start, end = _full_range(strategy)
    sweep = services.sweep_submit(
        user=user, strategy=strategy, start=start, end=end, grid=SEED_SWEEP_GRID
    )
    services.sweep_launch(sweep_id=sweep.pk, task_id=sweep.celery_task_id)
    sweep.refresh_from_db()
    if sweep.status != RunStatus.SUCCEEDED:
        raise SeedItemFailed(sweep.error or f"the sweep ended {sweep.status}")
    return sweep.combinations_total


class Command(BaseCommand):
    help = (
        "Seed finished backtest runs and a finished parameter sweep for the demo user "
        "(DEMO_USERNAME, default demo), computed here. Run seed_demo first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the demo user already has any backtest run or sweep.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_USERNAME", "demo")
        user = User.objects.filter(username=username).first()
        if user is None:
            self.stdout.write(f"No user {username!r} (seed_demo creates it); research not seeded.")
            return
        own_runs = selectors.backtest_list(user=user).filter(owner=user)
        own_sweeps = selectors.sweep_list(user=user).filter(owner=user)
        if options["if_empty"] and (own_runs.exists() or own_sweeps.exists()):
            self.stdout.write(f"User {username!r} already has research; none seeded.")
            return

        strategies = {s.name: s for s in strategy_owned_list(user=user)}
        seeded = Seeded()
        started = time.monotonic()
        total = len(SEED_RUNS) + 1
        with progress_bar("research", total, "item", self.stderr) as progress:
            for done, name in enumerate(SEED_RUNS, start=1):
                strategy = strategies.get(name)
                finished = own_runs.filter(strategy=strategy, status=RunStatus.SUCCEEDED)
                if strategy is None:
                    seeded.missing.append(name)
                elif finished.exists():
                    seeded.skipped.append(name)
                else:
                    trades = self._seed_one(name, seeded, _run_seed, user, strategy)
                    if trades is not None:
                        seeded.runs += 1
                        seeded.trades += trades
                progress(done, total)
            label = f"{SEED_SWEEP_STRATEGY} sweep"
            strategy = strategies.get(SEED_SWEEP_STRATEGY)
            finished_sweeps = own_sweeps.filter(strategy=strategy, status=RunStatus.SUCCEEDED)
            if strategy is None:
                seeded.missing.append(label)
            elif finished_sweeps.exists():
                seeded.skipped.append(label)
            else:
                with tasks_in_process():
                    combinations = self._seed_one(label, seeded, _sweep_seed, user, strategy)
                if combinations is not None:
                    seeded.sweeps += 1
                    seeded.combinations = combinations
            progress(total, total)
        self._report(username, seeded, time.monotonic() - started)

    def _seed_one(
        self,
        label: str,
        seeded: Seeded,
        seed: Callable[[User, Strategy], int],
        user: User,
        strategy: Strategy,
    ) -> int | None:
        """`seed(user, strategy)` in a transaction of its own: its count, or None when it
        failed (recorded in `seeded.failures`, and nothing of it kept)."""
        try:
            with transaction.atomic():
                return seed(user, strategy)
        except SeedItemFailed as exc:
            seeded.failures.append(f"{label}: {exc}")
        except services.BacktestInputError as exc:
            seeded.failures.append(f"{label}: invalid request {exc.errors}")
        return None

    def _report(self, username: str, seeded: Seeded, seconds: float) -> None:
        if seeded.skipped:
            self.stdout.write(f"Already finished, left alone: {', '.join(seeded.skipped)}.")
        if seeded.missing:
            self.stdout.write(f"No such demo strategy, skipped: {', '.join(seeded.missing)}.")
        sweeps = f"a sweep of {seeded.combinations} combinations" if seeded.sweeps else "no sweep"
        summary = (
            f"Research seeded for {username} in {seconds:.1f} s: {seeded.runs} finished runs "
            f"({seeded.trades} trades) and {sweeps}; see /lab/."
        )
        if not seeded.failures:
            self.stdout.write(self.style.SUCCESS(summary))
            return
        self.stdout.write(summary)
        for failure in seeded.failures:
            self.stderr.write(self.style.ERROR(f"Not seeded (nothing of it kept): {failure}"))
        raise CommandError(
            f"{len(seeded.failures)} item(s) failed and were not seeded: "
            f"{'; '.join(seeded.failures)}. Run `manage.py seed_research` again to retry them."
        )
