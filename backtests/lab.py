"""The researchers' web UI ("the lab"): start backtests and sweeps, watch them, study them.

Pages render their chart data server-side into the page as JSON; submitting and cancelling
go through the REST API (session-authenticated, CSRF-protected), and live progress arrives
over the same WebSockets the API documents.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from accounts.models import User
from backtests import lab_research, selectors, services
from backtests.engine import HEADLINE_METRICS, METRIC_DEFINITIONS
from backtests.lab_research import metric_text
from backtests.models import BacktestRun, RunStatus, Sweep
from marketdata.selectors import candle_span
from strategies.forms import (
    PARAM_PREFIX,
    ParamRangesForm,
    StrategyCloneForm,
    StrategyForm,
    param_field_name,
)
from strategies.library.registry import all_kinds
from strategies.models import Strategy
from strategies.selectors import strategy_get, strategy_list, strategy_owned_list
from strategies.services import (
    strategy_archive,
    strategy_clone,
    strategy_create,
    strategy_restore,
    strategy_update,
)


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


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
        "sweep_strategies": strategy_owned_list(user=user).exclude(  # type: ignore[arg-type]
            status=Strategy.Status.ARCHIVED
        ),
    }
    return render(request, "lab/home.html", context)


@login_required
def lab_run(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.backtest_get(user=request.user, run_id=pk)  # type: ignore[arg-type]
    if run is None:
        raise Http404("No such backtest run.")
    finished = run.status == RunStatus.SUCCEEDED
    metrics = [
        {"key": key, "value": metric_text(run.metrics.get(key), key), "definition": definition}
        for key, definition in METRIC_DEFINITIONS.items()
        if key in run.metrics
    ]
    # The chart and the trades table load themselves from the API (run_page.js): the chart
    # window by window as the researcher zooms, the trades page by page.
    context = {
        "run": run,
        "finished": finished,
        # 0.001 reads "0.1" (percent), not "0.001000".
        "fee_pct": f"{(run.fee_rate * 100).normalize():f}",
        "metrics": metrics,
        "headline": [
            {
                "key": key,
                "value": metric_text(run.metrics.get(key), key),
                "definition": METRIC_DEFINITIONS.get(key, ""),
            }
            for key in HEADLINE_METRICS
        ],
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
    context = {
        **lab_research.sweep_page_context(sweep, user=request.user),  # type: ignore[arg-type]
        "live": sweep.status in (RunStatus.QUEUED, RunStatus.RUNNING),
    }
    return render(request, "lab/sweep.html", context)


# --- Strategies -------------------------------------------------------------------------


def _own_strategy(request: HttpRequest, pk: int) -> Strategy:
    """One of the caller's own strategies; anyone else's id is a 404, staff included."""
    strategy = strategy_get(user=request.user, strategy_id=pk)  # type: ignore[arg-type]
    if strategy is None:
        raise Http404("No such strategy.")
    return strategy


def _strategies_with_last_run(*, user: User, archived: bool) -> list[Strategy]:
    """The user's strategies, each with `last_run` (or None): two queries whatever the count.

    The newest run's id comes from a correlated subquery on the strategy list; the runs
    themselves are then fetched in one `pk__in` query.
    """
    newest = BacktestRun.objects.filter(strategy=OuterRef("pk")).order_by("-created_at", "-id")
    strategies: QuerySet[Strategy] = strategy_owned_list(user=user).annotate(
        last_run_id=Subquery(newest.values("pk")[:1])
    )
    if not archived:
        strategies = strategies.exclude(status=Strategy.Status.ARCHIVED)
    rows = list(strategies.order_by("name"))
    run_ids = [row.last_run_id for row in rows if row.last_run_id]  # type: ignore[attr-defined]
    runs = (
        {
            run.pk: run
            for run in BacktestRun.objects.filter(pk__in=run_ids).only("status", "metrics")
        }
        if run_ids
        else {}
    )
    for row in rows:
        row.last_run = runs.get(row.last_run_id)  # type: ignore[attr-defined]
    return rows


@login_required
def lab_strategies(request: HttpRequest) -> HttpResponse:
    archived = request.GET.get("archived") == "1"
    context = {
        "strategies": _strategies_with_last_run(user=request.user, archived=archived),  # type: ignore[arg-type]
        "show_archived": archived,
    }
    return render(request, "lab/strategies.html", context)


def _apply_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """A service's ValidationError on the form field it names (parameters.x → param_x)."""
    for key, messages in exc.message_dict.items():
        name = key
        if key.startswith("parameters."):
            name = param_field_name(key.removeprefix("parameters."))
        for message in messages:
            form.add_error(name if name in form.fields else None, message)


def _strategy_form_page(
    request: HttpRequest, form: StrategyForm, strategy: Strategy | None
) -> HttpResponse:
    context = {"form": form, "strategy": strategy}
    return render(request, "lab/strategy_form.html", context)


def _initial_from_query(request: HttpRequest) -> dict[str, Any]:
    """What strategy_form.js carried over when the kind changed (?kind=…&name=…)."""
    return {k: v for k, v in request.GET.items() if not k.startswith(PARAM_PREFIX)}


@login_required
def lab_strategy_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = StrategyForm(request.POST)
        if form.is_valid():
            try:
                strategy_create(owner=request.user, **form.strategy_values())  # type: ignore[arg-type]
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                return redirect("lab-strategies")
    else:
        form = StrategyForm(initial=_initial_from_query(request))
    return _strategy_form_page(request, form, None)


@login_required
def lab_strategy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    strategy = _own_strategy(request, pk)
    if request.method == "POST":
        form = StrategyForm(request.POST, instance=strategy)
        if form.is_valid():
            try:
                strategy_update(strategy=strategy, **form.strategy_values())
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                return redirect("lab-strategies")
    else:
        form = StrategyForm(instance=strategy, initial=_initial_from_query(request))
    return _strategy_form_page(request, form, strategy)


