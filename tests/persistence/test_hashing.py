"""The params hash: one spelling per meaning, and a different hash for a different meaning."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from persistence.hashing import UnhashableValueError, canonical_json, params_hash

BASE = {
    "kind": "sma_cross",
    "parameters": {"fast": 10, "slow": 50},
    "fee_rate": 0.001,
    "start": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
}


def test_key_order_does_not_change_the_hash() -> None:
    reordered = {
        "start": BASE["start"],
        "fee_rate": 0.001,
        "parameters": {"slow": 50, "fast": 10},
        "kind": "sma_cross",
    }
    assert params_hash(reordered) == params_hash(BASE)


@pytest.mark.parametrize(
    "fee", [0.001, 1e-3, Decimal("0.001"), Decimal("0.001000"), np.float64(0.001)]
)
def test_float_spelling_does_not_change_the_hash(fee: object) -> None:
    assert params_hash({**BASE, "fee_rate": fee}) == params_hash(BASE)


@pytest.mark.parametrize("fast", [10.0, Decimal("10.00"), np.int64(10)])
def test_integral_numbers_hash_like_the_integer(fast: object) -> None:
    assert params_hash({**BASE, "parameters": {"fast": fast, "slow": 50}}) == params_hash(BASE)


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    paris = dt.datetime(2024, 1, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
    assert params_hash({**BASE, "start": paris}) == params_hash(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"fee_rate": 0.0011},
        {"parameters": {"fast": 11, "slow": 50}},
        {"kind": "ema_cross"},
        {"start": dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)},
    ],
)
def test_any_change_of_meaning_changes_the_hash(change: dict[str, object]) -> None:
    assert params_hash({**BASE, **change}) != params_hash(BASE)


def test_a_flag_is_not_the_number_one() -> None:
    assert params_hash({"allow_short": True}) != params_hash({"allow_short": 1})


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1.50, "a": [1, 2.0]}) == '{"a":[1,2],"b":1.5}'


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), dt.datetime(2024, 1, 1), object()],
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(UnhashableValueError):
        params_hash({"x": value})


def test_the_hash_is_hex_sha256() -> None:
    digest = params_hash(BASE)
    assert len(digest) == 64
    int(digest, 16)
