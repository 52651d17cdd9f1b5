"""Market data: instruments, timeframes and candles (import, generation, cache, chart reads)."""
