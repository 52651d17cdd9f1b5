"""Template filters for the back-office's own pages: `{% load admin_format %}` then
`{{ value|amount }}` (a Decimal grouped by thousands, without trailing zeros, exact) and
`{{ rate|percent }}` (a 0-1 ratio as "87.5%")."""

from __future__ import annotations

from decimal import Decimal

from django import template

from persistence.admin import amount_text

register = template.Library()


@register.filter
def amount(value: Decimal | None) -> str:
    return "—" if value is None else amount_text(Decimal(value)) or "—"


@register.filter
def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"
