"""The strategy form the lab and the admin share: one field per parameter of the chosen kind.

The kind's `ParamSpec` is the single description of its parameters, so the form builds its
parameter fields from it (type, default, bounds, step and help) and validates with the kind's
own `validate`, putting each message (cross-field rules included) on the field it names.
"""

from __future__ import annotations

from typing import Any

from django import forms

from strategies.library.base import Param, ParamValidationError
from strategies.library.registry import UnknownStrategyKind, all_kinds, get_kind
from strategies.models import Strategy

PARAM_PREFIX = "param_"

# The model fields a researcher edits; `owner` is the caller in the lab, a field in the admin.
STRATEGY_FIELDS: tuple[str, ...] = (
    "name",
    "description",
    "kind",
    "instrument",
    "timeframe",
    "initial_capital",
    "fee_rate",
    "slippage_bps",
    "status",
)


def param_field_name(name: str) -> str:
    return PARAM_PREFIX + name


def param_field_names(kind: str | None) -> list[str]:
    """The form field names of `kind`'s parameters (none for an unknown kind)."""
    try:
        return [param_field_name(p.name) for p in get_kind(kind or "").params.params]
    except UnknownStrategyKind:
        return []


def known_kind(kind: object) -> str | None:
    if isinstance(kind, str):
        try:
            return get_kind(kind).name
        except UnknownStrategyKind:
            return None
    return None


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def param_form_field(param: Param, initial: Any) -> forms.Field:
    """The form field for one spec parameter: bounds and step become widget attributes too."""
    common: dict[str, Any] = {
        "label": _label(param.name),
        "help_text": param.help,
        "initial": initial,
    }
    if param.type == "bool":
        return forms.BooleanField(required=False, **common)
    attrs = {
        "step": param.step if param.step is not None else ("1" if param.type == "int" else "any")
    }
    field: forms.Field
    if param.type == "int":
        field = forms.IntegerField(
            min_value=None if param.min is None else int(param.min),
            max_value=None if param.max is None else int(param.max),
            widget=forms.NumberInput(attrs=attrs),
            **common,
        )
    else:
        field = forms.FloatField(
            min_value=param.min,
            max_value=param.max,
            widget=forms.NumberInput(attrs=attrs),
            **common,
        )
    # The spec's step is a hint for the input (and the sweep), not a rule: validate() accepts
    # any value within the bounds, so the server does too.
    return field


