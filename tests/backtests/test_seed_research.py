"""`seed_research` leaves the demo user finished runs and a finished sweep, once, and
nothing half-done when an item fails."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from backtests.engine import EngineError
from backtests.management.commands.seed_research import SEED_RUNS
from backtests.models import BacktestRun, BacktestTrade, RunStatus, Sweep
from backtests.services import execution, sweeps
from persistence.models import CachedResult
from strategies.models import Strategy

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo() -> User:
    call_command("seed_demo", bars=400, stdout=StringIO(), stderr=StringIO())
    return User.objects.get(username="demo")


def seed_research(*args: str) -> str:
    out = StringIO()
    call_command("seed_research", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_seed_research_finishes_runs_and_a_three_parameter_sweep(demo) -> None:
    output = seed_research("--if-empty")

    runs = BacktestRun.objects.filter(owner=demo).select_related("strategy")
    assert sorted(run.strategy.name for run in runs) == sorted(SEED_RUNS)
    assert {"BTC SMA 20/100", "ETH MACD", "BTC buy & hold", "BTC Donchian"} <= set(SEED_RUNS)
    for run in runs:
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert run.bars_done == 400
        assert "return_pct" in run.metrics and "sharpe" in run.metrics
    trades = BacktestTrade.objects.filter(run__owner=demo).count()
    assert trades > 0
    sma = runs.get(strategy__name="BTC SMA 20/100")
    assert BacktestTrade.objects.filter(run=sma).exists()

    sweep = Sweep.objects.get(owner=demo)
    assert sweep.status == RunStatus.SUCCEEDED, sweep.error
    varied = [name for name, values in sweep.grid.items() if len(values) > 1]
    assert len(varied) == 3
    assert sweep.combinations_total == sweep.combinations_done == 48
    assert len(sweep.results) == 48
    assert sweep.best_parameters == sweep.results[0]["params"]
    assert f"{len(SEED_RUNS)} finished runs ({trades} trades)" in output
    assert "a sweep of 48 combinations" in output


def test_seed_research_run_again_creates_nothing(demo) -> None:
    seed_research()
    runs, sweep_ids = BacktestRun.objects.count(), list(Sweep.objects.values_list("pk", flat=True))

    output = seed_research()

    assert BacktestRun.objects.count() == runs
    assert list(Sweep.objects.values_list("pk", flat=True)) == sweep_ids
    assert "0 finished runs" in output and "no sweep" in output


def test_if_empty_does_nothing_when_the_demo_user_has_a_run(demo) -> None:
    call_command(
        "run_backtest",
        "--strategy",
        str(Strategy.objects.get(owner=demo, name="ETH MACD").pk),
        "--start",
        "2000-01-01",
        "--end",
        "2100-01-01",
        stdout=StringIO(),
        stderr=StringIO(),
    )

    output = seed_research("--if-empty")

    assert "already has research" in output
    assert BacktestRun.objects.count() == 1
    assert not Sweep.objects.exists()


def test_without_the_demo_user_nothing_is_seeded(db) -> None:
    output = seed_research("--if-empty")
    assert "No user 'demo'" in output
    assert not BacktestRun.objects.exists()


def test_a_run_failing_midway_leaves_nothing_of_it_and_is_reported(demo, monkeypatch) -> None:
    real_engine = execution.run_backtest

    def donchian_breaks(candles, strategy, config, progress=None, cache=None):  # type: ignore[no-untyped-def]
        if strategy.kind == "donchian_breakout":
            progress(len(candles) // 2, len(candles))
            raise EngineError("the engine broke halfway")
        return real_engine(candles, strategy, config, progress=progress, cache=cache)

    monkeypatch.setattr(execution, "run_backtest", donchian_breaks)

    with pytest.raises(CommandError, match="BTC Donchian: the engine broke halfway"):
        seed_research()

    names = set(BacktestRun.objects.values_list("strategy__name", flat=True))
    assert names == set(SEED_RUNS) - {"BTC Donchian"}
    assert set(BacktestRun.objects.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}
    assert Sweep.objects.get().status == RunStatus.SUCCEEDED

    # Once the engine works again, a second pass seeds only what is missing.
    monkeypatch.setattr(execution, "run_backtest", real_engine)
    output = seed_research()
    assert "1 finished runs" in output
    assert BacktestRun.objects.filter(strategy__name="BTC Donchian").count() == 1


def test_a_failing_sweep_leaves_no_sweep_and_no_cached_row(demo, monkeypatch) -> None:
    def broken_sweep(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise EngineError("the sweep broke")

    monkeypatch.setattr(sweeps, "run_sweep", broken_sweep)

    with pytest.raises(CommandError, match="BTC RSI reversion sweep: the sweep broke"):
        seed_research()

    assert not Sweep.objects.exists()
    assert not CachedResult.objects.filter(kind=sweeps.SWEEP_ROW_KIND).exists()
    assert BacktestRun.objects.filter(status=RunStatus.SUCCEEDED).count() == len(SEED_RUNS)
