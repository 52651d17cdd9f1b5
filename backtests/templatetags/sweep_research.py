"""`{% load sweep_research %}{% sweep_research original as research %}`: a sweep's heatmap
address, ranked table and open-as-backtest request for the admin's sweep page, as the lab's
sweep page has them (backtests.lab_research.sweep_research)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from backtests import lab_research
from backtests.models import Sweep

register = template.Library()

_ANY_ID = 987654321  # reversed, then swapped for the {id} the page script fills in


@register.simple_tag
def sweep_research(sweep: Sweep) -> dict[str, Any]:
    run_url = reverse("admin:backtests_backtestrun_change", args=[_ANY_ID])
    return lab_research.sweep_research(sweep, run_url=run_url.replace(str(_ANY_ID), "{id}"))
