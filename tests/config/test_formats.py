from __future__ import annotations

from datetime import UTC, datetime

from django.template import Context, Template


def test_dates_render_on_a_24_hour_clock_in_iso_order() -> None:
    moment = datetime(2026, 11, 30, 13, 28, tzinfo=UTC)
    rendered = Template("{{ moment }}|{{ moment|date }}|{{ moment|time }}").render(
        Context({"moment": moment})
    )
    assert rendered == "2026-11-30 13:28 UTC|2026-11-30|13:28"
