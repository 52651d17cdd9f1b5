"""Writes for backtest runs and sweeps. Each module has one job:

- `errors`: BacktestInputError (a 400), BacktestConflict (a 409), BacktestCancelled, and
  readable_error, how a failure reads on a run or sweep.
- `run_settings`: RunSettings, run_settings_resolve (request validation), run_engine_config,
  backtest_key (the params hash), candle_count_check, OVERRIDABLE, stored_overrides.
- `runs`: backtest_submit (answered from the cache when it can), backtest_rerun,
  backtest_cancel.
- `execution`: backtest_execute (the task's body), RunProgress, the progress and final
  messages, storing results or a failure.
- `trade_rows`: trades_insert, the bulk insert of a run's trades (the speed trick).
- `exports`: equity_parquet, backtest_export_xlsx, workbook_bytes (the media types and
  download renderers are in persistence.downloads).
- `sweeps`: sweep_submit, sweep_launch, sweep_run_chunk, sweep_finish, sweep_cancel,
  sweep_rank, sweep_message.
- `recovery`: backtest_reap_stale, sweep_reap_stale, backtest_requeue_orphans.
- `dispatch`: enqueueing on commit, the sweep chord and revoking; the one module that
  reaches `backtests.tasks` (imported lazily: the tasks import these services).

Reads (result_run, equity_frame, curve_thin) are in `backtests.selectors`. The names below
are those callers outside this package use; modules inside it import from each other.
"""

from __future__ import annotations

from backtests.services.errors import (
    BacktestCancelled,
    BacktestConflict,
    BacktestInputError,
    readable_error,
)
from backtests.services.execution import (
    backtest_execute,
    final_message,
    headline,
    progress_message,
)
from backtests.services.exports import (
    backtest_export_xlsx,
    equity_parquet,
    workbook_bytes,
)
from backtests.services.recovery import (
    backtest_reap_stale,
    backtest_requeue_orphans,
    sweep_reap_stale,
)
from backtests.services.run_settings import (
    OVERRIDABLE,
    RunSettings,
    backtest_key,
    run_engine_config,
    run_settings_resolve,
    stored_overrides,
)
from backtests.services.runs import backtest_cancel, backtest_rerun, backtest_submit
from backtests.services.sweeps import (
    RANKABLE_METRICS,
    SWEEP_ROW_KIND,
    sweep_cancel,
    sweep_finish,
    sweep_launch,
    sweep_message,
    sweep_rank,
    sweep_run_chunk,
    sweep_submit,
)
from backtests.services.trade_rows import trades_insert

__all__ = [
    "OVERRIDABLE",
    "RANKABLE_METRICS",
    "SWEEP_ROW_KIND",
    "BacktestCancelled",
    "BacktestConflict",
    "BacktestInputError",
    "RunSettings",
    "backtest_cancel",
    "backtest_execute",
    "backtest_export_xlsx",
    "backtest_key",
    "backtest_reap_stale",
    "backtest_requeue_orphans",
    "backtest_rerun",
    "backtest_submit",
    "equity_parquet",
    "final_message",
    "headline",
    "progress_message",
    "readable_error",
    "run_engine_config",
    "run_settings_resolve",
    "stored_overrides",
    "sweep_cancel",
    "sweep_finish",
    "sweep_launch",
    "sweep_message",
    "sweep_rank",
    "sweep_reap_stale",
    "sweep_run_chunk",
    "sweep_submit",
    "trades_insert",
    "workbook_bytes",
]
