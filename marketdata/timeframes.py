"""Bar timeframes and trading calendars Tradelab knows, and how each one annualises.

Pure (no Django): the engine imports it.

Calendars:
- "24/7" (crypto): a year is 365 days of bars, the convention freqtrade and vectorbt use for
  crypto; a weekly bar is 1/52.14 of a year.
- "exchange" (equities, FX, futures): a year is `trading_days_per_year` sessions (252 by
  default); an intraday bar is 1/(days * bars per session); a weekly bar 1/52.

A month ("1M") is a calendar month on both: 12 a year. Bars are labelled by their open time,
so consecutive monthly bars are 28 to 31 days apart.
"""

from __future__ import annotations

import pandas as pd

# Nominal seconds per bar. A month's length varies: its entry is the mean Gregorian month,
# used only where a nominal length is enough (never to step from one bar to the next).
TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 5 * 60,
    "15m": 15 * 60,
    "30m": 30 * 60,
    "1h": 60 * 60,
    "4h": 4 * 60 * 60,
    "1d": 24 * 60 * 60,
    "1w": 7 * 24 * 60 * 60,
    "1M": 2_629_746,  # 365.2425 / 12 days
}

DAY_SECONDS = 24 * 60 * 60
SECONDS_PER_YEAR = 365 * DAY_SECONDS

# Monthly bars open on the first of each month: 28 to 31 days apart.
MONTH_SPACING_SECONDS = (28 * DAY_SECONDS, 31 * DAY_SECONDS)

CALENDAR_24_7 = "24/7"
CALENDAR_EXCHANGE = "exchange"
CALENDARS = (CALENDAR_24_7, CALENDAR_EXCHANGE)
TRADING_DAYS_PER_YEAR = 252
WEEKS_PER_YEAR_EXCHANGE = 52


def timeframe_choices() -> list[tuple[str, str]]:
    return [(tf, tf) for tf in TIMEFRAME_SECONDS]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """The nominal length of one bar; for "1M" the mean month (see timeframe_offset)."""
    return pd.Timedelta(seconds=TIMEFRAME_SECONDS[timeframe])


def timeframe_offset(timeframe: str) -> pd.Timedelta | pd.DateOffset:
    """What to add to a bar's open time to get the next bar's: a calendar month for "1M"."""
    if timeframe == "1M":
        return pd.DateOffset(months=1)
    return timeframe_delta(timeframe)


def is_intraday(timeframe: str) -> bool:
    return TIMEFRAME_SECONDS[timeframe] < DAY_SECONDS


def spacing_matches(timeframe: str, spacing_seconds: float) -> bool:
    """Whether bars `spacing_seconds` apart (their typical spacing) are `timeframe` bars."""
    if timeframe == "1M":
        low, high = MONTH_SPACING_SECONDS
        return low <= spacing_seconds <= high
    return spacing_seconds == TIMEFRAME_SECONDS[timeframe]


def timeframe_of_spacing(spacing_seconds: float) -> str | None:
    """The timeframe whose bars are `spacing_seconds` apart, or None if none is."""
    for timeframe in TIMEFRAME_SECONDS:
        if spacing_matches(timeframe, spacing_seconds):
            return timeframe
    return None


def periods_per_year(
    timeframe: str,
    calendar: str = CALENDAR_24_7,
    *,
    trading_days_per_year: float = TRADING_DAYS_PER_YEAR,
    bars_per_day: float | None = None,
) -> float:
    """Bars in a year of `calendar`: the P that annualises per-bar statistics.

    On an exchange calendar an intraday bar needs `bars_per_day` (bars per session).
    """
    if timeframe == "1M":
        return 12.0
    if calendar == CALENDAR_24_7:
        return SECONDS_PER_YEAR / TIMEFRAME_SECONDS[timeframe]
    if calendar != CALENDAR_EXCHANGE:
        raise ValueError(f"unknown calendar {calendar!r}; known: {', '.join(CALENDARS)}")
    if timeframe == "1w":
        return float(WEEKS_PER_YEAR_EXCHANGE)
    if timeframe == "1d":
        return float(trading_days_per_year)
    if bars_per_day is None:
        raise ValueError(f"an intraday timeframe ({timeframe}) on an exchange needs bars_per_day")
    return float(trading_days_per_year) * bars_per_day
