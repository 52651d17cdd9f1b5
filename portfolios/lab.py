"""The lab's portfolio pages: the list with a form to start a run, and a run's page (equity
and drawdown, each instrument's contribution, a per-instrument table and the trades).

Its urlpatterns sit under /lab/ next to the lab's own (config/urls.py). Chart data goes into
the page as JSON (json_script) and portfolios/static/lab/portfolio_page.js draws it: the CSP
allows no inline script.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from accounts.models import User
from backtests.engine import HEADLINE_METRICS, METRIC_DEFINITIONS
from backtests.lab_research import metric_text
from backtests.models import RunStatus
from backtests.selectors import curve_thin
from backtests.services import BacktestInputError
from marketdata.selectors import instrument_list
from marketdata.timeframes import TIMEFRAME_SECONDS
from portfolios import selectors, services
from portfolios.models import Allocation, PortfolioRun, Rebalance
from strategies.library.registry import kind_choices

# Points of the equity curve drawn on the page.
CURVE_POINTS = 2000
TRADES_PER_PAGE = 50


def _user(request: HttpRequest) -> User:
    # login_required has already sent anonymous visitors to the login page.
    return request.user  # type: ignore[return-value]


def _datetime_input() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


def _json_object(text: str, what: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise forms.ValidationError(f"Must be a JSON object of {what}.")
    return value


class PortfolioForm(forms.Form):
    """A portfolio request, field for field as the API takes it."""

    name = forms.CharField(max_length=200, required=False)
    kind = forms.ChoiceField(choices=kind_choices)
    parameters = forms.CharField(
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='The kind\'s parameters as JSON, e.g. {"fast": 10, "slow": 50}; '
        "defaults fill the rest.",
    )
    instruments = forms.MultipleChoiceField(
        help_text="At least two. Ties (max positions) go to the earlier in this list's order."
    )
    timeframe = forms.ChoiceField(choices=[(tf, tf) for tf in TIMEFRAME_SECONDS], initial="1h")
    start = forms.DateTimeField(widget=_datetime_input(), help_text="UTC")
    end = forms.DateTimeField(widget=_datetime_input(), help_text="UTC, exclusive")
    initial_capital = forms.DecimalField(max_digits=20, decimal_places=2, initial=10000)
    fee_rate = forms.DecimalField(max_digits=8, decimal_places=6, initial="0.001")
    slippage_bps = forms.DecimalField(max_digits=8, decimal_places=2, initial=0)
    allocation = forms.ChoiceField(choices=Allocation.choices, initial=Allocation.EQUAL)
    weights = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='Fixed allocation only: JSON of symbol to weight, e.g. {"BTCUSDT": 0.5}.',
    )
    max_positions = forms.IntegerField(required=False, min_value=1)
    rebalance = forms.ChoiceField(choices=Rebalance.choices, initial=Rebalance.CHANGE)
    drift_threshold = forms.DecimalField(
        required=False, max_digits=7, decimal_places=6, help_text="A fraction, e.g. 0.05"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["instruments"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(i.symbol, i.symbol) for i in instrument_list()]

    def clean_parameters(self) -> dict[str, Any]:
        return _json_object(self.cleaned_data.get("parameters") or "", "parameter values") or {}

    def clean_weights(self) -> dict[str, Any] | None:
        return _json_object(self.cleaned_data.get("weights") or "", "symbol to weight")


def _service_errors(form: PortfolioForm, exc: BacktestInputError) -> None:
    for name, messages in exc.errors.items():
        if isinstance(messages, dict):
            text = [f"{key}: {' '.join(map(str, value))}" for key, value in messages.items()]
        else:
            text = [str(m) for m in messages]
        form.add_error(name if name in form.fields else None, text)


def _row(run: PortfolioRun) -> dict[str, Any]:
    return {
        "run": run,
        "instruments": ", ".join(selectors.instrument_symbols(run)),
        "total_return": metric_text(run.metrics.get("total_return_pct"), "total_return_pct"),
        "sharpe": metric_text(run.metrics.get("sharpe"), "sharpe"),
    }


@login_required
def lab_portfolios(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if request.method == "POST":
        form = PortfolioForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                run = services.portfolio_submit(user=user, **data)
            except BacktestInputError as exc:
                _service_errors(form, exc)
            else:
                return redirect("lab-portfolio", pk=run.pk)
    else:
        form = PortfolioForm()
    context = {
        "form": form,
        "rows": [_row(run) for run in selectors.portfolio_list(user=user)[:50]],
    }
    return render(request, "lab/portfolios.html", context)


def _page_data(run: PortfolioRun) -> dict[str, Any]:
    curve = curve_thin(selectors.equity_frame(run), max_points=CURVE_POINTS)
    rows = selectors.per_instrument_rows(run)
    return {
        "run": run.pk,
        "status": run.status,
        "live": run.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        "api": f"/api/v1/portfolios/{run.pk}/",
        "equity": {
            "ts": [ts.isoformat() for ts in curve.index],
            "equity": curve["equity"].tolist() if len(curve) else [],
            "drawdown_pct": (curve["drawdown"] * 100).tolist() if len(curve) else [],
        },
        "contribution": {
            "instruments": [row.get("instrument") for row in rows],
            "values": [row.get("contribution") for row in rows],
        },
    }


@login_required
def lab_portfolio(request: HttpRequest, pk: int) -> HttpResponse:
    run = selectors.portfolio_get(user=_user(request), run_id=pk)
    if run is None:
        raise Http404("No such portfolio run.")
    symbols = selectors.instrument_symbols(run)
    trades = selectors.portfolio_trades(run=run)
    shown_instrument = request.GET.get("instrument", "")
    if shown_instrument in symbols:
        trades = trades.filter(instrument__symbol=shown_instrument)
    else:
        shown_instrument = ""
    page = Paginator(trades, TRADES_PER_PAGE).get_page(request.GET.get("page"))
    metrics = selectors.headline_metrics(run)
    context = {
        "run": run,
        "symbols": symbols,
        "weights_text": ", ".join(f"{k} {v:g}" for k, v in (run.weights or {}).items()),
        "headline": [
            {
                "key": key,
                "value": metric_text(metrics.get(key), key),
                "definition": METRIC_DEFINITIONS.get(key, ""),
            }
            for key in HEADLINE_METRICS
        ],
        "instrument_rows": [
            {
                "instrument": row.get("instrument"),
                "bars": metric_text(row.get("bars"), "bars"),
                "missing_bars": metric_text(row.get("missing_bars"), "missing_bars"),
                "contribution": metric_text(row.get("contribution"), "contribution"),
                "contribution_pct": metric_text(row.get("contribution_pct"), "contribution_pct"),
                "exposure_pct": metric_text(row.get("exposure_pct"), "exposure_pct"),
                "turnover": metric_text(row.get("turnover"), "turnover"),
                "num_trades": metric_text(row.get("num_trades"), "num_trades"),
            }
            for row in selectors.per_instrument_rows(run)
        ],
        "trades": page,
        "shown_instrument": shown_instrument,
        "page_data": _page_data(run),
        "finished": run.status == RunStatus.SUCCEEDED,
        "stopped": run.status in (RunStatus.FAILED, RunStatus.CANCELLED),
    }
    return render(request, "lab/portfolio.html", context)


urlpatterns: list[Any] = [
    path("portfolios/", lab_portfolios, name="lab-portfolios"),
    path("portfolios/<int:pk>/", lab_portfolio, name="lab-portfolio"),
]
