from __future__ import annotations

from django.template import Context, Template

from backtests.engine import METRIC_DEFINITIONS
from backtests.presentation import METRIC_LABELS, metric_label, params_text


def test_every_engine_metric_has_a_label_in_words() -> None:
    assert set(METRIC_DEFINITIONS) <= set(METRIC_LABELS)
    assert all("_" not in label for label in METRIC_LABELS.values())
    assert metric_label("sharpe") == "Sharpe ratio"
    assert metric_label("some_new_metric") == "Some new metric"


def test_parameters_read_as_words_not_as_a_dict() -> None:
    assert params_text({"fast": 10, "slow": 60}) == "fast 10 · slow 60"
    assert params_text({"std_dev": 2.0, "allow_short": True}) == "std dev 2 · allow short yes"
    assert params_text({}) == "defaults"


def test_the_template_filters_render_the_same_words() -> None:
    rendered = Template(
        "{% load lab_format %}{{ key|metric_label }} / {{ params|params_text }}"
    ).render(Context({"key": "max_drawdown_pct", "params": {"period": 14}}))
    assert rendered == "Max drawdown % / period 14"
