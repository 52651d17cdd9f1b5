"""The strategy form generated from a kind's ParamSpec, and the sweep's range rows."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms

from strategies.forms import ParamRangesForm, StrategyAdminForm, StrategyForm
from strategies.library.registry import get_kind
from tests.factories import InstrumentFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def _data(instrument_id: int, kind: str = "sma_cross", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "trend",
        "description": "",
        "kind": kind,
        "parameters_for": kind,
        "instrument": instrument_id,
        "timeframe": "1h",
        "initial_capital": "10000",
        "fee_rate": "0.001",
        "slippage_bps": "0",
        "status": "draft",
    }
    data.update(changes)
    return data


def test_parameter_fields_follow_the_kinds_spec_with_bounds_step_help_and_defaults():
    form = StrategyForm(initial={"kind": "bollinger_reversion"})
    window, num_std = form.fields["param_window"], form.fields["param_num_std"]

    assert isinstance(window, forms.IntegerField) and isinstance(num_std, forms.FloatField)
    assert (window.min_value, window.max_value, window.initial) == (2, 5000, 20)
    assert (num_std.min_value, num_std.max_value, num_std.initial) == (0.1, 10, 2.0)
    assert num_std.widget.attrs["step"] == 0.1
    assert window.help_text == "Band window, in bars."
    assert num_std.label == "Num std"
    assert "parameters" not in form.fields  # no raw JSON
    assert [f.name for f in form.param_fields()] == ["param_window", "param_num_std"]


def test_an_instances_saved_parameters_are_the_initial_values():
    strategy = StrategyFactory(kind="sma_cross", parameters={"fast": 7, "slow": 70})
    form = StrategyForm(instance=strategy)
    assert form["param_fast"].value() == 7 and form["param_slow"].value() == 70


def test_posted_values_become_the_cleaned_parameters():
    instrument = InstrumentFactory()
    form = StrategyForm(_data(instrument.pk, param_fast="8", param_slow="40"))
    assert form.is_valid(), form.errors
    assert form.strategy_values()["parameters"] == {"fast": 8, "slow": 40}


def test_a_cross_field_rule_puts_its_error_on_the_field_it_names():
    instrument = InstrumentFactory()
    form = StrategyForm(_data(instrument.pk, param_fast="60", param_slow="50"))
    assert not form.is_valid()
    assert form.errors["param_fast"] == ["Must be less than slow (50)."]
    assert "param_slow" not in form.errors


def test_a_value_outside_the_bounds_is_an_error_on_its_field():
    instrument = InstrumentFactory()
    form = StrategyForm(_data(instrument.pk, param_fast="0", param_slow="50"))
    assert not form.is_valid()
    assert list(form.errors) == ["param_fast"]


def test_a_kind_without_parameters_accepts_an_empty_set():
    instrument = InstrumentFactory()
    form = StrategyForm(_data(instrument.pk, kind="buy_and_hold", name="BTC buy & hold"))
    assert form.is_valid(), form.errors
    assert not [name for name in form.fields if name.startswith("param_")]
    assert form.strategy_values()["parameters"] == {}
    # The seeded strategy validates as stored.
    seeded = StrategyFactory(kind="buy_and_hold", parameters={})
    assert StrategyForm(instance=seeded).param_fields() == []


def test_the_fields_follow_the_kind_in_the_submitted_data_not_the_instance():
    strategy = StrategyFactory(kind="sma_cross", parameters={"fast": 10, "slow": 50})
    form = StrategyForm(
        _data(strategy.instrument_id, kind="rsi_reversion", param_window="10",
              param_oversold="25", param_overbought="75"),
        instance=strategy,
    )  # fmt: skip
    assert "param_window" in form.fields and "param_fast" not in form.fields
    assert form.is_valid(), form.errors
    assert form.strategy_values()["parameters"] == {
        "window": 10,
        "oversold": 25.0,
        "overbought": 75.0,
    }


def test_changing_the_kind_without_seeing_its_fields_asks_for_a_second_look():
    strategy = StrategyFactory(kind="sma_cross")
    data = _data(strategy.instrument_id, kind="rsi_reversion", param_fast="10")
    data["parameters_for"] = "sma_cross"  # the page showed the SMA fields
    form = StrategyForm(data, instance=strategy)
    assert not form.is_valid()
    assert "check its parameters" in form.errors["kind"][0]
    assert form["param_window"].value() == "14"  # the new kind's default is shown


def test_the_lab_form_leaves_archiving_to_the_archive_button_but_the_admin_may_set_it():
    lab_choices = [c[0] for c in StrategyForm().fields["status"].choices]  # type: ignore[attr-defined]
    admin_choices = [c[0] for c in StrategyAdminForm().fields["status"].choices]  # type: ignore[attr-defined]
    assert "archived" not in lab_choices and "draft" in lab_choices
    assert "archived" in admin_choices and "owner" in StrategyAdminForm().fields


# --- Sweep ranges ---------------------------------------------------------------------------


def _ranges(kind: str = "sma_cross", **data: str) -> ParamRangesForm:
    return ParamRangesForm(data, kind=kind, values=get_kind(kind).params.defaults())


def test_range_rows_build_the_grid_the_sweep_service_takes():
    form = _ranges(fast_from="5", fast_to="15", fast_step="5", slow_from="30", slow_to="60",
                   slow_step="30")  # fmt: skip
    assert form.is_valid(), form.errors
    assert form.cleaned_data["grid"] == {"fast": [5, 10, 15], "slow": [30, 60]}


def test_float_ranges_land_on_the_step_without_float_drift():
    form = _ranges("bollinger_reversion", num_std_from="1.5", num_std_to="2.5", num_std_step="0.1")
    assert form.is_valid(), form.errors
    assert form.cleaned_data["grid"] == {
        "num_std": [1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5]
    }


def test_a_range_outside_the_bounds_is_an_error_on_that_field():
    form = _ranges(fast_from="0", fast_to="10", fast_step="1")
    assert not form.is_valid()
    assert list(form.errors) == ["fast_from"]
    assert (
        "at least 1" in form.errors["fast_from"][0].lower()
        or "greater" in form.errors["fast_from"][0].lower()
    )


@pytest.mark.parametrize("step", ["0", "-2"])
def test_a_step_that_is_not_positive_is_an_error_on_the_step(step):
    form = _ranges(fast_from="5", fast_to="10", fast_step=step)
    assert not form.is_valid()
    assert form.errors["fast_step"] == ["Step must be greater than 0."]


def test_a_range_that_ends_before_it_starts_is_an_error_on_to():
    form = _ranges(fast_from="20", fast_to="10", fast_step="1")
    assert not form.is_valid()
    assert "fast_to" in form.errors


def test_an_empty_grid_is_a_clear_error():
    form = _ranges()
    assert not form.is_valid()
    assert form.non_field_errors() == ["The grid is empty: give at least one parameter a range."]


def test_a_half_filled_row_names_the_missing_parts():
    form = _ranges(fast_from="5")
    assert not form.is_valid()
    assert set(form.errors) == {"fast_to", "fast_step"}


def test_a_kind_without_parameters_cannot_be_swept():
    form = _ranges("buy_and_hold")
    assert not form.is_valid()
    assert "no parameters to sweep" in form.non_field_errors()[0]


def test_ranges_are_prefilled_inside_the_bounds_around_the_strategys_values():
    form = ParamRangesForm(kind="sma_cross", values={"fast": 2, "slow": 4000})
    fast = (form["fast_from"].value(), form["fast_to"].value(), form["fast_step"].value())
    slow = (form["slow_from"].value(), form["slow_to"].value(), form["slow_step"].value())
    assert fast[0] >= 1 and fast[0] <= 2 <= fast[1] and fast[2] >= 1
    assert slow[1] <= 5000 and slow[0] <= 4000 <= slow[1]