class StrategyForm(forms.ModelForm):  # type: ignore[type-arg]
    """A strategy with its parameters as typed fields generated from the kind's spec.

    The parameter fields belong to the kind in the submitted data (or `initial`, or the
    instance). `parameters_for` records which kind the rendered fields were for: when the
    kind changes between rendering and submitting, the new kind's fields are shown with
    their defaults and the form asks for a second look instead of saving guesses.
    """

    parameters_for = forms.CharField(required=False, widget=forms.HiddenInput)
    # Archiving goes through strategy_archive/strategy_restore (buttons), not the status field.
    edits_archived_status = False

    class Meta:
        model = Strategy
        fields = STRATEGY_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind_name = self._chosen_kind()
        self.strategy_kind = get_kind(self.kind_name)
        self.kind_changed = False
        if self.is_bound:
            rendered_for = self.data.get(self.add_prefix("parameters_for"))
            self.kind_changed = bool(rendered_for) and rendered_for != self.kind_name
        if not self.edits_archived_status and "status" in self.fields:
            if self.instance.status == Strategy.Status.ARCHIVED:
                del self.fields["status"]
            else:
                status: Any = self.fields["status"]
                status.choices = [c for c in status.choices if c[0] != Strategy.Status.ARCHIVED]
        self.initial["kind"] = self.kind_name
        self.initial["parameters_for"] = self.kind_name
        if "kind" in self.fields:
            self.fields["kind"].widget.attrs["data-kind-select"] = "1"
        saved = self.instance.parameters if self.instance.kind == self.kind_name else {}
        for param in self.strategy_kind.params.params:
            name = param_field_name(param.name)
            self.fields[name] = param_form_field(
                param, (saved or {}).get(param.name, param.default)
            )
        if self.kind_changed:
            # Show the new kind's defaults, not whatever the old kind's inputs held.
            data: Any = self.data.copy()  # type: ignore[attr-defined]
            for param in self.strategy_kind.params.params:
                key = self.add_prefix(param_field_name(param.name))
                data.pop(key, None)
                if param.type != "bool":
                    data[key] = str(param.default)
                elif param.default:
                    data[key] = "on"
            data[self.add_prefix("parameters_for")] = self.kind_name
            self.data = data

    def _chosen_kind(self) -> str:
        candidates: list[object] = []
        if self.is_bound:
            candidates.append(self.data.get(self.add_prefix("kind")))
        candidates += [self.initial.get("kind"), self.instance.kind]
        for candidate in candidates:
            kind = known_kind(candidate)
            if kind is not None:
                return kind
        return all_kinds()[0].name

    def param_fields(self) -> list[forms.BoundField]:
        """The bound parameter fields, in the spec's order (for templates)."""
        return [self[param_field_name(p.name)] for p in self.strategy_kind.params.params]

    def model_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if not name.startswith(PARAM_PREFIX)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.kind_changed:
            self.add_error(
                "kind",
                f"The kind changed to {self.strategy_kind.label}: "
                "check its parameters below and save again.",
            )
            return cleaned
        if cleaned.get("kind") and cleaned["kind"] != self.kind_name:
            return cleaned  # unreachable in practice: the fields follow the posted kind
        raw = {
            p.name: cleaned[param_field_name(p.name)]
            for p in self.strategy_kind.params.params
            if cleaned.get(param_field_name(p.name)) is not None
        }
        missing = [
            p.name
            for p in self.strategy_kind.params.params
            if param_field_name(p.name) in self.errors
        ]
        try:
            parameters = self.strategy_kind.validate(raw)
        except ParamValidationError as exc:
            for name, messages in exc.errors.items():
                if name in missing:
                    continue  # the field already says what is wrong with it
                field = param_field_name(name)
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
            return cleaned
        if not missing:
            cleaned["parameters"] = parameters
            self.instance.parameters = parameters
        return cleaned

    def strategy_values(self) -> dict[str, Any]:
        """The cleaned values as the strategy services take them."""
        values = {
            name: self.cleaned_data[name] for name in self._meta.fields or () if name in self.fields
        }
        values["parameters"] = self.cleaned_data.get("parameters", {})
        return values


class StrategyAdminForm(StrategyForm):
    edits_archived_status = True

    class Meta(StrategyForm.Meta):
        fields: tuple[str, ...] = ("owner", *STRATEGY_FIELDS)


class StrategyCloneForm(forms.Form):
    name = forms.CharField(max_length=100, label="New name")


# --- Sweep ranges -----------------------------------------------------------------------

MAX_VALUES_PER_PARAMETER = 1000
BOOL_SWEEP_CHOICES = [
    ("", "strategy's value"),
    ("both", "both"),
    ("true", "true"),
    ("false", "false"),
]


def range_values(start: float, stop: float, step: float, *, integer: bool) -> list[Any]:
    """`start`, `start + step`, … up to `stop` inclusive (a hair of float slack)."""
    count = int((stop - start) / step + 1e-9) + 1
    if integer:
        return [int(start) + i * int(step) for i in range(count)]
    return [round(start + i * step, 10) for i in range(count)]


def _suggested_range(param: Param, centre: float) -> tuple[float, float, float]:
    """A handful of values around `centre`, inside the spec's bounds, on the spec's step."""
    low, high = centre * 0.5, centre * 1.5
    if param.min is not None:
        low = max(low, param.min)
    if param.max is not None:
        high = min(high, param.max)
    unit = param.step or (1 if param.type == "int" else (high - low) / 4 or 1)
    step = max(unit, round((high - low) / 4 / unit) * unit)
    if param.type == "int":
        return round(low), round(high), max(1, round(step))
    return round(low, 10), round(high, 10), round(step, 10)


