"""The lab's research pages beyond one run's chart: a run's analyses, comparing runs, and a
sweep's results as a heatmap.

Its urlpatterns sit under /lab/ next to the lab's own (config/urls.py). The computations
live in backtests/analysis.py; this module picks the rows, checks who may see them and
words the results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse

from accounts.models import User
from backtests import analysis, selectors
from backtests.engine import METRIC_DEFINITIONS
from backtests.models import BacktestRun, RunStatus, Sweep
from backtests.presentation import metric_label, params_text
from backtests.services.run_settings import stored_overrides
from backtests.services.sweeps import MINIMIZED_METRICS

MAX_CURVE_POINTS = 1500
COMPARE_MIN, COMPARE_MAX = 2, 5
RANKED_ROWS_SHOWN = 200

EXIT_REASON_LABELS = {
    "signal": "Exit signal",
    "stop": "Stop-loss",
    "target": "Take-profit",
    "end": "Still open at the end",
}

# Which way is better when runs are compared side by side. Metrics that describe a run
# rather than grade it (its span, trade counts, beta) and any metric not named here get no
# mark. Amounts of money grade runs only when they all started with the same capital.
HIGHER_IS_BETTER = frozenset(
    {
        "final_equity",
        "peak_equity",
        "min_equity",
        "profit",
        "expectancy",
        "return_pct",
        "annualized_return_pct",
        "cagr_pct",
        "sharpe",
        "sortino",
        "calmar",
        "alpha_pct",
        "max_drawdown_pct",  # negative: closer to 0 is better
        "avg_drawdown_pct",
        "win_rate_pct",
        "best_trade_pct",
        "worst_trade_pct",
        "avg_trade_pct",
        "profit_factor",
        "expectancy_ratio",
        "sqn",
        "kelly",
        "max_consecutive_wins",
        "best_day_pct",
        "worst_day_pct",
        "winning_days",
    }
)
LOWER_IS_BETTER = frozenset(
    {
        "commissions",
        "annualized_volatility_pct",
        "max_drawdown_duration_s",
        "avg_drawdown_duration_s",
        "orders_skipped",
        "liquidated",
        "max_consecutive_losses",
        "losing_days",
    }
)
MONEY_METRICS = frozenset(
    {"final_equity", "peak_equity", "min_equity", "profit", "expectancy", "commissions"}
)

AGGREGATE_WORDS = {"max": "highest", "min": "lowest", "mean": "mean", "median": "median"}


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]  # login_required has checked it


def metric_text(value: Any, key: str = "") -> str:
    """A metric as people read it: grouped integers, floats to 4 significant digits, times
    as "YYYY-MM-DD HH:MM UTC" and durations (keys ending in _s) in days, hours, minutes."""
    if value is None:
        return "—"
    if key in ("start", "end") and isinstance(value, str):
        return when_text(value)
    if key.endswith("_s") and isinstance(value, int | float) and not isinstance(value, bool):
        return duration_text(float(value))
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def duration_text(seconds: float) -> str:
    """12 d 4 h, 3 h 20 min, 45 min, 30 s: the two largest units that are not zero."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    first = next(i for i, (amount, _) in enumerate(parts) if amount)
    shown = [f"{amount} {unit}" for amount, unit in parts[first : first + 2] if amount]
    return " ".join(shown)


def value_text(value: Any) -> str:
    """One parameter value as words (as in params_text): 10, 0.02, yes."""
    return params_text({"": value}).strip()


def _words(name: str) -> str:
    return name.replace("_", " ")


def when_text(value: Any) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%d %H:%M} UTC"


# --- A run's analyses -----------------------------------------------------------------------


