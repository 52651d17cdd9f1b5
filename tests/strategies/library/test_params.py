"""Parameter specs validate input field by field and describe themselves as JSON."""

from __future__ import annotations

import json

import pytest

from strategies.library.base import ParamValidationError
from strategies.library.registry import get_kind


def errors_of(kind: str, params: dict) -> dict[str, list[str]]:
    with pytest.raises(ParamValidationError) as caught:
        get_kind(kind).validate(params)
    return caught.value.errors


def test_defaults_fill_missing_parameters():
    assert get_kind("sma_cross").validate({}) == {"fast": 10, "slow": 50}
    assert get_kind("sma_cross").validate({"fast": 5}) == {"fast": 5, "slow": 50}


def test_integral_floats_and_numeric_strings_are_coerced():
    cleaned = get_kind("sma_cross").validate({"fast": 5.0, "slow": "60"})
    assert cleaned == {"fast": 5, "slow": 60}
    assert isinstance(cleaned["fast"], int)


def test_cross_field_rule_is_reported_on_the_offending_field():
    errors = errors_of("sma_cross", {"fast": 50, "slow": 20})
    assert list(errors) == ["fast"]
    assert "less than slow" in errors["fast"][0]


def test_equal_fast_and_slow_violates_the_rule():
    assert "fast" in errors_of("ema_cross", {"fast": 20, "slow": 20})


def test_out_of_range_values_name_the_bound():
    errors = errors_of("rsi_reversion", {"window": 1, "oversold": 120})
    assert errors["window"] == ["Must be at least 2."]
    assert errors["oversold"] == ["Must be at most 100."]


def test_unknown_parameters_are_errors():
    errors = errors_of("sma_cross", {"fast": 5, "sloww": 60})
    assert "Unknown parameter" in errors["sloww"][0]


def test_wrong_types_are_rejected_with_a_message():
    errors = errors_of("sma_cross", {"fast": 5.5, "slow": True})
    assert errors["fast"] == ["Must be an integer."]
    assert errors["slow"] == ["Must be an integer."]
    assert errors_of("bollinger_reversion", {"num_std": "wide"}) == {
        "num_std": ["Must be a number."]
    }
    assert "num_std" in errors_of("bollinger_reversion", {"num_std": float("nan")})


def test_every_error_is_reported_at_once():
    errors = errors_of("macd_cross", {"fast": 0, "slow": 1, "signal": 0, "x": 1})
    assert set(errors) == {"fast", "slow", "signal", "x"}


def test_error_message_is_readable_as_a_whole():
    with pytest.raises(ParamValidationError, match="fast: Must be less than slow"):
        get_kind("sma_cross").validate({"fast": 60})


def test_spec_json_lists_every_field_with_bounds_and_rules():
    spec = get_kind("sma_cross").spec_json()
    json.dumps(spec)  # must be JSON-serialisable as is
    by_name = {entry["name"]: entry for entry in spec}
    assert by_name["fast"]["type"] == "int"
    assert by_name["fast"]["default"] == 10
    assert by_name["fast"]["min"] == 1
    assert by_name["slow"]["max"] == 5000
    assert by_name["fast"]["rules"][0]["rule"] == "lt"
    assert by_name["fast"]["rules"][0]["right"] == "slow"
    assert by_name["fast"]["help"]


def test_defaults_of_every_kind_are_valid():
    from strategies.library.registry import all_kinds

    for kind in all_kinds():
        defaults = kind.params.defaults()
        assert kind.validate(defaults) == defaults
