"""`{% load study_lab %}{% recent_studies user as studies %}`: the user's newest studies in
words, for the lab's home page (whose view, in backtests, may not import studies)."""

from __future__ import annotations

from typing import Any

from django import template

from studies import lab

register = template.Library()


@register.simple_tag
def recent_studies(user: Any, limit: int = 5) -> list[dict[str, Any]]:
    if not getattr(user, "is_authenticated", False):
        return []
    return lab.recent_studies(user, limit=limit)
