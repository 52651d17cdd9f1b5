"""The xlsx workbook's cells: naive UTC timestamps, empty cells for missing values, thinning."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd
from openpyxl import load_workbook

from backtests.services import workbook_bytes


def _book(**overrides):  # type: ignore[no-untyped-def]
    trades = pd.DataFrame(
        {
            "direction": ["long", "short"],
            "entry_time": pd.to_datetime(["2024-01-01 00:00", "2024-01-02 12:30"], utc=True),
            "exit_time": pd.to_datetime(["2024-01-01 05:00", None], utc=True),
            "entry_price": [100.0, 101.5],
            "exit_price": [102.0, np.nan],
            "is_open": [False, True],
        }
    )
    index = pd.date_range("2024-01-01", periods=10, freq="h", tz="Europe/Paris")
    equity = pd.DataFrame({"equity": np.linspace(100, 109, 10), "drawdown": 0.0}, index=index)
    args = {"metrics": {"return_pct": 9.0, "sharpe": None}, "trades": trades, "equity": equity,
            "max_equity_rows": 100} | overrides  # fmt: skip
    return load_workbook(io.BytesIO(workbook_bytes(**args)), read_only=True)


def _rows(book, sheet):  # type: ignore[no-untyped-def]
    return list(book[sheet].iter_rows(values_only=True))


def test_trade_timestamps_are_naive_utc_and_missing_values_are_empty_cells():
    rows = _rows(_book(), "trades")
    assert rows[0] == (
        "direction",
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "is_open",
    )
    assert rows[1] == ("long", datetime(2024, 1, 1), datetime(2024, 1, 1, 5), 100, 102, False)
    assert rows[2] == ("short", datetime(2024, 1, 2, 12, 30), None, 101.5, None, True)


def test_equity_sheet_is_in_utc_and_thinned_to_the_limit_keeping_the_last_point():
    book = _book(max_equity_rows=4)
    rows = _rows(book, "equity")[1:]
    assert len(rows) <= 4
    # 2024-01-01 09:00 in Paris is 08:00 UTC; the last point is kept.
    assert rows[-1] == (datetime(2024, 1, 1, 8), 109, 0)
    # Read-only openpyxl drops a row's trailing empty cells, as for sharpe=None here.
    metrics = {row[0]: (row[1] if len(row) > 1 else None) for row in _rows(book, "metrics")[1:]}
    assert metrics["equity_rows_in_sheet"] == f"{len(rows)} of 10 (thinned)"
    assert metrics["return_pct"] == 9 and metrics["sharpe"] is None
