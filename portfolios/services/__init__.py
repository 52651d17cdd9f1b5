"""Writes for portfolio runs: their settings (settings), submission (submit) and execution
(execution, the task's body).

Invariants kept here:

- Bad input raises BacktestInputError (a 400 per field, config.api) and creates nothing.
- A run's results (metrics, trades, the equity artifact, the cache entry) are saved in the
  transaction that marks it succeeded, so a failed run has none of them.
- Only the execution whose task id is on the run may start or finish it.
"""

from portfolios.services.execution import portfolio_execute
from portfolios.services.settings import (
    EQUITY_ARTIFACT,
    MAX_INSTRUMENTS,
    MIN_INSTRUMENTS,
    PORTFOLIO_CACHE_KIND,
    PortfolioSettings,
    engine_config,
    engine_options,
    portfolio_key,
    portfolio_settings_resolve,
)
from portfolios.services.submit import portfolio_submit

__all__ = [
    "EQUITY_ARTIFACT",
    "MAX_INSTRUMENTS",
    "MIN_INSTRUMENTS",
    "PORTFOLIO_CACHE_KIND",
    "PortfolioSettings",
    "engine_config",
    "engine_options",
    "portfolio_execute",
    "portfolio_key",
    "portfolio_settings_resolve",
    "portfolio_submit",
]