@login_required
def lab_run_analysis(request: HttpRequest, pk: int) -> JsonResponse:
    """Monthly returns, the pnl distribution and the exit-reason and holding-time breakdowns
    of a finished run, for templates/lab/_run_analysis.html."""
    run = selectors.backtest_get(user=_user(request), run_id=pk)
    if run is None:
        return JsonResponse({"detail": "No such backtest run."}, status=404)
    if run.status != RunStatus.SUCCEEDED:
        return JsonResponse({"detail": f"Run #{run.pk} has no results ({run.status})."}, status=409)
    equity = selectors.equity_frame(run)
    trades = selectors.trade_frame(selectors.result_run(run))
    closed = analysis.closed_trades(trades)
    exit_reasons = analysis.exit_reason_breakdown(trades)
    for row in exit_reasons:
        row["label"] = EXIT_REASON_LABELS.get(row["reason"], row["reason"])
    return JsonResponse(
        {
            "run": run.pk,
            "monthly": analysis.monthly_returns(
                equity["equity"], start_equity=float(run.initial_capital)
            ),
            "pnl_histogram": analysis.pnl_histogram(trades),
            "exit_reasons": exit_reasons,
            "durations": analysis.duration_breakdown(trades),
            "closed_trades": len(closed),
            "open_trades": len(trades) - len(closed),
        }
    )


# --- Comparing runs -------------------------------------------------------------------------


def run_label(run: BacktestRun) -> str:
    name = run.strategy.name if run.strategy else run.kind
    return f"#{run.pk} {name} · {params_text(run.parameters)}"


def _compare_selection(user: User, raw: Sequence[str]) -> tuple[list[BacktestRun], str, int]:
    """The runs to compare in the order asked, or a message and its status code."""
    ids: list[int] = []
    for text in raw:
        if not text.strip().isdigit() or len(text.strip()) > 18:
            return [], f"Runs are chosen by number: {text!r} is not one.", 400
        if int(text) not in ids:
            ids.append(int(text))
    if len(ids) < COMPARE_MIN:
        return [], f"Choose at least {COMPARE_MIN} runs to compare (you chose {len(ids)}).", 400
    if len(ids) > COMPARE_MAX:
        return [], f"Compare at most {COMPARE_MAX} runs at a time (you chose {len(ids)}).", 400
    found = {run.pk: run for run in selectors.backtest_list(user=user).filter(pk__in=ids)}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        # The same words for a run that does not exist and another user's: nothing leaks.
        listed = ", ".join(f"#{pk}" for pk in missing)
        return [], f"No backtest run {listed} among the runs you can see.", 404
    runs = [found[pk] for pk in ids]
    unfinished = [run for run in runs if run.status != RunStatus.SUCCEEDED]
    if unfinished:
        listed = ", ".join(f"#{run.pk} ({run.status})" for run in unfinished)
        return [], f"Only finished runs can be compared: {listed} has no results.", 400
    return runs, "", 200


def _best_marks(key: str, values: list[Any], *, same_capital: bool) -> list[bool]:
    """Which of the runs' values for `key` is the best one (ties all marked); none for a
    metric that grades nothing, or when every run has the same value."""
    numbers = [
        v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values
    ]
    present = [v for v in numbers if v is not None]
    graded = key in HIGHER_IS_BETTER or key in LOWER_IS_BETTER
    if not graded or (key in MONEY_METRICS and not same_capital):
        return [False] * len(values)
    if len(present) < 2 or len(set(present)) == 1:
        return [False] * len(values)
    best = min(present) if key in LOWER_IS_BETTER else max(present)
    return [v == best for v in numbers]


def compare_metric_rows(runs: Sequence[BacktestRun]) -> list[dict[str, Any]]:
    keys = [key for key in METRIC_DEFINITIONS if any(key in run.metrics for run in runs)]
    same_capital = len({run.initial_capital for run in runs}) == 1
    rows = []
    for key in keys:
        values = [run.metrics.get(key) for run in runs]
        marks = _best_marks(key, values, same_capital=same_capital)
        rows.append(
            {
                "key": key,
                "label": metric_label(key),
                "definition": METRIC_DEFINITIONS[key],
                "cells": [
                    {"text": metric_text(value, key), "best": mark}
                    for value, mark in zip(values, marks, strict=True)
                ],
            }
        )
    return rows


