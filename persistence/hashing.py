"""Canonical JSON and the SHA-256 parameter hash that keys every cached result.

Two requests that mean the same thing must hash the same, so values are normalised before
they are serialised: keys are sorted, numbers are compared by value (``10``, ``10.0`` and
``Decimal("10.000")`` are one number), floats use their shortest round-trip form, and
datetimes become ISO 8601 in UTC. Anything that cannot be compared by value is refused
rather than hashed by accident (NaN, naive datetimes, arbitrary objects).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

# Integers beyond 2**53 are not exactly representable as floats, so a float that large is
# kept as a float rather than silently turned into an integer it may not equal.
_MAX_EXACT_INT = 2**53


class UnhashableValueError(TypeError):
    """A value has no canonical JSON form (NaN, a naive datetime, an unknown type)."""


def _number(value: float | Decimal) -> int | float:
    as_float = float(value)
    if not math.isfinite(as_float):
        raise UnhashableValueError(f"{value!r} is not a finite number")
    if as_float.is_integer() and abs(as_float) < _MAX_EXACT_INT:
        return int(as_float)
    return as_float


def canonicalize(value: Any) -> Any:
    """`value` reduced to JSON types with one spelling per meaning."""
    # bool before int: True is an int in Python, but a flag is not the number 1.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return _number(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise UnhashableValueError(f"naive datetime {value!r}; use an aware UTC datetime")
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): canonicalize(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonicalize(item) for item in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return canonicalize(item())
    raise UnhashableValueError(f"cannot hash a value of type {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON of the canonical form of `value`."""
    return json.dumps(
        canonicalize(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def params_hash(value: Any) -> str:
    """SHA-256 (hex) of `canonical_json(value)`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
