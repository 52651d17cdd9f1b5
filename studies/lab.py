"""The lab's pages for studies: the researcher's list, the form that starts one (built from
the strategy kind's ParamSpec, submitted through studies.services like the sweep form), and
a study's page, whose charts load from the REST API and from `history.json` here.

Its urlpatterns sit under /lab/ next to the lab's own (config/urls.py). The page words what
the study holds (objectives, search space, windows, DSR and PBO) server-side; the charts
and the trials table are drawn by studies/static/lab/study_page.js.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import pandas as pd
from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse

from accounts.models import User
from backtests.lab_research import duration_text, metric_text, value_text, when_text
from backtests.models import FINISHED_STATUSES, RunStatus
from backtests.presentation import metric_label, metric_labels, params_text
from backtests.services import BacktestInputError
from backtests.services.sweeps import MINIMIZED_METRICS, RANKABLE_METRICS
from marketdata.selectors import candle_span
from strategies.library.base import Param
from strategies.library.registry import get_kind
from strategies.models import Strategy
from strategies.selectors import strategy_owned_list
from studies import selectors, services
from studies.models import (
    TRIAL_FINISHED_STATES,
    FoldRole,
    SamplerName,
    Study,
    StudyFold,
    StudyMode,
)
from studies.windows import ANCHORED, MODES, ROLLING, parse_length

STUDIES_PER_PAGE = 50
DIRECTION_WORDS = {"maximize": "higher is better", "minimize": "lower is better"}
METRIC_CHOICES = [(name, metric_label(name)) for name in RANKABLE_METRICS]


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]  # login_required has checked it


# --- Words ------------------------------------------------------------------------------


def objectives_text(objectives: Iterable[Mapping[str, Any]]) -> str:
    """The objectives in words: "Sharpe ratio (higher is better) · Trades (higher is better)"."""
    return " · ".join(
        f"{metric_label(o['metric'])} ({DIRECTION_WORDS.get(o.get('direction', ''), '')})"
        for o in objectives
    )


def dimension_text(name: str, dimension: Mapping[str, Any]) -> str:
    """One searched parameter in words: "fast 5 to 40 step 5", "signal 5, 9"."""
    words = name.replace("_", " ")
    if dimension.get("type") == "categorical":
        return f"{words} {', '.join(value_text(v) for v in dimension.get('choices', []))}"
    text = f"{words} {value_text(dimension['low'])} to {value_text(dimension['high'])}"
    if dimension.get("log"):
        return f"{text} (log scale)"
    if dimension.get("step") is not None:
        return f"{text} step {value_text(dimension['step'])}"
    return text


def space_text(space: Mapping[str, Mapping[str, Any]]) -> str:
    return " · ".join(dimension_text(name, dim) for name, dim in space.items()) or "nothing"


def constraints_text(constraints: Iterable[Mapping[str, Any]]) -> str:
    """In words: "Trades at least 3 · Max drawdown % at least -25"; "none" without any."""
    parts = []
    for item in constraints:
        label = metric_label(item["metric"])
        if item.get("min") is not None and item.get("max") is not None:
            parts.append(f"{label} from {value_text(item['min'])} to {value_text(item['max'])}")
        elif item.get("min") is not None:
            parts.append(f"{label} at least {value_text(item['min'])}")
        elif item.get("max") is not None:
            parts.append(f"{label} at most {value_text(item['max'])}")
    return " · ".join(parts) or "none"


def length_text(value: Any) -> str:
    """A window length as stored (bars, or "30d"/"720m"-style durations) in words."""
    if isinstance(value, int):
        return f"{value:,} bars"
    try:
        parsed = parse_length(value)
    except ValueError:
        return str(value)
    if isinstance(parsed, int):
        return f"{parsed:,} bars"
    return duration_text(parsed.total_seconds())


def walk_forward_text(walk_forward: Mapping[str, Any] | None) -> str:
    if not walk_forward:
        return ""
    mode = "Anchored" if walk_forward.get("mode") == ANCHORED else "Rolling"
    folds = walk_forward.get("folds")
    return (
        f"{mode} · in-sample {length_text(walk_forward['in_sample'])} · out-of-sample "
        f"{length_text(walk_forward['out_of_sample'])} · step "
        f"{length_text(walk_forward.get('step', walk_forward['out_of_sample']))}"
        + (f" · {folds} folds" if folds else "")
    )


def values_text(study: Study, values: list[Any] | None) -> str:
    """Objective values with their metric names: "Sharpe ratio 1.23 · Trades 40"."""
    if not values:
        return "—"
    return " · ".join(
        f"{metric_label(o['metric'])} {metric_text(v, o['metric'])}"
        for o, v in zip(study.objectives, values, strict=False)
    )


def best_value_text(study: Study) -> str:
    """The first objective's best value, for the list."""
    if not study.best_values or not study.objectives:
        return "—"
    return metric_text(study.best_values[0], study.objectives[0]["metric"])