def normalised_curve(run: BacktestRun) -> dict[str, Any]:
    """The run's equity as the value of 100 invested at its start, thinned for a chart."""
    frame = selectors.curve_thin(selectors.equity_frame(run), max_points=MAX_CURVE_POINTS)
    values = frame["equity"].astype(float) / float(run.initial_capital) * 100
    return {
        "id": run.pk,
        "label": run_label(run),
        "ts": [pd.Timestamp(ts).isoformat() for ts in frame.index],
        "value": [round(v, 6) for v in values.tolist()],
    }


@login_required
def lab_compare(request: HttpRequest) -> HttpResponse:
    runs, error, status = _compare_selection(_user(request), request.GET.getlist("runs"))
    context: dict[str, Any] = {"error": error, "runs": runs}
    if not error:
        context["metric_rows"] = compare_metric_rows(runs)
        context["compare_data"] = {"curves": [normalised_curve(run) for run in runs]}
        context["labels"] = [run_label(run) for run in runs]
    return render(request, "lab/compare.html", context, status=status)


# --- Sweeps ----------------------------------------------------------------------------------


def varied_parameters(sweep: Sweep) -> list[tuple[str, list[Any]]]:
    """The sweep's parameters with more than one value, in grid order, values ascending."""
    varied = []
    for name, values in (sweep.grid or {}).items():
        if len(values) > 1:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            varied.append((name, sorted(values) if numeric else list(values)))
    return varied


def grid_text(grid: Mapping[str, Sequence[Any]] | None) -> str:
    """A grid in words: "fast 5, 10, 15 · slow 30, 60"."""
    if not grid:
        return "no parameters"
    return " · ".join(
        f"{_words(name)} {', '.join(value_text(v) for v in values)}"
        for name, values in grid.items()
    )


def sweep_open_request(sweep: Sweep) -> dict[str, Any]:
    """What "open this combination as a backtest" posts to the API (with the combination's
    parameters added): the sweep's strategy and settings, so the run means the same."""
    if sweep.strategy_id is None:
        return {
            "url": reverse("backtest-list"),
            "body": None,
            "refused": "This sweep's strategy has been deleted, so its combinations cannot "
            "be started as backtests.",
        }

    def decimal(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        "url": reverse("backtest-list"),
        "refused": None,
        "body": {
            "strategy": sweep.strategy_id,
            "start": sweep.start.isoformat(),
            "end": sweep.end.isoformat(),
            **{
                name: decimal(value) if isinstance(value, Decimal) else value
                for name, value in stored_overrides(sweep).items()
            },
            "use_cache": True,
        },
    }


def sweep_ranked(sweep: Sweep, *, limit: int = RANKED_ROWS_SHOWN) -> dict[str, Any]:
    """The ranked results as a table: the ranking metric first, then the headline ones."""
    rows = (sweep.results or [])[:limit]
    keys = [sweep.rank_metric]
    for row in rows[:1]:
        keys += [key for key in row.get("metrics", {}) if key != sweep.rank_metric]
    return {
        "columns": [{"key": key, "label": metric_label(key)} for key in keys],
        "rows": [
            {
                "rank": index + 1,
                "params": row["params"],
                "params_text": params_text(row["params"]),
                "cells": [metric_text(row.get("metrics", {}).get(key), key) for key in keys],
                "cached": bool(row.get("cached")),
            }
            for index, row in enumerate(rows)
        ],
        "total": len(sweep.results or []),
    }


def sweep_research(sweep: Sweep, *, run_url: str = "/lab/runs/{id}/") -> dict[str, Any]:
    """The heatmap's address, the ranked table and what opening a combination posts, as
    the lab's sweep page and the admin's sweep page both show them. `run_url` is where a
    started run is shown, its id in place of {id}."""
    ranked = sweep_ranked(sweep)
    return {
        "ranked": ranked,
        "heatmap_url": reverse("lab-sweep-heatmap", args=[sweep.pk]),
        "open_data": {
            **sweep_open_request(sweep),
            "params": [row["params"] for row in ranked["rows"]],
            "run_url": run_url,
        },
    }


