"""Backtest runs, sweeps, their tasks and live progress; the pure engine is `backtests.engine`."""
