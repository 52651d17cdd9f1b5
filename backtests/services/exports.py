"""A run's results as files: the equity parquet saved when it succeeds, and the xlsx
workbook (metrics, trades, equity) built on first download and kept per params hash."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import transaction

from backtests.engine import BacktestResult
from backtests.engine.portfolio import PortfolioResult
from backtests.models import BacktestRun, RunStatus
from backtests.selectors import curve_thin, equity_frame, trade_frame
from backtests.services.errors import BacktestConflict
from persistence.downloads import XLSX_MIME
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load, artifact_save

EXPORT_ARTIFACT = "export.xlsx"


def equity_parquet(result: BacktestResult | PortfolioResult) -> bytes:
    """The engine's curves (a run's or a portfolio's) in the layout `equity_frame` reads
    back."""
    frame = pd.DataFrame({"equity": result.equity, "drawdown": result.drawdown})
    frame.index.name = "ts"
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def backtest_export_xlsx(*, run: BacktestRun) -> bytes:
    """The run's workbook (metrics, trades, equity); built once per params hash, then reused."""
    if run.status != RunStatus.SUCCEEDED:
        raise BacktestConflict(f"Run {run.pk} has no results to export ({run.status}).")
    existing = artifact_for_hash(params_hash=run.params_hash, name=EXPORT_ARTIFACT)
    if existing is not None:
        return artifact_load(artifact=existing)
    content = workbook_bytes(
        metrics=run.metrics,
        trades=trade_frame(run),
        equity=equity_frame(run),
        max_equity_rows=settings.EXPORT_MAX_EQUITY_ROWS,
    )
    with transaction.atomic():
        artifact_save(
            name=EXPORT_ARTIFACT, mime_type=XLSX_MIME, content=content, params_hash=run.params_hash
        )
    return content


def workbook_bytes(
    *, metrics: Mapping[str, Any], trades: pd.DataFrame, equity: pd.DataFrame, max_equity_rows: int
) -> bytes:
    from openpyxl import Workbook

    # write_only streams rows instead of building every cell object first.
    book = Workbook(write_only=True)
    sheet = book.create_sheet("metrics")
    sheet.append(["metric", "value"])
    for name, value in metrics.items():
        sheet.append([name, value])
    thinned = curve_thin(equity, max_points=max_equity_rows)
    if len(thinned) < len(equity):
        sheet.append(["equity_rows_in_sheet", f"{len(thinned)} of {len(equity)} (thinned)"])

    sheet = book.create_sheet("trades")
    sheet.append(list(trades.columns))
    for row in _excel_rows(trades):
        sheet.append(row)

    sheet = book.create_sheet("equity")
    sheet.append(["ts", "equity", "drawdown"])
    curve = thinned[["equity", "drawdown"]].copy()
    curve.insert(0, "ts", thinned.index)
    for row in _excel_rows(curve):
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _excel_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows of plain Python values, converted a column at a time (per-cell conversion
    dominated the export): Excel has no time zones, so timestamps go in as naive UTC,
    and missing values become empty cells."""
    columns: list[list[Any]] = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            naive = column.dt.tz_convert("UTC").dt.tz_localize(None)
            values = [None if pd.isna(v) else v for v in naive.dt.to_pydatetime()]
        elif pd.api.types.is_float_dtype(column.dtype):
            values = [None if v != v else v for v in column.tolist()]  # NaN != NaN
        else:
            values = [None if v is None or v is pd.NaT else v for v in column.tolist()]
        columns.append(values)
    return zip(*columns, strict=True)
