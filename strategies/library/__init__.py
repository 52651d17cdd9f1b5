"""Pure strategy library: indicators, parameter specs and signal rules.

Nothing in this package imports Django, so it can be tested and benchmarked alone.
"""
