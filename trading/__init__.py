"""Instruments, market data and the trading ledger."""
