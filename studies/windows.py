"""Walk-forward windows: which bars each fold optimises on and which it is then tested on.
Pure: numbers and timestamps in, bar positions out; no Django.

A fold k has an in-sample window [is_start, is_end) and the out-of-sample window that
follows it, [is_end, is_end + out_of_sample):

- anchored: is_start is the first bar; is_end = first + in_sample + k * step;
- rolling: is_start = first + k * step; is_end = is_start + in_sample.

Folds are generated while the out-of-sample window ends within the data; a partial last one
is not a fold. Lengths are bar counts (int) or durations (timedelta, "30d"); with durations
the windows are cut in time and each bound maps to the first bar at or after it. Folds
depend only on where the data starts, so adding data at the end adds folds and leaves
the earlier ones exactly as they were (and their cached results valid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

ANCHORED = "anchored"
ROLLING = "rolling"
MODES = (ANCHORED, ROLLING)

# "90m", "12h", "30d", "4w": minutes, hours, days, weeks.
DURATION_PATTERN = re.compile(r"^([1-9][0-9]{0,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Length = int | timedelta


def parse_length(value: Any) -> Length:
    """A window length as given in a request: a positive bar count, or a duration such as
    "30d". Raises ValueError with the message a 400 shows."""
    if isinstance(value, bool):
        raise ValueError("Must be a positive number of bars or a duration such as '30d'.")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("Must be at least 1 bar.")
        return value
    if isinstance(value, str):
        match = DURATION_PATTERN.match(value.strip())
        if match:
            return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    raise ValueError(
        "Must be a positive number of bars or a duration: a number followed by m, h, d or w "
        "(minutes, hours, days, weeks), e.g. '30d'."
    )


def length_json(value: Length) -> int | str:
    """The request's form of a parsed length (bars as an int, a duration as '<n>m')."""
    if isinstance(value, int):
        return value
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


@dataclass(frozen=True)
class FoldWindow:
    """Bar positions of one fold, half-open: [is_start, is_end) then [is_end, oos_end)."""

    index: int
    is_start: int
    is_end: int
    oos_end: int

    @property
    def oos_start(self) -> int:
        return self.is_end


def _bounds(
    origin: Any, limit: Any, *, mode: str, in_sample: Any, out_of_sample: Any, step: Any
) -> list[tuple[Any, Any, Any]]:
    """(is_start, is_end, oos_end) of each fold, in whatever units origin and limit are in
    (bar positions with int lengths, datetimes with timedeltas)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    folds: list[tuple[Any, Any, Any]] = []
    k = 0
    while True:
        if mode == ANCHORED:
            is_start, is_end = origin, origin + in_sample + step * k
        else:
            is_start = origin + step * k
            is_end = is_start + in_sample
        oos_end = is_end + out_of_sample
        if oos_end > limit:
            return folds
        folds.append((is_start, is_end, oos_end))
        k += 1


def fold_count(
    *,
    start: datetime,
    end: datetime,
    bars: int,
    mode: str,
    in_sample: Length,
    out_of_sample: Length,
    step: Length,
) -> int:
    """How many folds a range of `bars` bars over [start, end) has; for validating a request
    before its candles are read. Durations are measured against the range's time span."""
    if isinstance(in_sample, int) != isinstance(out_of_sample, int) or isinstance(
        in_sample, int
    ) != isinstance(step, int):
        raise ValueError("in_sample, out_of_sample and step must all be bars or all durations.")
    if isinstance(in_sample, int):
        return len(
            _bounds(0, bars, mode=mode, in_sample=in_sample, out_of_sample=out_of_sample, step=step)
        )
    return len(
        _bounds(start, end, mode=mode, in_sample=in_sample, out_of_sample=out_of_sample, step=step)
    )


def fold_windows(
    index: pd.DatetimeIndex,
    *,
    end: datetime,
    mode: str,
    in_sample: Length,
    out_of_sample: Length,
    step: Length,
) -> list[FoldWindow]:
    """The folds over the bars of `index` (bar open times, oldest first); `end` is the
    range's exclusive end, which a duration window may reach."""
    if isinstance(in_sample, int):
        bounds = _bounds(
            0,
            len(index),
            mode=mode,
            in_sample=in_sample,
            out_of_sample=out_of_sample,
            step=step,
        )
        return [FoldWindow(k, a, b, c) for k, (a, b, c) in enumerate(bounds)]
    origin = index[0].to_pydatetime() if len(index) else end
    bounds = _bounds(
        origin, end, mode=mode, in_sample=in_sample, out_of_sample=out_of_sample, step=step
    )
    folds: list[FoldWindow] = []
    for times in bounds:
        positions = [int(index.searchsorted(pd.Timestamp(t), side="left")) for t in times]
        if positions[1] > positions[0] and positions[2] > positions[1]:
            folds.append(FoldWindow(len(folds), *positions))
    return folds
