"""Template filters for results: `{% load lab_format %}` then `{{ key|metric_label }}` and
`{{ run.parameters|params_text }}` (see backtests/presentation.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template

from backtests import presentation

register = template.Library()


@register.filter
def metric_label(key: str) -> str:
    return presentation.metric_label(key)


@register.filter
def params_text(params: Mapping[str, Any] | None) -> str:
    return presentation.params_text(params)