@login_required
def lab_strategy_clone(request: HttpRequest, pk: int) -> HttpResponse:
    strategy = _own_strategy(request, pk)
    if request.method == "POST":
        form = StrategyCloneForm(request.POST)
        if form.is_valid():
            try:
                clone = strategy_clone(
                    strategy=strategy,
                    name=form.cleaned_data["name"],
                    owner=request.user,  # type: ignore[arg-type]
                )
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                return redirect("lab-strategy-edit", pk=clone.pk)
    else:
        form = StrategyCloneForm(initial={"name": f"{strategy.name} (copy)"})
    return render(request, "lab/strategy_clone.html", {"form": form, "strategy": strategy})


def _back_to_list(request: HttpRequest) -> HttpResponseRedirect:
    url = reverse("lab-strategies")
    return redirect(f"{url}?archived=1" if request.POST.get("archived") == "1" else url)


@require_POST
@login_required
def lab_strategy_archive(request: HttpRequest, pk: int) -> HttpResponse:
    strategy_archive(strategy=_own_strategy(request, pk))
    return _back_to_list(request)


@require_POST
@login_required
def lab_strategy_restore(request: HttpRequest, pk: int) -> HttpResponse:
    strategy_restore(strategy=_own_strategy(request, pk))
    return _back_to_list(request)


# --- Sweeps --------------------------------------------------------------------------------


class SweepSettingsForm(forms.Form):
    """What a sweep needs besides its grid; the grid comes from ParamRangesForm's rows."""

    start = forms.DateTimeField(
        label="Start (UTC)",
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "id": "sw-start"}, format="%Y-%m-%dT%H:%M"
        ),
    )
    end = forms.DateTimeField(
        label="End (UTC, exclusive)",
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "id": "sw-end"}, format="%Y-%m-%dT%H:%M"
        ),
    )
    rank_metric = forms.ChoiceField(
        label="Rank by", choices=[(m, m) for m in services.RANKABLE_METRICS], initial="sharpe"
    )
    samples = forms.IntegerField(label="Random samples", required=False, min_value=1)


def _input_time(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M") if value is not None else ""


@login_required
def lab_sweep_new(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    choices = list(strategy_owned_list(user=user).exclude(status=Strategy.Status.ARCHIVED))
    chosen = request.POST.get("strategy") or request.GET.get("strategy")
    strategy = next((s for s in choices if str(s.pk) == chosen), None)
    if chosen and strategy is None:
        raise Http404("No such strategy.")  # anyone else's (or an archived one)
    strategy = strategy or (choices[0] if choices else None)
    if strategy is None:
        return render(request, "lab/sweep_form.html", {"strategy": None, "choices": choices})
    data = request.POST if request.method == "POST" else None
    ranges = ParamRangesForm(data, kind=strategy.kind, values=strategy.parameters, prefix="range")
    span = candle_span(instrument_id=strategy.instrument_id, timeframe=strategy.timeframe)
    settings_form = SweepSettingsForm(
        data,
        initial={
            "start": _input_time(span[0]) if span else "",
            # The end is exclusive: one minute past the last bar's open time includes it.
            "end": _input_time(pd.Timestamp(span[1]) + timedelta(minutes=1)) if span else "",
        },
    )
    if data is not None and ranges.is_valid() and settings_form.is_valid():
        try:
            sweep = services.sweep_submit(
                user=user,
                strategy=strategy,
                start=settings_form.cleaned_data["start"],
                end=settings_form.cleaned_data["end"],
                grid=ranges.cleaned_data["grid"],
                samples=settings_form.cleaned_data["samples"],
                rank_metric=settings_form.cleaned_data["rank_metric"],
            )
        except services.BacktestInputError as exc:
            for key, messages in exc.errors.items():
                target = settings_form if key in settings_form.fields else ranges
                for message in _flat_messages(messages):
                    target.add_error(key if key in target.fields else None, message)
        else:
            return redirect("lab-sweep", pk=sweep.pk)
    context = {
        "strategy": strategy,
        "choices": choices,
        "ranges": ranges,
        "settings_form": settings_form,
        "kind": ranges.kind,
    }
    return render(request, "lab/sweep_form.html", context)


def _flat_messages(messages: Any, prefix: str = "") -> list[str]:
    """Service errors are lists, or dicts of lists per grid parameter: one line each."""
    if isinstance(messages, dict):
        return [
            line
            for name, inner in messages.items()
            for line in _flat_messages(inner, f"{prefix}{name}: ")
        ]
    if isinstance(messages, list | tuple):
        return [line for inner in messages for line in _flat_messages(inner, prefix)]
    return [f"{prefix}{messages}"]


urlpatterns = [
    path("", lab_home, name="lab-home"),
    path("runs/<int:pk>/", lab_run, name="lab-run"),
    path("sweeps/new/", lab_sweep_new, name="lab-sweep-new"),
    path("sweeps/<int:pk>/", lab_sweep, name="lab-sweep"),
    path("strategies/", lab_strategies, name="lab-strategies"),
    path("strategies/new/", lab_strategy_new, name="lab-strategy-new"),
    path("strategies/<int:pk>/edit/", lab_strategy_edit, name="lab-strategy-edit"),
    path("strategies/<int:pk>/clone/", lab_strategy_clone, name="lab-strategy-clone"),
    path("strategies/<int:pk>/archive/", lab_strategy_archive, name="lab-strategy-archive"),
    path("strategies/<int:pk>/restore/", lab_strategy_restore, name="lab-strategy-restore"),
]
