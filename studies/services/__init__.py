"""Writes for studies. Each module has one job:

- `submit`: study_submit (request validation, the study row, its launch on commit).
- `driver`: study_launch, study_pump (keeps trials in flight, closes folds and the study),
  study_watch, study_reap_stale, study_cancel, study_fail, study_cancel_cleanup.
- `trials`: trials_execute (a batch of trials on a worker), trial_outcome, trial_finish.
- `sampling`: ask-and-tell with Optuna on the shared storage.
- `results`: a fold's choice and out-of-sample test, the study's curves and summary.
- `keys`: cache keys of trials, folds and results; the study's candles.
- `messages`: the WebSocket messages.
- `exports`: xlsx and CSV of trials and folds.
- `sweeps`: the Deflated Sharpe Ratio and PBO of a backtests sweep.
- `dispatch`: the one module that reaches `studies.tasks`.

Domain errors are backtests' (BacktestInputError is a 400, BacktestConflict a 409).
"""

from __future__ import annotations

from studies.services.driver import (
    study_cancel,
    study_cancel_cleanup,
    study_fail,
    study_launch,
    study_pump,
    study_reap_stale,
    study_watch,
)
from studies.services.exports import study_export_csv, study_export_xlsx
from studies.services.submit import study_submit
from studies.services.sweeps import sweep_overfitting
from studies.services.trials import trials_execute

__all__ = [
    "study_cancel",
    "study_cancel_cleanup",
    "study_export_csv",
    "study_export_xlsx",
    "study_fail",
    "study_launch",
    "study_pump",
    "study_reap_stale",
    "study_submit",
    "study_watch",
    "sweep_overfitting",
    "trials_execute",
]
