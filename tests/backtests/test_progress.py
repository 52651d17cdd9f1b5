"""The progress throttle: about ten messages a second at most, one per percent at most."""

from __future__ import annotations

from backtests.progress import ProgressThrottle


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
