"""Bar timeframes Tradelab knows, and how each one annualises."""

from __future__ import annotations

import pandas as pd

# Seconds per bar. Crypto-style markets trade around the clock, so a year is
# 365 days of bars; this is the convention freqtrade and vectorbt use for crypto.
TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 5 * 60,
    "15m": 15 * 60,
    "30m": 30 * 60,
    "1h": 60 * 60,
    "4h": 4 * 60 * 60,
    "1d": 24 * 60 * 60,
}

SECONDS_PER_YEAR = 365 * 24 * 60 * 60


def timeframe_choices() -> list[tuple[str, str]]:
    return [(tf, tf) for tf in TIMEFRAME_SECONDS]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    return pd.Timedelta(seconds=TIMEFRAME_SECONDS[timeframe])


def periods_per_year(timeframe: str) -> float:
    return SECONDS_PER_YEAR / TIMEFRAME_SECONDS[timeframe]
