"""Turning indicator events into target positions without a Python loop over bars.

Both helpers work on "the index of the most recent event of each type", which a running
maximum gives in one vectorised pass; the state machines below are expressed on those.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def last_index(mask: BoolArray) -> np.ndarray:
    """For each bar, the index of the latest bar at or before it where `mask` held, else -1."""
    idx = np.arange(len(mask), dtype=np.int64)
    return np.maximum.accumulate(np.where(mask, idx, -1))


def cross_positions(fast: FloatArray, slow: FloatArray) -> FloatArray:
    """Hold the side of the most recent crossover of `fast` over `slow`.

    +1 after fast crosses above slow, -1 after it crosses below, 0 before the first cross
    (so a backtest does not enter mid-trend when the indicators warm up). A bar where the
    two are equal is no cross: the previous side holds until the other side is reached.
    """
    above = np.greater(fast, slow)  # NaN compares False, so warm-up bars are on neither side
    below = np.less(fast, slow)
    out = np.zeros(len(above))
    on_a_side = above | below
    if not on_a_side.any():
        return out
    first = int(np.argmax(on_a_side))
    if on_a_side[first:].all():
        # Common case: no ties or gaps after the warm-up, so every bar is on one side and
        # the position is simply that side from the first change of side onwards.
        flips = np.flatnonzero(above[first + 1 :] != above[first:-1])
        if len(flips):
            start = first + int(flips[0]) + 1
            tail = out[start:]
            np.copyto(tail, above[start:])
            tail *= 2.0
            tail -= 1.0
        return out
    last_above = last_index(above)
    last_below = last_index(below)
    out[(last_above > last_below) & (last_below >= 0)] = 1.0
    out[(last_below > last_above) & (last_above >= 0)] = -1.0
    return out


def latch_positions(
    long_entry: BoolArray,
    long_exit: BoolArray,
    short_entry: BoolArray,
    short_exit: BoolArray,
) -> FloatArray:
    """A long/flat/short state machine driven by entry and exit events.

    Long while the latest long entry is newer than the latest long exit and the latest
    short entry; short symmetrically. An entry and an exit of the same side on one bar
    leave the entry standing; long and short entries on one bar cancel to flat.
    """
    le = last_index(long_entry)
    lx = last_index(long_exit)
    se = last_index(short_entry)
    sx = last_index(short_exit)
    out = np.zeros(len(long_entry))
    out[(le >= 0) & (le >= lx) & (le > se)] = 1.0
    out[(se >= 0) & (se >= sx) & (se > le)] = -1.0
    return out