def sweep_page_context(sweep: Sweep, *, user: User) -> dict[str, Any]:
    """What templates/lab/sweep.html shows besides the live progress (lab.lab_sweep)."""
    return {
        "sweep": sweep,
        "title": sweep.strategy.name if sweep.strategy else sweep.kind,
        "grid_text": grid_text(sweep.grid),
        "base_parameters": params_text(sweep.strategy.parameters) if sweep.strategy else None,
        "range_text": f"{when_text(sweep.start)} → {when_text(sweep.end)}",
        "rank_label": metric_label(sweep.rank_metric),
        "best_text": params_text(sweep.best_parameters) if sweep.best_parameters else None,
        "best_value_text": metric_text(sweep.best_value, sweep.rank_metric),
        "admin_url": (
            reverse("admin:backtests_sweep_change", args=[sweep.pk]) if user.is_staff else None
        ),
        **sweep_research(sweep),
    }


class HeatmapQueryError(ValueError):
    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def heatmap_choice(
    sweep: Sweep, query: Mapping[str, str]
) -> tuple[list[tuple[str, list[Any]]], dict[str, analysis.AxisRule]]:
    """The axes and the rules of the other varied parameters asked for in `query`: x and y
    name varied parameters; `rule.<name>` is max, min, mean, median or at:<value as JSON>.

    Unset, the axes are the first two varied parameters and every other one is sliced at
    the best combination's value, so the best cell shows the true best value.
    """
    varied = dict(varied_parameters(sweep))
    names = list(varied)
    errors: dict[str, list[str]] = {}
    x = query.get("x") or (names[0] if names else "")
    y = query.get("y") or (next((n for n in names if n != x), "") if len(names) > 1 else "")
    for axis, name in (("x", x), ("y", y)):
        if name and name not in varied:
            errors[axis] = [
                f"Not a varied parameter of this sweep. Choose from: {', '.join(names)}."
            ]
    if x and x == y:
        errors["y"] = ["Choose a different parameter for each axis."]
    if len(names) > 1 and not y:
        errors.setdefault("y", ["Choose the parameter for the vertical axis."])
    best = sweep.best_parameters or {}
    rules: dict[str, analysis.AxisRule] = {}
    for name in names:
        if name in (x, y):
            continue
        asked = query.get(f"rule.{name}", "")
        if not asked:
            value = best.get(name, varied[name][0])
            rules[name] = analysis.AxisRule("at", value)
        elif asked in analysis.AGGREGATES:
            rules[name] = analysis.AxisRule(asked)
        elif asked.startswith("at:"):
            try:
                value = json.loads(asked[3:])
            except ValueError:
                value = object()  # matches no value
            if value not in varied[name]:
                errors[f"rule.{name}"] = [f"{asked[3:]!r} is not one of {name}'s values."]
            rules[name] = analysis.AxisRule("at", value)
        else:
            errors[f"rule.{name}"] = [
                f"Choose max, min, mean, median or at:<value>, not {asked!r}."
            ]
    if errors:
        raise HeatmapQueryError(errors)
    axes = [(name, varied[name]) for name in (x, y) if name]
    return axes, rules


def rule_text(
    sweep: Sweep, axes: Sequence[tuple[str, Sequence[Any]]], rules: Mapping[str, analysis.AxisRule]
) -> str:
    """The chosen view in words, for under the chart."""
    label = metric_label(sweep.rank_metric)
    if not axes:
        return "No parameter has more than one value in this sweep: there is nothing to chart."
    shown = f"{label} for each {_words(axes[0][0])} (across)"
    if len(axes) > 1:
        shown += f" and {_words(axes[1][0])} (up)"
    best = sweep.best_parameters or {}
    parts = []
    for name, rule in rules.items():
        if rule.kind == "at":
            note = ", the best combination's value" if best.get(name) == rule.value else ""
            parts.append(f"{_words(name)} fixed at {value_text(rule.value)}{note}")
        else:
            count = len(dict(varied_parameters(sweep)).get(name, []))
            parts.append(
                f"each cell the {AGGREGATE_WORDS[rule.kind]} {label} "
                f"over {_words(name)}'s {count} values"
            )
    return f"{shown}{'; ' if parts else ''}{'; '.join(parts)}."


