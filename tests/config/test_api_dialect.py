"""One API dialect: config/api's exception handler answers every view's domain errors."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError

from backtests.services import BacktestConflict, BacktestInputError
from persistence.events import StreamVersionConflict
from trading.services import LedgerConflict

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            LedgerConflict("an order that is filled cannot become cancelled", order_id=7),
            409,
            {"detail": "an order that is filled cannot become cancelled", "order_id": 7},
        ),
        (BacktestConflict("Run 3 has already succeeded."), 409, None),
        (StreamVersionConflict("order-1", 1, 2), 409, None),
        (
            BacktestInputError({"parameters": {"fast": ["Must be at least 1."]}}),
            400,
            {"parameters": {"fast": ["Must be at least 1."]}},
        ),
        (
            DjangoValidationError({"quantity": "Must be positive."}),
            400,
            {"quantity": ["Must be positive."]},
        ),
        (DjangoValidationError("No fills to record."), 400, {"detail": ["No fills to record."]}),
    ],
)
@pytest.mark.parametrize(
    ("path", "module", "name"),
    [
        ("/api/v1/cache/stats/", "backtests.api.selectors", "run_stats"),
        ("/api/v1/portfolio/", "trading.api.selectors", "portfolio"),
    ],
)
def test_a_domain_error_from_any_view_gets_the_same_answer(
    api_client, monkeypatch, error, status, body, path, module, name
):
    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(f"{module}.{name}", fail)
    response = api_client.get(path)
    assert response.status_code == status
    assert response.json() == (body or {"detail": str(error)})


def test_an_unexpected_error_is_not_swallowed(api_client, monkeypatch):
    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr("backtests.api.selectors.run_stats", fail)
    with pytest.raises(RuntimeError):
        api_client.get("/api/v1/cache/stats/")
