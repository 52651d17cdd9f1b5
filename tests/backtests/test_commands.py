"""manage.py run_backtest, and recovery of runs an empty embedded broker has forgotten."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from backtests import services
from backtests.models import BacktestRun, RunStatus
from tests.backtests.conftest import END, T0

pytestmark = pytest.mark.django_db


def test_run_backtest_runs_in_process_then_answers_from_the_cache(strategy) -> None:
    args = ["--strategy", str(strategy.pk), "--start", "2024-01-01", "--end", END.isoformat()]
    out = StringIO()
    call_command("run_backtest", *args, stdout=out, stderr=StringIO())
    assert "succeeded" in out.getvalue() and "return_pct" in out.getvalue()
    assert BacktestRun.objects.get().status == RunStatus.SUCCEEDED
    out = StringIO()
    call_command("run_backtest", *args, stdout=out)
    assert "answered from the cache" in out.getvalue()


def test_run_backtest_reports_invalid_requests(strategy) -> None:
    with pytest.raises(CommandError, match="needs at least"):
        call_command(
            "run_backtest",
            "--strategy",
            str(strategy.pk),
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-01T05:00:00",
        )


def test_unfinished_runs_are_requeued_for_a_fresh_broker(
    user, strategy, django_capture_on_commit_callbacks
) -> None:
    queued = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    running = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, use_cache=False
    )
    BacktestRun.objects.filter(pk=running.pk).update(status=RunStatus.RUNNING)
    old_ids = {queued.celery_task_id, running.celery_task_id}
    with django_capture_on_commit_callbacks() as callbacks:
        assert sorted(services.backtest_requeue_orphans()) == sorted([queued.pk, running.pk])
    assert len(callbacks) == 2
    runs = BacktestRun.objects.all()
    assert {r.status for r in runs} == {RunStatus.QUEUED}
    assert not old_ids & {r.celery_task_id for r in runs}
