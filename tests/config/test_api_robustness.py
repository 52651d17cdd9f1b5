"""Inputs found by fuzzing the API against its own OpenAPI schema: each one once caused a
500, and must now get a 400 naming the parameter or a 404."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.factories import StrategyFactory

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


def _nested(depth: int, leaf: str = "1") -> str:
    """`{"a": {"a": ... leaf}}`, `depth` objects deep, written out as text: the test client's
    own JSON encoder would overflow on the deepest ones."""
    return '{"a":' * depth + leaf + "}" * depth


BODY_ENDPOINTS = [
    "/api/v1/orders/",
    "/api/v1/fills/",
    "/api/v1/fills/bulk/",
    "/api/v1/backtests/",
    "/api/v1/sweeps/",
]


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    ["[" * 50_000, '{"parameters": ' + _nested(3_000) + "}"],
    ids=["open-brackets", "parameters-3000-deep"],
)
def test_a_body_nested_past_pythons_recursion_limit_is_a_400(api_client, path, body):
    response = api_client.post(path, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "nested deeper than 64 levels" in response.json()["detail"]


def test_the_token_endpoint_refuses_a_deeply_nested_body_without_login():
    response = APIClient().post(
        "/api/v1/auth/token/", "[" * 50_000, content_type="application/json"
    )
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("path", "field", "depth"),
    [
        ("/api/v1/sweeps/", "grid", 500),  # its canonical JSON overflowed once it parsed
        ("/api/v1/backtests/", "parameters", 900),
        ("/api/v1/orders/", "strategy", 900),
    ],
)
def test_a_body_nested_just_below_pythons_limit_is_a_400_too(api_client, user, path, field, depth):
    strategy = StrategyFactory(owner=user)
    body = {
        "strategy": strategy.pk,
        "client_order_id": "deep",
        "symbol": strategy.instrument.symbol,
        "side": "buy",
        "quantity": "1",
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-02-01T00:00:00Z",
        "grid": {"fast": [5]},
    }
    text = json.dumps({**body, field: "DEEP"}).replace('"DEEP"', _nested(depth))
    response = api_client.post(path, text, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "nested deeper than 64 levels" in response.json()["detail"]


def test_a_body_nested_64_levels_deep_reaches_the_view(api_client):
    # 63 levels under the body's own object: the serializer, not the parser, refuses it.
    text = '{"client_order_id": "x", "strategy": ' + _nested(62) + "}"
    response = api_client.post("/api/v1/orders/", text, content_type="application/json")
    assert response.status_code == 400
    assert "strategy" in response.json()
    one_more = '{"client_order_id": "x", "strategy": ' + _nested(64) + "}"
    response = api_client.post("/api/v1/orders/", one_more, content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()


# --- Found by the schema-conformance fuzz (test_api_fuzz.py) ------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/backtests/abc/", "/api/v1/sweeps/1.5/cancel/", "/api/v1/nothing-here/"],
)
def test_a_url_under_the_api_that_no_route_matches_is_a_json_404(api_client, path):
    response = api_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_url_elsewhere_that_no_route_matches_is_still_a_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/api/v1/trades/", "/api/v1/backtests/", "/api/v1/sweeps/"])
def test_a_cursor_no_page_gave_is_a_400_naming_it(api_client, path):
    response = api_client.get(f"{path}?cursor=not-a-cursor")
    assert response.status_code == 400
    assert response.json() == {"cursor": ["Invalid cursor"]}
