"""backtest_submit, the execution task's service, cancel and recovery after a lost worker."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from backtests import selectors, services
from backtests.engine import TRADE_COLUMNS, EngineError, run_backtest
from backtests.models import BacktestRun, BacktestTrade, RunStatus
from backtests.services import execution
from backtests.services.trade_rows import trades_insert
from marketdata.models import Candle, Instrument
from marketdata.selectors import candles_load
from persistence.models import Artifact, CachedResult
from strategies.library.base import StrategyRef
from tests.backtests.conftest import END, T0
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def submit(user, strategy, **kwargs):  # type: ignore[no-untyped-def]
    return services.backtest_submit(user=user, strategy=strategy, start=T0, end=END, **kwargs)


def execute(run: BacktestRun) -> BacktestRun:
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    return run


def test_a_miss_queues_the_run_and_enqueues_its_task_on_commit(
    user, strategy, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = submit(user, strategy)
    assert run.status == RunStatus.QUEUED
    assert not run.cache_hit
    assert len(run.params_hash) == 64
    assert run.parameters == {"fast": 5, "slow": 20}
    assert len(callbacks) == 1


def test_execution_saves_metrics_trades_and_curves_in_one_go(user, strategy) -> None:
    run = execute(submit(user, strategy))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.progress == 100
    assert run.bars_total == run.bars_done == 600
    assert run.attempts == 1
    assert run.metrics["bars"] == 600
    assert (
        BacktestTrade.objects.filter(run=run).count()
        == run.metrics["num_trades"] + run.metrics["open_trades"]
    )
    frame = selectors.equity_frame(run)
    assert list(frame.columns) == ["equity", "drawdown"]
    assert len(frame) == 600
    assert CachedResult.objects.filter(kind="backtest", params_hash=run.params_hash).exists()


def test_stored_trades_match_the_engines_trades_value_for_value(user, strategy) -> None:
    run = execute(submit(user, strategy))
    candles, _ = candles_load(
        instrument_id=run.instrument_id, timeframe=run.timeframe, start=run.start, end=run.end
    )
    ref = StrategyRef(kind=run.kind, params=run.parameters)
    engine = run_backtest(candles, ref, services.run_engine_config(run)).trades
    stored = list(BacktestTrade.objects.filter(run=run).order_by("entry_time", "id"))
    assert len(stored) == len(engine) > 1
    for trade, expected in zip(stored, engine.itertuples(index=False), strict=True):
        assert trade.direction == expected.direction
        assert trade.entry_time == expected.entry_time.to_pydatetime()
        assert trade.exit_time == expected.exit_time.to_pydatetime()
        assert trade.entry_price == expected.entry_price
        assert trade.exit_price == expected.exit_price
        assert (trade.quantity, trade.pnl, trade.fees) == (
            expected.quantity,
            expected.pnl,
            expected.fees,
        )
        assert trade.duration_seconds == expected.duration
        assert (trade.exit_reason, trade.is_open) == (expected.exit_reason, expected.is_open)
    # A time filter matches stored times exactly, as it would for rows saved by the ORM.
    first = stored[0]
    assert BacktestTrade.objects.filter(run=run, entry_time=first.entry_time).get() == first


def test_an_identical_request_is_answered_from_the_cache_without_a_task(
    user, strategy, django_capture_on_commit_callbacks
) -> None:
    first = execute(submit(user, strategy))
    with django_capture_on_commit_callbacks() as callbacks:
        hit = submit(user, strategy)
    assert callbacks == []
    assert hit.status == RunStatus.SUCCEEDED
    assert hit.cache_hit and hit.shared_from == first
    assert hit.params_hash == first.params_hash
    assert hit.metrics == first.metrics
    from backtests.selectors import backtest_trades

    assert backtest_trades(run=hit).count() == backtest_trades(run=first).count() > 0
    assert CachedResult.objects.get(kind="backtest").hit_count == 1


def test_use_cache_false_recomputes(user, strategy) -> None:
    execute(submit(user, strategy))
    again = submit(user, strategy, use_cache=False)
    assert again.status == RunStatus.QUEUED and not again.cache_hit


def test_any_setting_that_changes_the_result_changes_the_hash(user, strategy) -> None:
    base = submit(user, strategy).params_hash
    assert submit(user, strategy, overrides={"fee_rate": "0.002"}).params_hash != base
    assert submit(user, strategy, overrides={"parameters": {"fast": 6}}).params_hash != base
    assert submit(user, strategy, overrides={"fee_rate": "0.0010"}).params_hash == base


def test_reimported_candles_miss_the_cache(user, strategy, market) -> None:
    first = execute(submit(user, strategy))
    last = Candle.objects.filter(instrument=market).order_by("-ts").first()
    Candle.objects.filter(pk=last.pk).update(close=last.low)
    Instrument.objects.filter(pk=market.pk).update(updated_at=timezone.now())
    again = submit(user, strategy)
    assert again.params_hash != first.params_hash
    assert not again.cache_hit


def test_invalid_parameters_name_the_field_and_the_rule(user, strategy) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        submit(user, strategy, overrides={"parameters": {"fast": 30, "slow": 20}})
    assert caught.value.errors["parameters"]["fast"] == ["Must be less than slow (20)."]
    with pytest.raises(services.BacktestInputError) as caught:
        submit(user, strategy, overrides={"fee_rate": "1.5", "size_fraction": "0"})
    assert set(caught.value.errors) == {"fee_rate", "size_fraction"}


@pytest.mark.parametrize("override", [[1, 2], "fast=3", 7])
def test_parameters_that_are_not_an_object_are_a_field_error(user, strategy, override) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        submit(user, strategy, overrides={"parameters": override})
    assert caught.value.errors["parameters"] == ["Must be an object of parameter values."]


def test_a_range_without_enough_candles_is_refused(user, strategy) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        services.backtest_submit(
            user=user, strategy=strategy, start=T0, end=T0 + timedelta(hours=10)
        )
    assert "needs at least" in caught.value.errors["end"][0]


def test_a_range_wider_than_the_data_runs_over_the_datas_span_and_stores_it(user, strategy) -> None:
    from datetime import UTC, datetime

    exact = submit(user, strategy)
    wide = services.backtest_submit(
        user=user,
        strategy=strategy,
        start=datetime(1900, 1, 1, tzinfo=UTC),
        end=datetime(2199, 1, 1, tzinfo=UTC),
    )
    # The candles open hourly from T0 to END - 1h: the range ends one bar past the last.
    assert (wide.start, wide.end) == (T0, END)
    wide.refresh_from_db()
    assert (wide.start, wide.end) == (T0, END)
    assert wide.params_hash == exact.params_hash


def test_a_range_with_no_candles_is_refused_naming_it_and_the_datas_span(user, strategy) -> None:
    from datetime import UTC, datetime

    with pytest.raises(services.BacktestInputError) as caught:
        services.backtest_submit(
            user=user,
            strategy=strategy,
            start=datetime(2030, 1, 1, tzinfo=UTC),
            end=datetime(2031, 1, 1, tzinfo=UTC),
        )
    assert caught.value.errors == {
        "end": [
            "No 1h candles of BTCUSDT from start 2030-01-01 00:00 UTC to end 2031-01-01 00:00 "
            "UTC: the stored data spans 2024-01-01 00:00 UTC to 2024-01-26 00:00 UTC."
        ]
    }
    assert not BacktestRun.objects.exists()


def test_another_users_strategy_is_refused(user, other_user, market) -> None:
    theirs = StrategyFactory(owner=other_user, instrument=market)
    with pytest.raises(services.BacktestInputError):
        submit(user, theirs)


def test_an_engine_failure_stores_a_readable_error_and_no_results(
    user, strategy, monkeypatch
) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise EngineError("candle close is NaN in 1 bar(s)")

    monkeypatch.setattr(execution, "run_backtest", broken)
    run = execute(submit(user, strategy))
    assert run.status == RunStatus.FAILED
    assert run.error == "candle close is NaN in 1 bar(s)"
    assert not BacktestTrade.objects.filter(run=run).exists()
    assert not CachedResult.objects.filter(kind="backtest").exists()
    assert not Artifact.objects.exists()


def test_a_queued_run_cancelled_never_runs(user, strategy) -> None:
    run = services.backtest_cancel(run=submit(user, strategy))
    assert run.status == RunStatus.CANCELLED
    run = execute(run)
    assert run.status == RunStatus.CANCELLED and run.attempts == 0


def test_a_running_run_cancelled_stops_and_stores_nothing(user, strategy, monkeypatch) -> None:
    run = submit(user, strategy)
    real = execution.run_backtest

    def cancel_midway(candles, ref, config, progress, cache=None):  # type: ignore[no-untyped-def]
        def on_progress(done: int, total: int) -> None:
            if done > total // 2:
                BacktestRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)
            progress(done, total)

        return real(candles, ref, config, progress=on_progress, cache=cache)

    monkeypatch.setattr(execution, "run_backtest", cancel_midway)
    run = execute(run)
    assert run.status == RunStatus.CANCELLED
    assert not BacktestTrade.objects.exists()
    assert not CachedResult.objects.filter(kind="backtest").exists()


def test_cancelling_a_finished_run_is_a_conflict(user, strategy) -> None:
    run = execute(submit(user, strategy))
    with pytest.raises(services.BacktestConflict):
        services.backtest_cancel(run=run)


def test_a_redelivered_task_takes_over_and_stores_results_once(user, strategy) -> None:
    run = submit(user, strategy)
    # What a worker killed mid-run leaves behind: running, under this task id.
    BacktestRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.attempts == 2
    trades = BacktestTrade.objects.filter(run=run).count()
    execute(run)  # a third delivery of the same message changes nothing
    assert BacktestTrade.objects.filter(run=run).count() == trades
    assert CachedResult.objects.filter(kind="backtest").count() == 1


def test_a_superseded_task_does_nothing(user, strategy) -> None:
    run = submit(user, strategy)
    services.backtest_execute(run_id=run.pk, task_id="some-older-message")
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempts == 0


def test_a_run_whose_worker_went_silent_is_requeued_then_failed(
    user, strategy, settings, django_capture_on_commit_callbacks
) -> None:
    settings.BACKTEST_MAX_ATTEMPTS = 2
    run = submit(user, strategy)
    old_task = run.celery_task_id
    silent_since = timezone.now() - timedelta(minutes=10)
    BacktestRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=silent_since
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.backtest_reap_stale() == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.celery_task_id != old_task
    assert len(callbacks) == 1

    BacktestRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=2, heartbeat_at=silent_since
    )
    services.backtest_reap_stale()
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "lost 2 times" in run.error


def test_a_live_run_is_not_reaped(user, strategy) -> None:
    run = submit(user, strategy)
    BacktestRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )
    assert services.backtest_reap_stale() == []


def test_progress_and_the_final_message_reach_the_runs_group(
    user, strategy, settings, django_capture_on_commit_callbacks
) -> None:
    settings.BACKTEST_PROGRESS_MIN_INTERVAL = 0
    run = submit(user, strategy)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"backtest.{run.pk}", channel)
    with django_capture_on_commit_callbacks(execute=True):
        execute(run)
    messages = []
    while True:
        try:
            messages.append(async_to_sync(layer.receive)(channel)["payload"])
        except Exception:
            break
        if messages[-1]["type"] == "final":
            break
    kinds = [m["type"] for m in messages]
    assert kinds.count("progress") >= 3
    assert kinds[-1] == "final"
    progress = [m["progress"] for m in messages]
    assert progress == sorted(progress)
    final = messages[-1]
    assert final["status"] == "succeeded"
    assert set(final["metrics"]) >= {"return_pct", "sharpe", "max_drawdown_pct"}
    assert {"bars_done", "bars_total", "eta_seconds"} <= set(messages[1])


# --- Sizing, fees per fill and the instrument's calendar --------------------------------


def test_sizing_and_fees_per_fill_are_stored_and_reach_the_engine(user, strategy) -> None:
    overrides = {
        "sizing": "fixed_quantity",
        "fixed_quantity": "3",
        "fixed_fee": "1.5",
        "min_fee": "2",
    }
    run = submit(user, strategy, overrides=overrides)
    assert (run.sizing, run.fixed_quantity, run.fixed_fee, run.min_fee) == (
        "fixed_quantity",
        3,
        1.5,
        2,
    )
    config = services.run_engine_config(run)
    assert (config.sizing, config.fixed_quantity, config.fixed_fee, config.min_fee) == (
        "fixed_quantity",
        3.0,
        1.5,
        2.0,
    )
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    trades = BacktestTrade.objects.filter(run=run)
    assert trades.count() > 1
    assert {t.quantity for t in trades} == {3.0}
    # Two fills a closed round trip, each paying at least the minimum fee.
    assert all(t.fees >= 4.0 for t in trades if not t.is_open)
    rerun = services.backtest_rerun(user=user, run=run)
    assert (rerun.sizing, rerun.fixed_quantity, rerun.min_fee) == ("fixed_quantity", 3, 2)


def test_quantities_follow_the_instruments_step_and_minimum_notional(
    user, strategy, market
) -> None:
    Instrument.objects.filter(pk=market.pk).update(quantity_step="0.5")
    strategy.instrument.refresh_from_db()
    fixed = {"sizing": "fixed_quantity", "fixed_quantity": "2.7"}
    run = execute(submit(user, strategy, overrides=fixed))
    trades = BacktestTrade.objects.filter(run=run)
    assert {t.quantity for t in trades} == {2.5}
    # A minimum between the smallest and the largest entry: the smaller orders are skipped.
    notionals = sorted(t.quantity * t.entry_price for t in trades)
    minimum = (notionals[0] + notionals[-1]) / 2
    Instrument.objects.filter(pk=market.pk).update(min_notional=f"{minimum:.2f}")
    strategy.instrument.refresh_from_db()
    run = execute(submit(user, strategy, overrides=fixed))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.metrics["orders_skipped"] > 0
    kept = BacktestTrade.objects.filter(run=run)
    assert 0 < kept.count() < trades.count()
    assert all(t.quantity * t.entry_price >= minimum for t in kept)


def test_the_instruments_calendar_reaches_the_engine_and_keys_the_cache(
    user, strategy, market
) -> None:
    crypto = execute(submit(user, strategy))
    assert services.run_engine_config(crypto).calendar == "24/7"
    Instrument.objects.filter(pk=market.pk).update(asset_class="equity")
    strategy.instrument.refresh_from_db()
    equity = submit(user, strategy)
    # Same bars and settings, another calendar: a different result, never the cached one.
    assert equity.params_hash != crypto.params_hash and not equity.cache_hit
    assert services.run_engine_config(equity).calendar == "exchange"
    equity = execute(equity)
    # Hourly bars all day: 24 bars a session, 252 sessions a year, against 365 days.
    assert equity.metrics["sharpe"] == pytest.approx(crypto.metrics["sharpe"] * (252 / 365) ** 0.5)


def test_changing_the_sizing_or_the_fees_per_fill_changes_the_hash(user, strategy) -> None:
    base = submit(user, strategy).params_hash
    notional = {"sizing": "fixed_notional", "fixed_notional": "5000"}
    assert submit(user, strategy, overrides=notional).params_hash != base
    assert submit(user, strategy, overrides={"fixed_fee": "1"}).params_hash != base
    assert submit(user, strategy, overrides={"min_fee": "0"}).params_hash == base


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sizing": "risk", "risk_pct": "1"}, "stop_loss_pct"),
        ({"sizing": "risk", "stop_loss_pct": "2"}, "risk_pct"),
        ({"sizing": "risk", "risk_pct": "150", "stop_loss_pct": "2"}, "risk_pct"),
        ({"sizing": "fixed_quantity"}, "fixed_quantity"),
        ({"sizing": "fixed_notional", "fixed_notional": "-5"}, "fixed_notional"),
        ({"fixed_quantity": "3"}, "fixed_quantity"),
        ({"sizing": "kelly"}, "sizing"),
        ({"fixed_fee": "-1"}, "fixed_fee"),
        ({"min_fee": "abc"}, "min_fee"),
    ],
)
def test_bad_sizing_and_fee_settings_are_field_errors(user, strategy, overrides, field) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        submit(user, strategy, overrides=overrides)
    assert set(caught.value.errors) == {field}


def test_the_stored_sizing_choices_are_the_engines() -> None:
    from backtests.engine.config import SIZINGS
    from backtests.models import Sizing

    assert list(Sizing.values) == list(SIZINGS)


@pytest.mark.django_db
def test_a_run_with_no_trades_saves_none(strategy) -> None:  # type: ignore[no-untyped-def]
    run = services.backtest_submit(
        user=strategy.owner, strategy=strategy, start=T0, end=END, enqueue=False
    )
    assert trades_insert(run_id=run.pk, trades=pd.DataFrame(columns=TRADE_COLUMNS)) == 0
    assert not BacktestTrade.objects.filter(run=run).exists()


# --- Execution options: entry orders, exits, leverage, margin, borrow and spread ---------


def test_execution_options_are_stored_reach_the_engine_and_key_the_cache(user, strategy) -> None:
    overrides = {
        "entry_order": "limit",
        "entry_offset_pct": "0.20",
        "entry_valid_bars": 3,
        "trailing_stop_pct": "1.5",
        "spread_bps": "4",
    }
    run = submit(user, strategy, overrides=overrides)
    # Decimals as plain strings, without trailing zeros: equal requests share one key.
    assert run.execution == {
        "entry_order": "limit",
        "entry_offset_pct": "0.2",
        "entry_valid_bars": 3,
        "trailing_stop_pct": "1.5",
        "spread_bps": "4",
    }
    config = services.run_engine_config(run)
    assert (config.entry_order, config.entry_offset_pct, config.entry_valid_bars) == (
        "limit",
        0.2,
        3,
    )
    assert (config.trailing_stop_pct, config.spread_bps) == (1.5, 4.0)
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    candles, _ = candles_load(
        instrument_id=run.instrument_id, timeframe=run.timeframe, start=run.start, end=run.end
    )
    direct = run_backtest(candles, StrategyRef(run.kind, run.parameters), config)
    assert run.metrics["final_equity"] == pytest.approx(direct.metrics["final_equity"], rel=1e-12)
    reasons = set(BacktestTrade.objects.filter(run=run).values_list("exit_reason", flat=True))
    assert reasons == set(direct.trades["exit_reason"])
    base = submit(user, strategy).params_hash
    assert run.params_hash != base
    # Spelling out a default changes nothing.
    spelled = {"entry_order": "market", "max_leverage": "1.000", "time_stop_bars": None}
    assert submit(user, strategy, overrides=spelled).params_hash == base
    again = submit(user, strategy, overrides={**overrides, "entry_offset_pct": "0.2"})
    assert again.params_hash == run.params_hash and again.cache_hit


def test_leverage_lets_the_size_fraction_go_above_one(user, strategy) -> None:
    run = execute(submit(user, strategy, overrides={"max_leverage": "3", "size_fraction": "2"}))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert services.run_engine_config(run).size_fraction == 2.0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"entry_order": "limit"}, "entry_offset_pct"),
        ({"entry_offset_pct": "0.5"}, "entry_offset_pct"),
        ({"entry_order": "iceberg"}, "entry_order"),
        ({"max_leverage": "0.5"}, "max_leverage"),
        ({"size_fraction": "2"}, "size_fraction"),
        ({"max_leverage": "2", "size_fraction": "3"}, "size_fraction"),
        ({"trailing_stop_pct": "0"}, "trailing_stop_pct"),
        ({"time_stop_bars": 0}, "time_stop_bars"),
        ({"time_stop_bars": 2.5}, "time_stop_bars"),
        ({"atr_stop_multiple": "-1"}, "atr_stop_multiple"),
        ({"borrow_rate_pct": "lots"}, "borrow_rate_pct"),
        ({"spread_bps": "-3"}, "spread_bps"),
    ],
)
def test_bad_execution_options_are_refused_naming_the_field(
    user, strategy, overrides, field
) -> None:
    with pytest.raises(services.BacktestInputError) as caught:
        submit(user, strategy, overrides=overrides)
    assert list(caught.value.errors) == [field]
    assert not BacktestRun.objects.exists()
