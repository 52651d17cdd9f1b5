"""`run_backtest --strategy ID --start ... --end ...`: run one backtest here, with a progress
bar, through the same services (and cache) as the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from backtests import services
from backtests.engine import HEADLINE_METRICS
from backtests.models import RunStatus
from strategies.models import Strategy


def _aware(text: str) -> datetime:
    value = parse_datetime(text) or (parse_datetime(f"{text}T00:00:00") if text else None)
    if value is None:
        raise CommandError(f"{text!r} is not a date or datetime (ISO 8601)")
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


class Command(BaseCommand):
    help = (
        "Run a backtest of a strategy over [start, end) in this process (no worker needed) "
        "and print its headline metrics. Identical requests are answered from the cache."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strategy", type=int, required=True, help="Strategy id")
        parser.add_argument("--start", required=True, help="ISO date or datetime, UTC")
        parser.add_argument("--end", required=True, help="ISO date or datetime, UTC (exclusive)")
        parser.add_argument("--no-cache", action="store_true", help="Recompute even if cached")

    def handle(self, *args: Any, **options: Any) -> None:
        strategy = (
            Strategy.objects.select_related("owner", "instrument")
            .filter(pk=options["strategy"])
            .first()
        )
        if strategy is None:
            raise CommandError(f"no strategy with id {options['strategy']}")
        try:
            run = services.backtest_submit(
                user=strategy.owner,
                strategy=strategy,
                start=_aware(options["start"]),
                end=_aware(options["end"]),
                use_cache=not options["no_cache"],
                enqueue=False,
            )
        except services.BacktestInputError as exc:
            raise CommandError(f"invalid request: {exc.errors}") from exc
        if run.cache_hit:
            self.stdout.write(f"Run #{run.pk}: answered from the cache ({run.params_hash[:12]})")
        else:
            with tqdm(total=100, desc=f"run #{run.pk}", unit="%", file=self.stderr) as bar:

                def on_tick(percent: float) -> None:
                    bar.update(percent - bar.n)

                services.backtest_execute(
                    run_id=run.pk, task_id=run.celery_task_id, on_tick=on_tick
                )
                bar.update(100 - bar.n)
            run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"run #{run.pk} {run.status}: {run.error}")
        for name in HEADLINE_METRICS:
            self.stdout.write(f"  {name:>18}: {run.metrics.get(name)}")
        self.stdout.write(self.style.SUCCESS(f"Run #{run.pk} succeeded"))
