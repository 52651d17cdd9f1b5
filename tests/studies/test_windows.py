"""Walk-forward fold windows: anchored and rolling, in bars and in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from studies.windows import fold_count, fold_windows, length_json, parse_length

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _index(bars: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=bars, freq="h")


def _bounds(folds):  # type: ignore[no-untyped-def]
    return [(f.is_start, f.is_end, f.oos_end) for f in folds]


def test_anchored_folds_grow_from_the_first_bar() -> None:
    folds = fold_windows(
        _index(100),
        end=T0 + timedelta(hours=100),
        mode="anchored",
        in_sample=40,
        out_of_sample=20,
        step=20,
    )
    assert _bounds(folds) == [(0, 40, 60), (0, 60, 80), (0, 80, 100)]
    assert [f.oos_start for f in folds] == [40, 60, 80]


def test_rolling_folds_move_by_step_and_a_partial_last_window_is_no_fold() -> None:
    folds = fold_windows(
        _index(95),
        end=T0 + timedelta(hours=95),
        mode="rolling",
        in_sample=40,
        out_of_sample=20,
        step=10,
    )
    assert _bounds(folds) == [(0, 40, 60), (10, 50, 70), (20, 60, 80), (30, 70, 90)]


def test_more_data_adds_folds_and_keeps_the_earlier_ones() -> None:
    arguments = {"mode": "rolling", "in_sample": 30, "out_of_sample": 10, "step": 10}
    shorter = fold_windows(_index(70), end=T0 + timedelta(hours=70), **arguments)
    longer = fold_windows(_index(80), end=T0 + timedelta(hours=80), **arguments)
    assert _bounds(longer)[: len(shorter)] == _bounds(shorter)
    assert len(longer) == len(shorter) + 1


def test_durations_cut_the_windows_in_time() -> None:
    # Hourly bars, one missing: windows are measured in time, bounds map to the next bar.
    index = _index(120).delete(30)
    folds = fold_windows(
        index,
        end=T0 + timedelta(hours=120),
        mode="rolling",
        in_sample=timedelta(days=2),
        out_of_sample=timedelta(days=1),
        step=timedelta(days=1),
    )
    # Out-of-sample windows end 72, 96 and 120 hours in: the range's end.
    assert len(folds) == 3
    assert folds[0].is_start == 0 and folds[0].is_end == 47  # 48 hours, one bar missing
    assert folds[-1].oos_end == len(index)
    assert index[folds[1].is_start] == pd.Timestamp(T0 + timedelta(days=1))


def test_windows_longer_than_the_data_make_no_fold() -> None:
    assert (
        fold_count(
            start=T0,
            end=T0 + timedelta(hours=50),
            bars=50,
            mode="anchored",
            in_sample=40,
            out_of_sample=20,
            step=20,
        )
        == 0
    )
    assert (
        fold_count(
            start=T0,
            end=T0 + timedelta(hours=50),
            bars=50,
            mode="anchored",
            in_sample=timedelta(days=1),
            out_of_sample=timedelta(hours=12),
            step=timedelta(hours=12),
        )
        == 2
    )


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (500, 500),
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_lengths_are_bars_or_durations(raw, parsed) -> None:  # type: ignore[no-untyped-def]
    assert parse_length(raw) == parsed
    assert parse_length(length_json(parsed)) == parsed


@pytest.mark.parametrize("raw", [0, -3, "30", "3y", "0d", True, 1.5, None])
def test_other_lengths_are_refused(raw) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        parse_length(raw)
