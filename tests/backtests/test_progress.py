"""The progress throttle (about ten messages a second at most, one per percent at most),
and the phases a run reports, which the bar and the text on the page agree on."""

from __future__ import annotations

import pytest

from backtests import services
from backtests.progress import ProgressThrottle
from backtests.services import execution
from marketdata import selectors as market_selectors
from tests.backtests.conftest import BARS, END, T0
from tests.factories import StrategyFactory


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ticks_closer_than_the_interval_are_dropped() -> None:
    clock = Clock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    emitted = []
    for step in range(1, 1001):  # 1000 ticks of 0.1 % over one second
        clock.now = step / 1000
        if throttle.should_emit(step / 10, final=step == 1000):
            emitted.append(step)
    assert 9 <= len(emitted) <= 11
    assert emitted[-1] == 1000


def test_ticks_under_one_percent_apart_are_dropped_however_slow() -> None:
    clock = Clock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    assert throttle.should_emit(0.0)
    clock.now = 5.0
    assert not throttle.should_emit(0.5)
    assert throttle.should_emit(1.0)


def test_the_first_and_the_final_tick_always_pass() -> None:
    clock = Clock()
    throttle = ProgressThrottle(min_interval=0.1, clock=clock)
    assert throttle.should_emit(0.0)
    assert throttle.should_emit(100.0, final=True)


def test_eta_extrapolates_the_time_spent() -> None:
    clock = Clock()
    throttle = ProgressThrottle(clock=clock)
    assert throttle.eta_seconds(0) is None
    clock.now = 10.0
    assert throttle.eta_seconds(25.0) == 30.0
    assert throttle.eta_seconds(100.0) == 0.0


# --- What a run reports as it goes: phases the bar and the text agree on ------------------


@pytest.fixture
def sent(monkeypatch, settings):  # type: ignore[no-untyped-def]
    """Every progress message a run sends, in order (the throttle's interval set to 0)."""
    settings.BACKTEST_PROGRESS_MIN_INTERVAL = 0
    messages: list[dict] = []
    monkeypatch.setattr(
        execution, "group_send", lambda group, message: messages.append(message["payload"])
    )
    return messages


def _execute(user, strategy):  # type: ignore[no-untyped-def]
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END, enqueue=False)
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    return run


@pytest.mark.django_db
def test_a_run_reports_loading_then_simulating_then_saving(
    user, strategy, sent, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(market_selectors, "FETCH_CHUNK", 100)  # several loading ticks
    with django_capture_on_commit_callbacks(execute=True):
        _execute(user, strategy)
    progress = [m for m in sent if m["type"] == "progress"]
    phases = [m["phase"] for m in progress]
    assert phases[0] == "loading candles"  # the start, before the first candle arrives
    order = ["loading candles", "simulating", "saving"]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == order
    assert [m["progress"] for m in progress] == sorted(m["progress"] for m in progress)
    assert sent[-1]["type"] == "final" and sent[-1]["status"] == "succeeded"

    loading = [m for m in progress if m["phase"] == "loading candles"][1:]
    assert [m["phase_done"] for m in loading] == list(range(100, BARS + 1, 100))
    for m in loading:  # the bar is the text's share of the loading phase
        assert m["phase_total"] == BARS and m["bars_done"] == 0
        assert m["progress"] == pytest.approx(
            execution.LOAD_SHARE * m["phase_done"] / BARS, abs=0.01
        )
    simulating = [m for m in progress if m["phase"] == "simulating"]
    assert simulating[0]["progress"] == execution.LOAD_SHARE and simulating[0]["phase_done"] == 0
    for m in simulating:
        assert m["phase_done"] == m["bars_done"] and m["phase_total"] == BARS
        assert execution.LOAD_SHARE <= m["progress"] < execution.SAVE_START
    saving = [m for m in progress if m["phase"] == "saving"]
    assert len(saving) == 1 and saving[0]["progress"] == execution.SAVE_START
    for m in progress:  # the fields the admin's page reads are still there
        assert {"status", "progress", "bars_done", "bars_total", "eta_seconds"} <= set(m)


@pytest.mark.django_db
def test_candles_from_the_parquet_copy_skip_the_loading_phase(user, strategy, sent):
    _execute(user, strategy)  # leaves the range's candles in the parquet cache
    sent.clear()
    other = StrategyFactory(
        owner=user, instrument=strategy.instrument, parameters={"fast": 3, "slow": 30}
    )
    _execute(user, other)
    progress = [m for m in sent if m["type"] == "progress"]
    ticks = [m for m in progress if m["phase"] != "loading candles" or m["progress"] > 0]
    assert {m["phase"] for m in ticks} == {"simulating", "saving"}
    assert min(m["progress"] for m in ticks if m["phase"] == "simulating") == 0


@pytest.mark.django_db
def test_the_rows_own_state_names_the_phase_for_a_late_subscriber(user, strategy) -> None:
    run = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END, enqueue=False)
    assert execution.progress_message(run)["phase"] == "queued"
    run.status, run.progress, run.bars_done, run.bars_total = "running", 20.0, 0, 1000
    message = execution.progress_message(run)
    assert (message["phase"], message["phase_done"], message["phase_total"]) == (
        "loading candles",
        500,
        1000,
    )
    run.progress, run.bars_done = 60.0, 400
    assert execution.progress_message(run)["phase"] == "simulating"
    run.progress = execution.SAVE_START
    assert execution.progress_message(run)["phase"] == "saving"
    run.status = "succeeded"
    assert execution.progress_message(run)["phase"] == "finished"


@pytest.mark.django_db
def test_an_ml_run_counts_its_folds_before_it_simulates(  # type: ignore[no-untyped-def]
    user, strategy, sent, django_capture_on_commit_callbacks
):
    ml = StrategyFactory(
        owner=user,
        instrument=strategy.instrument,
        kind="ml_predictor",
        parameters={"model": 0, "lookahead": 1, "train_window": 200, "retrain_step": 100},
    )
    with django_capture_on_commit_callbacks(execute=True):
        _execute(user, ml)
    progress = [m for m in sent if m["type"] == "progress"]
    training = [m for m in progress if m["phase"] == "training models"]
    folds = training[-1]["phase_total"]
    assert folds == 4  # 600 bars, the first prediction at 233, a fold every 100 bars
    assert [m["phase_done"] for m in training] == [0, *range(folds + 1)]
    phases = [m["phase"] for m in progress]
    assert phases.index("training models") < phases.index("simulating")
    assert [m["progress"] for m in progress] == sorted(m["progress"] for m in progress)
    assert sent[-1]["type"] == "final" and sent[-1]["status"] == "succeeded"