class ParamRangesForm(forms.Form):
    """One range row (from, to, step) per numeric parameter of a kind; `grid()` is the sweep
    grid the rows describe. A row left blank keeps the strategy's value for that parameter."""

    def __init__(
        self,
        *args: Any,
        kind: str,
        values: dict[str, Any] | None = None,
        ranged: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kind = get_kind(kind)
        values = values or {}
        self.rows: list[dict[str, Any]] = []
        numeric_seen = 0
        for param in self.kind.params.params:
            value = values.get(param.name, param.default)
            if param.type == "bool":
                self.fields[f"{param.name}_values"] = forms.ChoiceField(
                    choices=BOOL_SWEEP_CHOICES, required=False, label=_label(param.name)
                )
                self.rows.append({"param": param, "fields": [f"{param.name}_values"]})
                continue
            numeric_seen += 1
            if numeric_seen <= ranged:
                low, high, step = _suggested_range(param, float(value))
            else:  # further parameters start fixed at the strategy's value
                low = high = value
                step = param.step or 1
            field_class = forms.IntegerField if param.type == "int" else forms.FloatField
            bounds: dict[str, Any] = {"min_value": param.min, "max_value": param.max}
            if param.type == "int":
                bounds = {k: None if v is None else int(v) for k, v in bounds.items()}
            attrs = {"step": param.step or "any", "data-range-part": ""}
            for part, initial in (("from", low), ("to", high)):
                self.fields[f"{param.name}_{part}"] = field_class(
                    required=False,
                    initial=initial,
                    label=f"{_label(param.name)} {part}",
                    widget=forms.NumberInput(attrs={**attrs, "data-range-part": part}),
                    **bounds,
                )
            self.fields[f"{param.name}_step"] = field_class(
                required=False,
                initial=step,
                label=f"{_label(param.name)} step",
                widget=forms.NumberInput(attrs={**attrs, "data-range-part": "step"}),
            )
            self.rows.append(
                {
                    "param": param,
                    "fields": [f"{param.name}_{part}" for part in ("from", "to", "step")],
                }
            )

    def range_rows(self) -> list[dict[str, Any]]:
        """For templates: each parameter with its bound fields, help and bounds."""
        return [
            {
                "name": row["param"].name,
                "type": row["param"].type,
                "help": row["param"].help,
                "min": row["param"].min,
                "max": row["param"].max,
                "fields": [self[name] for name in row["fields"]],
            }
            for row in self.rows
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        grid: dict[str, list[Any]] = {}
        if not self.rows:
            raise forms.ValidationError(
                f"{self.kind.label} has no parameters to sweep: run a single backtest instead."
            )
        for row in self.rows:
            param: Param = row["param"]
            if param.type == "bool":
                choice = cleaned.get(f"{param.name}_values")
                if choice:
                    grid[param.name] = [True, False] if choice == "both" else [choice == "true"]
                continue
            names = {part: f"{param.name}_{part}" for part in ("from", "to", "step")}
            if any(name in self.errors for name in names.values()):
                continue
            parts: dict[str, Any] = {part: cleaned.get(name) for part, name in names.items()}
            if all(v is None for v in parts.values()):
                continue  # left blank: the strategy's own value
            missing = [part for part, v in parts.items() if v is None]
            for part in missing:
                self.add_error(names[part], "Required when this parameter is swept.")
            if missing:
                continue
            start, stop, step = parts["from"], parts["to"], parts["step"]
            if step <= 0:
                self.add_error(names["step"], "Step must be greater than 0.")
                continue
            if stop < start:
                self.add_error(names["to"], f"Must be at least the start ({_fmt_number(start)}).")
                continue
            count = int((stop - start) / step + 1e-9) + 1
            if count > MAX_VALUES_PER_PARAMETER:
                self.add_error(
                    names["step"],
                    f"This range has {count:,} values (at most {MAX_VALUES_PER_PARAMETER:,}): "
                    "use a larger step.",
                )
                continue
            grid[param.name] = range_values(start, stop, step, integer=param.type == "int")
        if not grid and not self.errors:
            raise forms.ValidationError("The grid is empty: give at least one parameter a range.")
        cleaned["grid"] = grid
        return cleaned


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
