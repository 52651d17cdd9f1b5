"""The researchers' web UI ("the lab"): start backtests and sweeps, watch them, study them.

Pages render their chart data server-side into the page as JSON; submitting and cancelling
go through the REST API (session-authenticated, CSRF-protected), and live progress arrives
over the same WebSockets the API documents.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from backtests import selectors
from backtests.engine import HEADLINE_METRICS, METRIC_DEFINITIONS
from backtests.models import BacktestRun, RunStatus, Sweep
from marketdata.selectors import candle_span, candles_for_chart, candles_from_db
from strategies.library.registry import all_kinds
from strategies.selectors import strategy_list

MAX_CHART_POINTS = 1500
MAX_CHART_CANDLES = 400
MAX_CHART_TRADES = 1000


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def _display(value: Any) -> str:
    """A metric as people read it: grouped integers, floats to 4 significant decimals."""
    if value is None:
        return "—"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


@login_required
def lab_home(request: HttpRequest) -> HttpResponse:
    user = request.user
    strategies = []
    # One min/max probe per series, however many strategies share it: each probe is two
    # index lookups, cheaper than one grouped scan over every bar.
    spans: dict[tuple[int, str], Any] = {}
    for strategy in strategy_list(user=user):  # type: ignore[arg-type]
        series = (strategy.instrument_id, strategy.timeframe)
        if series not in spans:
            spans[series] = candle_span(instrument_id=series[0], timeframe=series[1])
        span = spans[series]
        strategies.append(
            {
                "id": strategy.pk,
                "name": strategy.name,
                "kind": strategy.kind,
                "symbol": strategy.instrument.symbol,
                "timeframe": strategy.timeframe,
                "status": strategy.status,
                "parameters": strategy.parameters,
                "first_bar": _iso(span[0]) if span else None,
                "last_bar": _iso(span[1]) if span else None,
            }
        )
    kinds = {
        kind.name: {"label": kind.label, "description": kind.description, "spec": kind.spec_json()}
        for kind in all_kinds()
    }
    context = {
        "runs": selectors.backtest_list(user=user)[:25],  # type: ignore[arg-type]
        "sweeps": selectors.sweep_list(user=user)[:10],  # type: ignore[arg-type]
        "lab_data": {
            "strategies": strategies,
            "kinds": kinds,
            "rank_metrics": list(METRIC_DEFINITIONS),
        },
        "headline_metrics": HEADLINE_METRICS,
    }
    return render(request, "lab/home.html", context)


def _run_chart_data(run: BacktestRun) -> dict[str, Any]:
    source = selectors.result_run(run)
    curves = selectors.curve_thin(selectors.equity_frame(run), max_points=MAX_CHART_POINTS)
    candles = candles_for_chart(
        candles_from_db(
            instrument_id=run.instrument_id, timeframe=run.timeframe, start=run.start, end=run.end
        ),
        max_bars=MAX_CHART_CANDLES,
    )
    trades: list[dict[str, Any]] = [
        dict(row)
        for row in selectors.backtest_trades(run=source).values(
            "direction",
            "entry_time",
            "entry_price",
            "exit_time",
            "exit_price",
            "quantity",
            "pnl",
            "pnl_pct",
            "exit_reason",
            "is_open",
        )[:MAX_CHART_TRADES]
    ]
    for trade in trades:
        trade["entry_time"] = _iso(trade["entry_time"])
        trade["exit_time"] = _iso(trade["exit_time"])
    return {
        "equity": {
            "ts": [_iso(ts) for ts in curves.index],
            "equity": curves["equity"].tolist() if "equity" in curves else [],
            "drawdown": curves["drawdown"].tolist() if "drawdown" in curves else [],
        },
        "candles": {
            "ts": [_iso(ts) for ts in candles.index],
            "open": candles["open"].tolist(),
            "high": candles["high"].tolist(),
            "low": candles["low"].tolist(),
            "close": candles["close"].tolist(),
        },
        "trades": trades,
    }


@login_required
def lab_run(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.backtest_get(user=request.user, run_id=pk)  # type: ignore[arg-type]
    if run is None:
        raise Http404("No such backtest run.")
    finished = run.status == RunStatus.SUCCEEDED
    metrics = [
        {"key": key, "value": _display(run.metrics.get(key)), "definition": definition}
        for key, definition in METRIC_DEFINITIONS.items()
        if key in run.metrics
    ]
    context = {
        "run": run,
        "metrics": metrics,
        "headline": [
            (key.replace("_", " "), _display(run.metrics.get(key))) for key in HEADLINE_METRICS
        ],
        "chart_data": _run_chart_data(run) if finished else None,
        "live": run.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        "trade_count": (
            selectors.backtest_trades(run=selectors.result_run(run)).count() if finished else 0
        ),
    }
    return render(request, "lab/run.html", context)


@login_required
def lab_sweep(request: HttpRequest, pk: int) -> HttpResponse:
    sweep: Sweep | None = selectors.sweep_get(user=request.user, sweep_id=pk)  # type: ignore[arg-type]
    if sweep is None:
        raise Http404("No such sweep.")
    varied = [name for name, values in (sweep.grid or {}).items() if len(values) > 1]
    context = {
        "sweep": sweep,
        "rows": (sweep.results or [])[:200],
        "headline_metrics": HEADLINE_METRICS,
        "live": sweep.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        "sweep_data": {
            "rows": sweep.results or [],
            "axes": varied[:2],
            "metric": sweep.rank_metric,
            "best": sweep.best_parameters,
        },
    }
    return render(request, "lab/sweep.html", context)


urlpatterns = [
    path("", lab_home, name="lab-home"),
    path("runs/<int:pk>/", lab_run, name="lab-run"),
    path("sweeps/<int:pk>/", lab_sweep, name="lab-sweep"),
]
