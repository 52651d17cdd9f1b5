"""Walk-forward never uses out-of-sample data for a choice.

Two markets share every bar up to the end of fold 1's in-sample window, and differ in every
bar after it. Fold 1 (and fold 0 before it) must choose the same parameters, with the same
in-sample metrics to the last digit, in both; the out-of-sample results, which do read the
changed bars, must differ, which shows the change reached the study at all.
"""

from __future__ import annotations

import pandas as pd
import pytest

from marketdata.services import random_walk_candles
from studies.models import StudyFold
from tests.factories import InstrumentFactory, StrategyFactory
from tests.studies.conftest import BARS, T0, add_candles, submit

pytestmark = pytest.mark.django_db(transaction=True)

IN_SAMPLE, OUT_OF_SAMPLE = 200, 100
CHANGE_AT = IN_SAMPLE + OUT_OF_SAMPLE  # fold 1's in-sample window ends at bar 300


def _changed_after(frame: pd.DataFrame, position: int) -> pd.DataFrame:
    """`frame` with every bar from `position` on replaced by another walk that continues
    from the last unchanged close."""
    other = random_walk_candles(bars=BARS, timeframe="1h", seed=99, start=T0)
    scale = frame["close"].iloc[position - 1] / other["open"].iloc[position]
    changed = frame.copy()
    for column in ("open", "high", "low", "close"):
        changed.iloc[position:, changed.columns.get_loc(column)] = (
            other[column].iloc[position:] * scale * 1.05
        )
    changed.iloc[position:, changed.columns.get_loc("volume")] = other["volume"].iloc[position:]
    return changed


def _study(user, frame: pd.DataFrame, symbol: str, queue):  # type: ignore[no-untyped-def]
    instrument = InstrumentFactory(symbol=symbol)
    add_candles(instrument, frame=frame)
    strategy = StrategyFactory(owner=user, instrument=instrument, kind="sma_cross")
    study = queue.run(
        submit(
            strategy,
            sampler="tpe",
            n_trials=10,
            parallelism=1,
            walk_forward={
                "mode": "anchored",
                "in_sample": IN_SAMPLE,
                "out_of_sample": OUT_OF_SAMPLE,
            },
            compare_whole_period=False,
        )
    )
    assert study.status == "succeeded", study.error
    return {f.index: f for f in StudyFold.objects.filter(study=study)}


def test_changing_every_bar_after_a_folds_in_sample_end_keeps_its_choice(queue, study_user) -> None:
    original = random_walk_candles(bars=BARS, timeframe="1h", seed=7, start=T0)
    changed = _changed_after(original, CHANGE_AT)
    assert (original.iloc[:CHANGE_AT] == changed.iloc[:CHANGE_AT]).all().all()
    assert (original["close"].iloc[CHANGE_AT:] != changed["close"].iloc[CHANGE_AT:]).all()

    before = _study(study_user, original, "LOOKAUSDT", queue)
    after = _study(study_user, changed, "LOOKBUSDT", queue)

    assert before[1].is_end_bar == CHANGE_AT
    for index in (0, 1):
        assert after[index].chosen_parameters == before[index].chosen_parameters
        assert after[index].is_metrics == before[index].is_metrics
        assert after[index].cache_hit is False  # computed on the new market, not reused
    # Fold 1 is tested on the changed bars, fold 2 chooses on them: both see the change.
    assert after[1].oos_metrics != before[1].oos_metrics
    assert after[2].is_metrics != before[2].is_metrics
