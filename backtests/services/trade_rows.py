"""The speed trick of saving a backtest: a run's trades inserted in bulk, bypassing the ORM.

A run can have tens of thousands of trades. `BacktestTrade.objects.bulk_create` builds a
model instance per trade and prepares every value one at a time, which took most of a
recompute's save. Here the engine's trade table is turned into insert-ready tuples a column
at a time, and the rows go in by COPY on PostgreSQL or one `executemany` elsewhere.
Measured on SQLite with 50,000 trades (one transaction, a shared two-core machine):
0.5-0.9 s here against 5.3-5.9 s for `bulk_create` of instances built from the frame's
rows, about 7-10x faster.

For SQLite the datetimes are pre-formatted as the exact text Django itself binds, so rows
written here read back the same as rows the ORM writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from django.db import connection

from backtests.models import BacktestTrade
from backtests.selectors import TRADE_EXPORT_COLUMNS
from persistence.bulk import copy_insert

# Insert order for stored trades: the run, then the columns every trade view shows.
TRADE_COLUMNS = ("run_id", *TRADE_EXPORT_COLUMNS)


def _nullable(values: list[Any], missing: np.ndarray) -> list[Any]:
    if missing.any():
        for i in np.flatnonzero(missing):
            values[i] = None
    return values


def _sqlite_datetimes(values: np.ndarray) -> list[Any]:
    """Naive UTC datetime64 values as the text Django binds on SQLite: str(datetime), i.e.
    "YYYY-MM-DD HH:MM:SS" with ".ffffff" only when there are microseconds."""
    seconds = np.datetime_as_string(values, unit="s")
    micros = np.datetime_as_string(values, unit="us")
    has_micros = values.astype(np.int64) % 1_000_000 != 0
    text = np.char.replace(np.where(has_micros, micros, seconds), "T", " ")
    return text.tolist()


def _trade_rows(run_id: int, trades: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The engine's trades as insert-ready tuples in TRADE_COLUMNS order, column at a time.

    Converting whole columns once (rather than a pandas row and a Timestamp per trade)
    keeps this a small share of the save.
    """
    count = len(trades)

    def floats(name: str) -> list[Any]:
        return trades[name].to_numpy(dtype=np.float64).tolist()

    def maybe_floats(name: str) -> list[Any]:
        column = trades[name].to_numpy(dtype=np.float64)
        return _nullable(column.tolist(), np.isnan(column))

    def times(name: str) -> list[Any]:
        column = trades[name]
        stamps = column.dt.tz_convert("UTC") if column.dt.tz is not None else column
        if connection.vendor == "postgresql":
            converted = list(stamps.dt.to_pydatetime())
        else:
            converted = _sqlite_datetimes(stamps.dt.tz_localize(None).to_numpy("datetime64[us]"))
        return _nullable(converted, column.isna().to_numpy())

    columns = [
        [run_id] * count,
        trades["direction"].astype(str).tolist(),
        times("entry_time"),
        times("exit_time"),
        floats("entry_price"),
        maybe_floats("exit_price"),
        floats("quantity"),
        floats("pnl"),
        floats("pnl_pct"),
        floats("fees"),
        maybe_floats("duration"),
        trades["exit_reason"].astype(str).tolist(),
        trades["is_open"].to_numpy(dtype=bool).tolist(),
    ]
    return list(zip(*columns, strict=True))


def trades_insert(*, run_id: int, trades: pd.DataFrame) -> int:
    """Insert a run's trades in bulk: COPY on PostgreSQL, one executemany elsewhere.

    Values are prepared above as Django would; the table's check constraints still apply.
    Runs inside the caller's transaction.
    """
    if trades.empty:  # a run whose every order was skipped has no trade columns to convert
        return 0
    rows = _trade_rows(run_id, trades)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        copy_insert(BacktestTrade, TRADE_COLUMNS, rows)
        return len(rows)
    quote = connection.ops.quote_name
    table = quote(BacktestTrade._meta.db_table)
    names = ", ".join(quote(BacktestTrade._meta.get_field(c).column) for c in TRADE_COLUMNS)  # type: ignore[union-attr,arg-type]
    marks = ", ".join(["%s"] * len(TRADE_COLUMNS))
    with connection.cursor() as cursor:
        # Names come from the model's meta, values are bound: nothing user-given is spliced.
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
        cursor.executemany(sql, rows)
    return len(rows)
