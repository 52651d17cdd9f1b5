"""How results read to people, shared by the lab, the admin and the exports' labels.

Metric keys stay snake_case in the API and the stored JSON; pages show these names. Strategy
parameters read as "fast 10 · slow 60", never as a Python dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backtests.engine import METRIC_DEFINITIONS

METRIC_LABELS: dict[str, str] = {
    "start": "Start",
    "end": "End",
    "duration_s": "Duration",
    "bars": "Bars",
    "exposure_pct": "Exposure %",
    "initial_capital": "Initial capital",
    "final_equity": "Final equity",
    "peak_equity": "Peak equity",
    "min_equity": "Lowest equity",
    "profit": "Profit",
    "commissions": "Fees paid",
    "return_pct": "Return %",
    "buy_hold_return_pct": "Buy & hold return %",
    "annualized_return_pct": "Annualised return %",
    "cagr_pct": "CAGR %",
    "annualized_volatility_pct": "Annualised volatility %",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "alpha_pct": "Alpha %",
    "beta": "Beta",
    "max_drawdown_pct": "Max drawdown %",
    "avg_drawdown_pct": "Average drawdown %",
    "max_drawdown_duration_s": "Longest drawdown",
    "avg_drawdown_duration_s": "Average drawdown length",
    "num_trades": "Trades",
    "open_trades": "Open trades",
    "long_trades": "Long trades",
    "short_trades": "Short trades",
    "win_rate_pct": "Win rate %",
    "best_trade_pct": "Best trade %",
    "worst_trade_pct": "Worst trade %",
    "avg_trade_pct": "Average trade %",
    "max_trade_duration_s": "Longest trade",
    "avg_trade_duration_s": "Average trade length",
    "avg_winner_duration_s": "Average winner length",
    "avg_loser_duration_s": "Average loser length",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy",
    "expectancy_ratio": "Expectancy ratio",
    "sqn": "SQN",
    "kelly": "Kelly criterion",
    "max_consecutive_wins": "Most wins in a row",
    "max_consecutive_losses": "Most losses in a row",
    "best_day_pct": "Best day %",
    "worst_day_pct": "Worst day %",
    "winning_days": "Winning days",
    "drawn_days": "Flat days",
    "losing_days": "Losing days",
    "orders_skipped": "Orders skipped",
    "liquidated": "Liquidated",
}


def metric_label(key: str) -> str:
    """The name a person reads for a metric key; unknown keys still read as words."""
    return METRIC_LABELS.get(key) or key.replace("_", " ").capitalize()


def metric_labels() -> dict[str, str]:
    """Every engine metric's label, for pages that name metrics in JavaScript."""
    return {key: metric_label(key) for key in METRIC_DEFINITIONS}


def params_text(params: Mapping[str, Any] | None) -> str:
    """Strategy parameters as words: "fast 10 · slow 60"; no parameters reads "defaults"."""
    if not params:
        return "defaults"
    return " · ".join(f"{name.replace('_', ' ')} {_value(value)}" for name, value in params.items())


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