def _hover(
    sweep: Sweep,
    combo: Mapping[str, Any] | None,
    value: float | None,
    count: int,
    axes_at: dict[str, Any],
) -> str:
    """A cell's hover text: its parameters and value; a folded cell also names the best
    combination it covers, which a click opens."""
    if combo is None:
        return f"{params_text(axes_at)}<br>not run"
    shown = f"{metric_label(sweep.rank_metric)}: {metric_text(value, sweep.rank_metric)}"
    if count == 1:
        return f"{params_text(combo)}<br>{shown}"
    covered = f"{params_text(axes_at)} · {count} combinations"
    return f"{covered}<br>{shown}<br>best of them: {params_text(combo)}"


def heatmap_data(sweep: Sweep, query: Mapping[str, str]) -> dict[str, Any]:
    """The heatmap (or, with one varied parameter, the bar chart) of a sweep's ranking
    metric as chosen by `query` (see heatmap_choice), with the words that go with it."""
    axes, rules = heatmap_choice(sweep, query)
    varied = varied_parameters(sweep)
    payload: dict[str, Any] = {
        "sweep": sweep.pk,
        "metric": sweep.rank_metric,
        "metric_label": metric_label(sweep.rank_metric),
        "minimize": sweep.rank_metric in MINIMIZED_METRICS,
        "params": [
            {
                "name": name,
                "label": _words(name),
                "values": values,
                "labels": [value_text(v) for v in values],
            }
            for name, values in varied
        ],
        "x": axes[0][0] if axes else None,
        "y": axes[1][0] if len(axes) > 1 else None,
        "rules": {name: {"kind": rule.kind, "value": rule.value} for name, rule in rules.items()},
        "rule_text": rule_text(sweep, axes, rules),
        "best_value": sweep.best_value,
        "best_text": params_text(sweep.best_parameters) if sweep.best_parameters else None,
    }
    if not axes:
        return {**payload, "z": [], "combos": [], "hover": [], "best": None}
    surface = analysis.sweep_surface(
        sweep.results or [],
        metric=sweep.rank_metric,
        axes=axes,
        rules=rules,
        minimize=payload["minimize"],
        best=sweep.best_parameters,
    )
    x_name, x_values = axes[0]
    payload["x_labels"] = [value_text(v) for v in x_values]
    if len(axes) == 1:
        payload["hover"] = [
            _hover(sweep, combo, value, count, {x_name: x})
            for x, combo, value, count in zip(
                x_values, surface["combos"], surface["z"], surface["counts"], strict=True
            )
        ]
    else:
        y_name, y_values = axes[1]
        payload["y_labels"] = [value_text(v) for v in y_values]
        payload["hover"] = [
            [
                _hover(sweep, combo, value, count, {x_name: x, y_name: y})
                for x, combo, value, count in zip(x_values, combos, values, counts, strict=True)
            ]
            for y, combos, values, counts in zip(
                y_values, surface["combos"], surface["z"], surface["counts"], strict=True
            )
        ]
    return {**payload, **surface}


def _sweep_for_heatmap(user: User, pk: int) -> Sweep | None:
    """The sweep's owner, or staff allowed to view sweeps (the admin page shows the same
    heatmap to them); anyone else gets nothing."""
    sweep = selectors.sweep_get(user=user, sweep_id=pk)
    if sweep is None:
        return None
    if sweep.owner_id != user.pk and not user.has_perm("backtests.view_sweep"):
        return None
    return sweep


@login_required
def lab_sweep_heatmap(request: HttpRequest, pk: int) -> JsonResponse:
    sweep = _sweep_for_heatmap(_user(request), pk)
    if sweep is None:
        return JsonResponse({"detail": "No such sweep."}, status=404)
    try:
        return JsonResponse(heatmap_data(sweep, request.GET))
    except HeatmapQueryError as exc:
        return JsonResponse(exc.errors, status=400)


urlpatterns: list[Any] = [
    path("runs/<int:pk>/analysis.json", lab_run_analysis, name="lab-run-analysis"),
    path("compare/", lab_compare, name="lab-compare"),
    path("sweeps/<int:pk>/heatmap.json", lab_sweep_heatmap, name="lab-sweep-heatmap"),
]
