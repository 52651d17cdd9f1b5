"""`seed_study`: one finished walk-forward study for the demo user, so the lab's study pages
have something to show on a fresh `make run`.

It runs here, in-process, through the same services the workers run: Celery runs eagerly
(seed_research's `tasks_in_process`), so the launch runs as soon as the study is committed
and each batch of trials runs inside the dispatch that sent it. Parallelism 1 keeps one
batch in flight at a time, so every pump runs with nothing in flight and the study never
waits on a watch task. Optuna writes through a connection of its own, which a Django
transaction cannot wrap (studies.storage): a study that does not succeed is deleted
instead, with its Optuna studies, so nothing of it is kept.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime, timedelta
from typing import Any

import optuna
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from backtests.management.commands.seed_research import tasks_in_process
from backtests.models import RunStatus
from backtests.services import BacktestInputError
from marketdata.selectors import candle_list, candle_span
from marketdata.timeframes import TIMEFRAME_SECONDS
from strategies.models import Strategy
from strategies.selectors import strategy_owned_list
from studies import selectors, services
from studies.models import Study, StudyFold, StudyMode
from studies.storage import optuna_storage

# A strategy `seed_demo` creates (trading may not be imported from here).
SEED_STUDY_STRATEGY = "BTC SMA 20/100"
# 4 x 4 = 16 points per optimisation; three folds and the whole period make 64 trials.
SEED_STUDY_SPACE: dict[str, dict[str, list[int]]] = {
    "fast": {"choices": [10, 20, 30, 40]},
    "slow": {"choices": [60, 100, 140, 180]},
}
# Rolling windows as shares of the data: in-sample two fifths, out-of-sample (and step)
# one fifth make three folds whatever the number of bars.
IN_SAMPLE_SHARE, OUT_OF_SAMPLE_SHARE = 2 / 5, 1 / 5
MIN_BARS = 200


class SeedStudyFailed(Exception):
    """The study did not succeed; it has been deleted."""


def _full_range(strategy: Strategy) -> tuple[datetime, datetime]:
    """From the first stored bar of the strategy's series to one bar past the last."""
    span = candle_span(instrument_id=strategy.instrument_id, timeframe=strategy.timeframe)
    if span is None:
        raise SeedStudyFailed(
            f"no {strategy.timeframe} candles of {strategy.instrument.symbol} are stored"
        )
    bar = timedelta(seconds=TIMEFRAME_SECONDS[strategy.timeframe])
    return span[0].to_pydatetime(), span[1].to_pydatetime() + bar


def _discard(study_id: int) -> None:
    """Delete a study that did not finish, and its Optuna studies: the one place outside
    the services that deletes a study, because no service deletes one (the API and the
    admin keep every study)."""
    names = list(
        StudyFold.objects.filter(study_id=study_id).values_list("optuna_study_name", flat=True)
    )
    storage = optuna_storage()
    for name in names:
        with contextlib.suppress(KeyError):  # a fold that never started has no Optuna study
            optuna.delete_study(study_name=name, storage=storage)
    Study.objects.filter(pk=study_id).delete()


def seed_study(user: User, strategy: Strategy) -> Study:
    """Run the demo's walk-forward to its end; a study that does not succeed is deleted
    and SeedStudyFailed says why."""
    start, end = _full_range(strategy)
    bars = candle_list(
        instrument_id=strategy.instrument_id, timeframe=strategy.timeframe, start=start, end=end
    ).count()
    if bars < MIN_BARS:
        raise SeedStudyFailed(f"{bars} bars are too few for a walk-forward (at least {MIN_BARS})")
    out_of_sample = int(bars * OUT_OF_SAMPLE_SHARE)
    study: Study | None = None
    try:
        with tasks_in_process():
            study = services.study_submit(
                user=user,
                strategy=strategy,
                start=start,
                end=end,
                sampler="grid",
                n_trials=16,
                search_space=SEED_STUDY_SPACE,
                objectives=[{"metric": "sharpe", "direction": "maximize"}],
                min_trades=3,
                parallelism=1,
                seed=7,
                walk_forward={
                    "mode": "rolling",
                    "in_sample": int(bars * IN_SAMPLE_SHARE),
                    "out_of_sample": out_of_sample,
                    "step": out_of_sample,
                },
                compare_whole_period=True,
            )
        study.refresh_from_db()
    except BaseException:
        if study is not None:
            _discard(study.pk)
        raise
    if study.status != RunStatus.SUCCEEDED:
        reason = study.error or f"the study ended {study.status}"
        _discard(study.pk)
        raise SeedStudyFailed(reason)
    return study


class Command(BaseCommand):
    help = (
        "Seed one finished walk-forward study for the demo user (DEMO_USERNAME, default "
        "demo), computed here. Run seed_demo first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the demo user already has any study.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_USERNAME", "demo")
        user = User.objects.filter(username=username).first()
        if user is None:
            self.stdout.write(f"No user {username!r} (seed_demo creates it); study not seeded.")
            return
        own = selectors.study_list(user=user).filter(owner=user)
        if options["if_empty"] and own.exists():
            self.stdout.write(f"User {username!r} already has a study; none seeded.")
            return
        strategy = strategy_owned_list(user=user).filter(name=SEED_STUDY_STRATEGY).first()
        if strategy is None:
            self.stdout.write(f"No demo strategy {SEED_STUDY_STRATEGY!r}; study not seeded.")
            return
        finished = own.filter(
            strategy=strategy, mode=StudyMode.WALK_FORWARD, status=RunStatus.SUCCEEDED
        )
        if finished.exists():
            self.stdout.write(f"A finished study of {SEED_STUDY_STRATEGY} exists; none seeded.")
            return
        started = time.monotonic()
        try:
            study = seed_study(user, strategy)
        except SeedStudyFailed as exc:
            raise CommandError(
                f"{SEED_STUDY_STRATEGY} study: {exc}. Nothing of it was kept; run "
                "`manage.py seed_study` again to retry."
            ) from exc
        except BacktestInputError as exc:
            raise CommandError(
                f"{SEED_STUDY_STRATEGY} study: invalid request {exc.errors}. Nothing was kept."
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Study seeded for {username} in {time.monotonic() - started:.1f} s: a "
                f"walk-forward of {SEED_STUDY_STRATEGY}, {study.folds_total} folds and "
                f"{study.trials_done} trials; see /lab/studies/{study.pk}/."
            )
        )
