"""plotly.js is served from the pinned wheel, and its style injection stays switched off."""

from __future__ import annotations

import re
from pathlib import Path

from django.contrib.staticfiles import finders

from config.vendor import PLOTLY_DIR, plotly_css

HEAD = Path(__file__).resolve().parents[2] / "templates" / "lab" / "_plotly_head.html"
CSS = Path(__file__).resolve().parents[2] / "backtests" / "static" / "lab" / "plotly-csp.css"


def test_plotly_js_is_a_static_file_from_the_wheel() -> None:
    found = finders.find("vendor/plotly.min.js")
    assert found is not None and Path(found) == PLOTLY_DIR / "plotly.min.js"


def test_the_committed_stylesheet_matches_the_installed_plotly() -> None:
    # After a plotly upgrade: python -m config.vendor > backtests/static/lab/plotly-csp.css
    assert CSS.read_text() == plotly_css()


def test_the_head_carries_every_marker_that_stops_an_inline_style() -> None:
    bundle = (PLOTLY_DIR / "plotly.min.js").read_text()
    head = HEAD.read_text()
    # The bundled map library injects its stylesheet unless an element with this id exists.
    guards = re.findall(r'document\.getElementById\("([0-9a-f]{64})"\)', bundle)
    assert guards, "plotly.min.js no longer guards its map stylesheet by id: check the CSP"
    for guard in guards:
        assert f'id="{guard}"' in head
    assert 'id="plotly.js-style-global" class="no-inline-styles"' in head
