"""Strategies: the `Strategy` model and the pure strategy library in `strategies.library`."""
