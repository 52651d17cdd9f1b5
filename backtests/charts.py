"""Server-rendered SVG charts: no JavaScript library to vendor, nothing fetched at runtime."""

from __future__ import annotations

import pandas as pd
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from backtests.selectors import curve_thin

WIDTH, EQUITY_HEIGHT, DRAWDOWN_HEIGHT, PAD = 900, 240, 110, 4
MAX_POINTS = 900  # about one point per pixel column


def _points(values: pd.Series, top: float, height: float, low: float, high: float) -> str:
    span = (high - low) or 1.0
    step = WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{top + height - (v - low) / span * height:.1f}"
        for i, v in enumerate(values.to_numpy())
    )


def equity_chart_svg(frame: pd.DataFrame) -> SafeString:
    """Equity above, drawdown below, sharing the time axis."""
    if frame.empty:
        return mark_safe("<p>No equity curve stored.</p>")
    thin = curve_thin(frame, max_points=MAX_POINTS)
    equity, drawdown = thin["equity"], thin["drawdown"] * 100
    eq_low, eq_high = float(equity.min()), float(equity.max())
    dd_low = min(float(drawdown.min()), -0.01)
    dd_top = EQUITY_HEIGHT + 2 * PAD
    equity_line = _points(equity, PAD, EQUITY_HEIGHT, eq_low, eq_high)
    dd_line = _points(drawdown, dd_top, DRAWDOWN_HEIGHT, dd_low, 0.0)
    height = dd_top + DRAWDOWN_HEIGHT + PAD
    return format_html(
        '<svg class="equity-chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
        'aria-label="Equity and drawdown">'
        '<polyline fill="none" stroke="#2a7ab0" stroke-width="1.5" points="{eq}"/>'
        '<polygon fill="#d9534f" fill-opacity="0.35" points="0,{dd_top} {dd} {w},{dd_top}"/>'
        '<text x="6" y="16" font-size="12">Equity {first} → {last} '
        "(min {low}, max {high})</text>"
        '<text x="6" y="{dd_label}" font-size="12">Drawdown, worst {worst}%</text>'
        '<text x="6" y="{axis}" font-size="11" fill="#666">{start}</text>'
        '<text x="{w}" y="{axis}" font-size="11" fill="#666" text-anchor="end">{end}</text>'
        "</svg>",
        w=WIDTH,
        h=height + 14,
        eq=equity_line,
        dd=dd_line,
        dd_top=dd_top,
        first=f"{float(frame['equity'].iloc[0]):,.2f}",
        last=f"{float(frame['equity'].iloc[-1]):,.2f}",
        low=f"{eq_low:,.2f}",
        high=f"{eq_high:,.2f}",
        dd_label=dd_top + 14,
        worst=f"{float(frame['drawdown'].min()) * 100:.2f}",
        axis=height + 12,
        start=f"{frame.index[0]:%Y-%m-%d %H:%M}",
        end=f"{frame.index[-1]:%Y-%m-%d %H:%M}",
    )