def _probability(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def overfitting_rows(overfitting: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The DSR and PBO of an optimisation, each with the sentence that says what it means
    for this one; empty when it was not computed (fewer than two complete trials)."""
    if not overfitting:
        return []
    rows = []
    dsr = overfitting.get("deflated_sharpe_ratio") or {}
    if dsr:
        value = dsr.get("value")
        verdict = (
            "not computable (the trials' Sharpe ratios do not vary)"
            if value is None
            else "above 0.95, so the chosen Sharpe ratio is unlikely to be luck"
            if value >= 0.95
            else "below 0.95, so the chosen Sharpe ratio may well be luck of the search"
        )
        rows.append(
            {
                "key": "dsr",
                "name": "Deflated Sharpe Ratio",
                "value": _probability(value),
                "sentence": (
                    "The probability that the chosen trial's true Sharpe ratio is above zero "
                    f"once the {dsr.get('n_trials', 0)} trials tried, and the skew and fat "
                    f"tails of its {dsr.get('observations', 0)} returns, are allowed for: "
                    f"{verdict}."
                ),
            }
        )
    pbo = overfitting.get("probability_of_backtest_overfitting") or {}
    if pbo:
        value = pbo.get("value")
        verdict = (
            "not computable (too few periods to split)"
            if value is None
            else "low: the in-sample winner usually stays above the median"
            if value < 0.2
            else "high: choosing the in-sample best is little better than chance"
            if value >= 0.5
            else "moderate: the in-sample winner often falls below the median"
        )
        rows.append(
            {
                "key": "pbo",
                "name": "Probability of Backtest Overfitting",
                "value": _probability(value),
                "sentence": (
                    "How often the trial that was best in one half of the periods ranked below "
                    "the median in the other half, over "
                    f"{pbo.get('combinations', 0):,} combinatorial splits: {verdict}."
                ),
            }
        )
    return rows


def stage_label(role: str, index: int) -> str:
    return "Whole period" if role == FoldRole.WHOLE else f"Fold {index + 1}"


# --- The list ---------------------------------------------------------------------------


@login_required
def lab_studies(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    # The researcher's own studies, staff included (the back-office lists everyone's).
    studies = selectors.study_list(user=user).filter(owner=user)
    page = Paginator(studies, STUDIES_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "study": study,
            "title": study.strategy.name if study.strategy else study.kind,
            "objectives": objectives_text(study.objectives),
            "best": best_value_text(study),
            "live": study.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        }
        for study in page.object_list
    ]
    return render(request, "lab/studies.html", {"rows": rows, "page": page})


def recent_studies(user: User, limit: int = 5) -> list[dict[str, Any]]:
    """The user's newest studies in words, for the lab's home page."""
    return [
        {
            "study": study,
            "title": study.strategy.name if study.strategy else study.kind,
            "objectives": objectives_text(study.objectives),
            "best": best_value_text(study),
        }
        for study in selectors.study_list(user=user).filter(owner=user)[:limit]
    ]


# --- The form ---------------------------------------------------------------------------


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _suggested_dimension(param: Param, value: float) -> tuple[float, float, float | None]:
    """Half to one and a half times the strategy's value, inside the spec's bounds, on the
    spec's step: a search around what the researcher already uses."""
    low, high = value * 0.5, value * 1.5
    if param.min is not None:
        low = max(low, param.min)
    if param.max is not None:
        high = min(high, param.max)
    step = param.step
    if param.type == "int":
        step = int(step or 1)
        low = round(low)
        high = low + ((round(high) - low) // step) * step
        return low, max(high, low), step
    if step:
        high = low + int((high - low) / step + 1e-9) * step
        return round(low, 10), round(high, 10), step
    return round(low, 10), round(high, 10), None


class StudySpaceForm(forms.Form):
    """The search space from the kind's ParamSpec: low, high and step per numeric parameter
    (a row left blank keeps the strategy's value), "search both" for a yes/no one. The first
    `ranged` numeric parameters start with a range around the strategy's values."""

    def __init__(
        self,
        *args: Any,
        kind: str,
        values: Mapping[str, Any] | None = None,
        ranged: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kind = get_kind(kind)
        values = values or {}
        self.rows: list[dict[str, Any]] = []
        numeric = 0
        for param in self.kind.params.params:
            if param.type == "bool":
                name = f"{param.name}_search"
                self.fields[name] = forms.ChoiceField(
                    choices=[("", "strategy's value"), ("both", "search yes and no")],
                    required=False,
                    label=_label(param.name),
                )
                self.rows.append({"param": param, "fields": [name]})
                continue
            numeric += 1
            suggested: tuple[Any, Any, Any] = (None, None, None)
            if numeric <= ranged:
                suggested = _suggested_dimension(
                    param, float(values.get(param.name, param.default))
                )
            field_class = forms.IntegerField if param.type == "int" else forms.FloatField
            bounds: dict[str, Any] = {"min_value": param.min, "max_value": param.max}
            if param.type == "int":
                bounds = {k: None if v is None else int(v) for k, v in bounds.items()}
            step_attr = param.step or ("1" if param.type == "int" else "any")
            for part, initial in zip(("low", "high"), suggested[:2], strict=True):
                self.fields[f"{param.name}_{part}"] = field_class(
                    required=False,
                    initial=initial,
                    label=f"{_label(param.name)} {part}",
                    widget=forms.NumberInput(attrs={"step": step_attr, "data-space-part": part}),
                    **bounds,
                )
            self.fields[f"{param.name}_step"] = field_class(
                required=False,
                initial=suggested[2],
                min_value=0,
                label=f"{_label(param.name)} step",
                widget=forms.NumberInput(attrs={"step": step_attr, "data-space-part": "step"}),
            )
            self.rows.append(
                {"param": param, "fields": [f"{param.name}_{p}" for p in ("low", "high", "step")]}
            )

    def space_rows(self) -> list[dict[str, Any]]:
        """For the template: each parameter with its bound fields, help, bounds and the
        strategy-side default."""
        return [
            {
                "name": row["param"].name,
                "type": row["param"].type,
                "help": row["param"].help,
                "min": row["param"].min,
                "max": row["param"].max,
                "fields": [self[name] for name in row["fields"]],
                "errors": [e for name in row["fields"] for e in self[name].errors],
            }
            for row in self.rows
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        space: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            param: Param = row["param"]
            if param.type == "bool":
                if cleaned.get(f"{param.name}_search") == "both":
                    space[param.name] = {"choices": [True, False]}
                continue
            names = {part: f"{param.name}_{part}" for part in ("low", "high", "step")}
            if any(name in self.errors for name in names.values()):
                continue
            low, high, step = (cleaned.get(names[part]) for part in ("low", "high", "step"))
            if low is None and high is None and step is None:
                continue  # left blank: the strategy's value
            if low is None or high is None:
                for part, value in (("low", low), ("high", high)):
                    if value is None:
                        self.add_error(names[part], "Required when this parameter is searched.")
                continue
            if high < low:
                self.add_error(names["high"], f"Must be at least the low ({value_text(low)}).")
                continue
            if step is not None and step <= 0:
                self.add_error(names["step"], "Step must be greater than 0.")
                continue
            dimension: dict[str, Any] = {"low": low, "high": high}
            if step is not None:
                dimension["step"] = step
            space[param.name] = dimension
        if not space and not self.errors:
            raise forms.ValidationError(
                "The search space is empty: give at least one parameter a range."
            )
        cleaned["search_space"] = space
        return cleaned

    def error_field(self, parameter: str) -> str | None:
        """The field a service error about `parameter` belongs on."""
        for name in (f"{parameter}_low", f"{parameter}_search"):
            if name in self.fields:
                return name
        return None


def _window_length(value: str) -> int | str:
    """A typed window length: digits are bars, "30d" a duration (studies.windows)."""
    text = value.strip()
    length: int | str = int(text) if text.isdigit() else text
    try:
        parse_length(length)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from exc
    return length


class WindowLengthField(forms.CharField):
    def clean(self, value: Any) -> int | str | None:
        text = super().clean(value)
        return _window_length(text) if text else None


def _datetime_input(element_id: str) -> forms.DateTimeInput:
    return forms.DateTimeInput(
        attrs={"type": "datetime-local", "id": element_id}, format="%Y-%m-%dT%H:%M"
    )


class StudySettingsForm(forms.Form):
    """What a study needs besides its search space, field for field as the API takes it."""

    start = forms.DateTimeField(label="Start (UTC)", widget=_datetime_input("st-start"))
    end = forms.DateTimeField(label="End (UTC, exclusive)", widget=_datetime_input("st-end"))
    sampler = forms.ChoiceField(
        label="Sampler",
        choices=SamplerName.choices,
        initial=SamplerName.TPE,
        help_text="Grid tries every point of the space (steps required); random draws points; "
        "TPE learns where the good ones are; NSGA-II searches two or more objectives.",
    )
    n_trials = forms.IntegerField(
        label="Trials", min_value=1, initial=50, help_text="Per optimisation (per fold)."
    )
    objective = forms.ChoiceField(label="Objective", choices=METRIC_CHOICES, initial="sharpe")
    direction = forms.ChoiceField(
        label="Direction",
        required=False,
        choices=[
            ("", "the metric's own"),
            ("maximize", "maximise"),
            ("minimize", "minimise"),
        ],
    )
    objective_2 = forms.ChoiceField(
        label="Second objective",
        required=False,
        choices=[("", "none"), *METRIC_CHOICES],
        help_text="Two objectives make a Pareto front (NSGA-II or TPE).",
    )
    direction_2 = forms.ChoiceField(
        label="Direction",
        required=False,
        choices=[("", "the metric's own"), ("maximize", "maximise"), ("minimize", "minimise")],
    )
    min_trades = forms.IntegerField(
        label="Minimum trades",
        required=False,
        min_value=0,
        help_text="A trial with fewer trades is never chosen.",
    )
    constraint_metric = forms.ChoiceField(
        label="Constraint", required=False, choices=[("", "none"), *METRIC_CHOICES]
    )
    constraint_min = forms.FloatField(label="at least", required=False)
    constraint_max = forms.FloatField(label="at most", required=False)
    parallelism = forms.IntegerField(
        label="Parallelism", min_value=1, initial=2, help_text="Trials in flight at once."
    )
    seed = forms.IntegerField(label="Seed", min_value=0, initial=0)
    use_cache = forms.BooleanField(label="Use cache", required=False, initial=True)
    walk_forward = forms.BooleanField(
        label="Run a walk-forward",
        required=False,
        widget=forms.CheckboxInput(attrs={"id": "st-wf"}),
        help_text="Optimise on each fold's in-sample window, test on the window after it.",
    )
    wf_mode = forms.ChoiceField(
        label="Windows",
        required=False,
        initial=ROLLING,
        choices=[(ROLLING, "rolling"), (ANCHORED, "anchored (from the start)")],
    )
    wf_in_sample = WindowLengthField(
        label="In-sample", required=False, help_text="Bars (2000) or a duration (90d, 12w)."
    )
    wf_out_of_sample = WindowLengthField(label="Out-of-sample", required=False)
    wf_step = WindowLengthField(
        label="Step", required=False, help_text="Left blank: the out-of-sample length."
    )
    compare_whole_period = forms.BooleanField(
        label="Also optimise the whole period, to compare", required=False, initial=True
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("walk_forward"):
            for name in ("wf_in_sample", "wf_out_of_sample"):
                if cleaned.get(name) is None and name not in self.errors:
                    self.add_error(name, "Required for a walk-forward.")
            if cleaned.get("wf_mode") not in MODES:
                cleaned["wf_mode"] = ROLLING
        metric = cleaned.get("constraint_metric")
        low, high = cleaned.get("constraint_min"), cleaned.get("constraint_max")
        if metric and low is None and high is None:
            self.add_error("constraint_min", "Give at least, at most or both.")
        if not metric and (low is not None or high is not None):
            self.add_error("constraint_metric", "Choose the metric these bounds are for.")
        return cleaned

    def objectives(self) -> list[dict[str, str]]:
        found = []
        for metric_name, direction_name in (
            ("objective", "direction"),
            ("objective_2", "direction_2"),
        ):
            metric = self.cleaned_data.get(metric_name)
            if metric:
                item = {"metric": metric}
                if self.cleaned_data.get(direction_name):
                    item["direction"] = self.cleaned_data[direction_name]
                found.append(item)
        return found

    def constraints(self) -> list[dict[str, Any]] | None:
        metric = self.cleaned_data.get("constraint_metric")
        if not metric:
            return None
        return [
            {
                "metric": metric,
                "min": self.cleaned_data.get("constraint_min"),
                "max": self.cleaned_data.get("constraint_max"),
            }
        ]

    def walk_forward_request(self) -> dict[str, Any] | None:
        if not self.cleaned_data.get("walk_forward"):
            return None
        request = {
            "mode": self.cleaned_data.get("wf_mode") or ROLLING,
            "in_sample": self.cleaned_data["wf_in_sample"],
            "out_of_sample": self.cleaned_data["wf_out_of_sample"],
        }
        if self.cleaned_data.get("wf_step") is not None:
            request["step"] = self.cleaned_data["wf_step"]
        return request


def _lines(messages: Any, prefix: str = "") -> list[str]:
    """Service errors are lists, or dicts of lists: one line each."""
    if isinstance(messages, dict):
        return [line for key, inner in messages.items() for line in _lines(inner, prefix)]
    if isinstance(messages, list | tuple):
        return [line for inner in messages for line in _lines(inner, prefix)]
    return [f"{prefix}{messages}"]


# Where the parts of the service's `objectives` and `constraints` errors go on the form.
_ITEM_FIELDS = {
    "objectives": [
        {"metric": "objective", "direction": "direction"},
        {"metric": "objective_2", "direction": "direction_2"},
    ],
    "constraints": [
        {"metric": "constraint_metric", "min": "constraint_min", "max": "constraint_max"}
    ],
}


def apply_service_errors(
    errors: Mapping[str, Any], settings_form: StudySettingsForm, space: StudySpaceForm
) -> None:
    """Put each of study_submit's per-field errors on the form field it names."""
    for key, messages in errors.items():
        if key == "search_space":
            if isinstance(messages, dict):
                for name, inner in messages.items():
                    for line in _lines(inner):
                        field = space.error_field(name)
                        space.add_error(field, line if field else f"{name}: {line}")
            else:
                for line in _lines(messages):
                    space.add_error(None, line)
        elif key in _ITEM_FIELDS and isinstance(messages, list):
            targets = _ITEM_FIELDS[key]
            for position, item in enumerate(messages):
                fields = targets[min(position, len(targets) - 1)]
                if isinstance(item, dict):
                    for part, inner in item.items():
                        target = fields.get(part, fields["metric"])
                        for line in _lines(inner):
                            settings_form.add_error(target, line)
                else:
                    settings_form.add_error(fields["metric"], str(item))
        elif key == "walk_forward":
            if isinstance(messages, dict):
                for part, inner in messages.items():
                    field = f"wf_{part}"
                    for line in _lines(inner):
                        if field in settings_form.fields:
                            settings_form.add_error(field, line)
                        else:
                            settings_form.add_error("walk_forward", f"{part}: {line}")
            else:
                for line in _lines(messages):
                    settings_form.add_error("walk_forward", line)
        else:
            field = key if key in settings_form.fields else None
            for line in _lines(messages):
                settings_form.add_error(field, line if field else f"{key}: {line}")


def _input_time(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M") if value is not None else ""


@login_required
def lab_study_new(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    choices = list(strategy_owned_list(user=user).exclude(status=Strategy.Status.ARCHIVED))
    chosen = request.POST.get("strategy") or request.GET.get("strategy")
    strategy = next((s for s in choices if str(s.pk) == chosen), None)
    if chosen and strategy is None:
        raise Http404("No such strategy.")  # anyone else's, or an archived one
    strategy = strategy or (choices[0] if choices else None)
    if strategy is None:
        return render(request, "lab/study_new.html", {"strategy": None, "choices": choices})
    data = request.POST if request.method == "POST" else None
    space = StudySpaceForm(data, kind=strategy.kind, values=strategy.parameters, prefix="space")
    span = candle_span(instrument_id=strategy.instrument_id, timeframe=strategy.timeframe)
    settings_form = StudySettingsForm(
        data,
        initial={
            "start": _input_time(span[0]) if span else "",
            # The end is exclusive: one minute past the last bar's open time includes it.
            "end": _input_time(pd.Timestamp(span[1]) + timedelta(minutes=1)) if span else "",
        },
    )
    if data is not None and space.is_valid() and settings_form.is_valid():
        values = settings_form.cleaned_data
        try:
            study = services.study_submit(
                user=user,
                strategy=strategy,
                start=values["start"],
                end=values["end"],
                sampler=values["sampler"],
                n_trials=values["n_trials"],
                search_space=space.cleaned_data["search_space"],
                objectives=settings_form.objectives(),
                constraints=settings_form.constraints(),
                min_trades=values.get("min_trades"),
                parallelism=values["parallelism"],
                seed=values["seed"],
                walk_forward=settings_form.walk_forward_request(),
                compare_whole_period=bool(values.get("compare_whole_period")),
                use_cache=bool(values.get("use_cache")),
            )
        except BacktestInputError as exc:
            apply_service_errors(exc.errors, settings_form, space)
        else:
            return redirect("lab-study", pk=study.pk)
    context = {
        "strategy": strategy,
        "choices": choices,
        "space": space,
        "settings_form": settings_form,
        "kind": space.kind,
        "span": (
            f"{when_text(span[0])} → {when_text(span[1])}"
            if span
            else "no candles stored for this instrument and timeframe yet"
        ),
    }
    return render(request, "lab/study_new.html", context)


# --- A study's page ---------------------------------------------------------------------


def _own_study(request: HttpRequest, pk: int) -> Study:
    study = selectors.study_get(user=_user(request), study_id=pk)
    if study is None:
        raise Http404("No such study.")
    return study


def fold_rows(study: Study, folds: Iterable[StudyFold]) -> list[dict[str, Any]]:
    """The walk-forward's folds in words: windows, the parameters chosen, the first
    objective in and out of sample, and the fold's DSR and PBO."""
    metric = study.objectives[0]["metric"] if study.objectives else "sharpe"
    rows = []
    for fold in folds:
        overfitting = fold.overfitting or {}
        dsr = (overfitting.get("deflated_sharpe_ratio") or {}).get("value")
        pbo = (overfitting.get("probability_of_backtest_overfitting") or {}).get("value")
        rows.append(
            {
                "label": stage_label(fold.role, fold.index),
                "status": fold.status,
                "in_sample": f"{when_text(fold.is_start)} → {when_text(fold.is_end)}",
                "out_of_sample": (
                    f"{when_text(fold.oos_start)} → {when_text(fold.oos_end)}"
                    if fold.oos_start and fold.oos_end
                    else "—"
                ),
                "chosen": params_text(fold.chosen_parameters) if fold.chosen_parameters else "—",
                "is_value": metric_text((fold.is_metrics or {}).get(metric), metric),
                "oos_value": metric_text((fold.oos_metrics or {}).get(metric), metric),
                "dsr": _probability(dsr) if overfitting else "—",
                "pbo": _probability(pbo) if overfitting else "—",
                "cache_hit": fold.cache_hit,
                "error": fold.error,
            }
        )
    return rows


def importance_of(study: Study, folds: list[StudyFold]) -> dict[str, Any]:
    """Parameter importance to chart: the whole period's optimisation's, else the mean of
    the folds' (each fold's sums to 1, so the mean does too)."""
    whole = (study.summary or {}).get("importance") or {}
    if whole:
        return {"source": "the whole-period optimisation", "values": whole}
    found = [fold.importance for fold in folds if fold.importance]
    if not found:
        return {"source": "", "values": {}}
    names = sorted({name for importance in found for name in importance})
    mean = {name: sum(i.get(name, 0.0) for i in found) / len(found) for name in names}
    return {"source": f"the mean over {len(found)} folds", "values": mean}


def walk_forward_strip(study: Study) -> list[dict[str, str]]:
    """The walk-forward's headline figures: the stitched out-of-sample curve's metrics, its
    efficiency, and the whole-period optimum over the same span."""
    summary = (study.summary or {}).get("walk_forward") or {}
    if not summary:
        return []
    oos = summary.get("oos_metrics") or {}
    whole = (summary.get("whole_period") or {}).get("oos_span_metrics") or {}
    efficiency = (summary.get("efficiency") or {}).get("value")
    strip = [
        {
            "label": f"out of sample {metric_label(key)}",
            "value": metric_text(oos.get(key), key),
            "key": f"oos-{key}",
        }
        for key in ("return_pct", "sharpe", "max_drawdown_pct", "num_trades")
        if key in oos
    ]
    strip.append(
        {
            "label": "walk-forward efficiency",
            "value": "—" if efficiency is None else f"{efficiency:.2f}",
            "key": "efficiency",
        }
    )
    if "return_pct" in whole:
        strip.append(
            {
                "label": "whole-period optimum's return %",
                "value": metric_text(whole.get("return_pct"), "return_pct"),
                "key": "whole-return_pct",
            }
        )
    return strip


@login_required
def lab_study(request: HttpRequest, pk: int) -> HttpResponse:
    study = _own_study(request, pk)
    folds = list(selectors.study_folds(study=study))
    finished = study.status == RunStatus.SUCCEEDED
    summary = study.summary or {}
    page_data = {
        "id": study.pk,
        "mode": study.mode,
        "status": study.status,
        "objectives": [{**o, "label": metric_label(o["metric"])} for o in study.objectives or []],
        "minimized": sorted(MINIMIZED_METRICS),
        "metric_labels": metric_labels(),
        "importance": importance_of(study, folds) if finished else {"source": "", "values": {}},
        "urls": {
            "study": f"/api/v1/studies/{study.pk}/",
            "trials": f"/api/v1/studies/{study.pk}/trials/",
            "folds": f"/api/v1/studies/{study.pk}/folds/",
            "equity": f"/api/v1/studies/{study.pk}/equity/",
            "cancel": f"/api/v1/studies/{study.pk}/cancel/",
            "backtests": reverse("backtest-list"),
            "history": reverse("lab-study-history", args=[study.pk]),
            "run": "/lab/runs/{id}/",
        },
        "can_open": study.strategy_id is not None,
    }
    context = {
        "study": study,
        "title": study.strategy.name if study.strategy else study.kind,
        "mode_label": StudyMode(study.mode).label,
        "sampler_label": SamplerName(study.sampler).label,
        "objectives_text": objectives_text(study.objectives or []),
        "space_text": space_text(study.search_space or {}),
        "fixed_text": params_text(study.parameters) if study.parameters else "",
        "constraints_text": constraints_text(study.constraints or []),
        "walk_forward_text": walk_forward_text(study.walk_forward),
        "range_text": f"{when_text(study.start)} → {when_text(study.end)}",
        "created_text": when_text(study.created_at),
        "best_text": values_text(study, study.best_values),
        "best_parameters_text": (
            params_text(study.best_parameters) if study.best_parameters else "—"
        ),
        "finished": finished,
        "live": study.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        "stopped": study.status in FINISHED_STATUSES and not finished,
        "walk_forward": study.mode == StudyMode.WALK_FORWARD,
        "multi_objective": len(study.objectives or []) > 1,
        "fold_rows": fold_rows(study, folds),
        "overfitting": overfitting_rows(summary.get("overfitting")),
        "overfitting_source": (
            "the whole-period optimisation"
            if study.mode == StudyMode.WALK_FORWARD
            else "the optimisation"
        ),
        "wf_strip": walk_forward_strip(study),
        "admin_url": (
            reverse("admin:studies_study_change", args=[study.pk])
            if _user(request).is_staff
            else None
        ),
        "exports": [
            ("xlsx (trials and folds)", f"/api/v1/studies/{study.pk}/export/?format=xlsx"),
            ("Trials CSV", f"/api/v1/studies/{study.pk}/export/?format=csv&table=trials"),
            ("Folds CSV", f"/api/v1/studies/{study.pk}/export/?format=csv&table=folds"),
        ],
        "page_data": page_data,
    }
    return render(request, "lab/study.html", context)


@login_required
def lab_study_history(request: HttpRequest, pk: int) -> JsonResponse:
    """Every finished trial of the study, compactly and per stage (fold or whole period),
    for the optimisation history and the Pareto front; the page then adds each trial the
    WebSocket reports."""
    study = selectors.study_get(user=_user(request), study_id=pk)
    if study is None:
        return JsonResponse({"detail": "No such study."}, status=404)
    stages: dict[int, dict[str, Any]] = {}
    for stage in selectors.study_stages(study=study):
        stages[stage.pk] = {
            "key": f"{stage.role}-{stage.index}",
            "role": stage.role,
            "index": stage.index,
            "label": stage_label(stage.role, stage.index),
            "pareto_front": [row.get("number") for row in stage.pareto_front or []],
            "number": [],
            "values": [],
            "params": [],
            "state": [],
            "cache_hit": [],
        }
    rows = (
        selectors.study_trials(study=study)
        .filter(state__in=TRIAL_FINISHED_STATES)
        .order_by("fold_id", "number", "slot")
        .values_list("fold_id", "number", "state", "values", "params", "cache_hit")
    )
    for fold_id, number, state, values, params, cache_hit in rows:
        found = stages.get(fold_id)
        if found is None:
            continue
        found["number"].append(number)
        found["values"].append(values)
        found["params"].append(params_text(params))
        found["state"].append(state)
        found["cache_hit"].append(cache_hit)
    return JsonResponse({"study": study.pk, "stages": list(stages.values())})


urlpatterns: list[Any] = [
    path("studies/", lab_studies, name="lab-studies"),
    path("studies/new/", lab_study_new, name="lab-study-new"),
    path("studies/<int:pk>/", lab_study, name="lab-study"),
    path("studies/<int:pk>/history.json", lab_study_history, name="lab-study-history"),
]
