"""Inputs found by fuzzing the API against its own OpenAPI schema: each one once caused a
500, and must now get a 400 naming the parameter or a 404."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/backtests/null,null/",
        "/api/v1/backtests/99999999999999999999999999/",
        "/api/v1/backtests/abc/trades/",
        "/api/v1/backtests/__main__/equity/?format=csv",
        "/api/v1/sweeps/None/",
    ],
)
def test_a_malformed_or_huge_object_id_is_a_404(api_client, path):
    assert api_client.get(path).status_code == 404


def test_cancelling_a_malformed_run_id_is_a_404(api_client):
    assert api_client.post("/api/v1/backtests/null/cancel/").status_code == 404


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/trades/?strategy=1488946639775064063148556288", "strategy"),
        ("/api/v1/positions/?strategy=-48110", "strategy"),
        ("/api/v1/orders/?strategy=abc", "strategy"),
        ("/api/v1/fills/?order=2.1078937281448444e%2B30", "order"),
        ("/api/v1/events/?after=99999999999999999999999999", "after"),
    ],
)
def test_an_out_of_range_filter_value_is_a_400_naming_the_parameter(api_client, path, parameter):
    response = api_client.get(path)
    assert response.status_code == 400, response.content
    assert parameter in response.json()
