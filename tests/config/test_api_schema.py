"""The OpenAPI schema tells the truth: the API's answers, errors included, are what it says."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle

from tests.trading.conftest import fill, submit, trade

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def openapi(api_client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema says it, so jsonschema can check a body."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def assert_conforms(openapi: dict[str, Any], schema: dict[str, Any], body: Any) -> None:
    root = {**_as_json_schema(schema), "components": _as_json_schema(openapi["components"])}
    jsonschema.Draft7Validator(root).validate(body)


def _response_schema(openapi: dict[str, Any], path: str, method: str, code: str) -> Any:
    response = openapi["paths"][path][method]["responses"][code]
    return copy.deepcopy(response["content"]["application/json"]["schema"])


def _operations(openapi: dict[str, Any]):  # type: ignore[no-untyped-def]
    for path, item in openapi["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


# --- Error responses ----------------------------------------------------------------------


def test_every_operation_documents_the_errors_the_api_answers_everywhere(openapi):
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in _operations(openapi):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        codes = ("429",) if "/auth/register/" in path else ("401", "429")  # anonymous only
        for code in codes:
            assert responses[code]["content"]["application/json"]["schema"] == error, where
        assert "Retry-After" in responses["429"]["headers"], where
        takes_format = any(
            (p["in"], p["name"]) == ("query", "format") for p in operation.get("parameters", [])
        )
        if "{" in path or takes_format:  # DRF answers a format it cannot render with a 404
            assert responses["404"]["content"]["application/json"]["schema"] == error, where
        takes_input = "requestBody" in operation or any(
            p["in"] == "query" for p in operation.get("parameters", [])
        )
        if takes_input:
            body = responses["400"]["content"]["application/json"]["schema"]
            if "/auth/register/" not in path:  # it declares its own
                assert body == {"$ref": "#/components/schemas/ValidationError"}, where
        if "/auth/token/" not in path:
            assert "403" in responses, where
        for code, response in responses.items():
            if code.startswith("4"):
                assert response["content"]["application/json"]["schema"]["$ref"], where


def test_declared_conflicts_keep_their_description_and_get_the_error_body(openapi):
    conflict = openapi["paths"]["/api/v1/orders/{id}/cancel/"]["post"]["responses"]["409"]
    assert conflict["description"] == "The order's status does not allow it"
    assert conflict["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    conflicts = {
        (path, method) for path, method, op in _operations(openapi) if "409" in op["responses"]
    }
    for path, method in conflicts:
        body = openapi["paths"][path][method]["responses"]["409"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path)
    assert conflicts >= {
        ("/api/v1/orders/", "post"),
        ("/api/v1/orders/{id}/cancel/", "post"),
        ("/api/v1/fills/", "post"),
        ("/api/v1/fills/bulk/", "post"),
        ("/api/v1/backtests/{id}/cancel/", "post"),
        ("/api/v1/backtests/{id}/export/", "get"),
        ("/api/v1/sweeps/{id}/cancel/", "post"),
        ("/api/v1/strategies/{id}/", "delete"),
    }


def test_actual_error_bodies_match_the_documented_ones(openapi, api_client, monkeypatch):
    not_found = api_client.get("/api/v1/orders/999999/")
    assert not_found.status_code == 404
    assert_conforms(
        openapi, _response_schema(openapi, "/api/v1/orders/{id}/", "get", "404"), not_found.json()
    )
    refused = api_client.get("/api/v1/trades/?symbol=NOPE&limit=0")
    assert refused.status_code == 400
    assert_conforms(
        openapi, _response_schema(openapi, "/api/v1/trades/", "get", "400"), refused.json()
    )
    anonymous = APIClient().get("/api/v1/orders/")
    assert anonymous.status_code == 401
    assert_conforms(
        openapi, _response_schema(openapi, "/api/v1/orders/", "get", "401"), anonymous.json()
    )
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "1/minute"})
    cache.clear()
    try:
        APIClient().post("/api/v1/auth/token/", {}, format="json")
        throttled = APIClient().post("/api/v1/auth/token/", {}, format="json")
    finally:
        cache.clear()
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
    assert_conforms(
        openapi, _response_schema(openapi, "/api/v1/auth/token/", "post", "429"), throttled.json()
    )


# --- Bodies of the ledger's lists ---------------------------------------------------------


def test_listed_fills_have_every_field_the_schema_requires(openapi, api_client, user, instrument):
    order = submit(user, instrument, "buy", "1.5")
    fill(order, "1.5", "100.01")
    page = api_client.get("/api/v1/fills/").json()
    assert_conforms(openapi, _response_schema(openapi, "/api/v1/fills/", "get", "200"), page)
    [row] = page["results"]
    assert Decimal(row["notional"]) == Decimal("150.015")
    detail = api_client.get(f"/api/v1/fills/{row['id']}/").json()
    assert detail == row


def test_an_open_trades_blank_exit_reason_is_in_the_schema(openapi, api_client, user, instrument):
    trade(user, instrument, "buy", "1", "100")  # opens a trade: no exit yet
    trade(user, instrument, "sell", "2", "110")  # closes it, opens a short
    page = api_client.get("/api/v1/trades/").json()
    assert sorted(t["exit_reason"] for t in page["results"]) == ["", "reversal"]
    assert_conforms(openapi, _response_schema(openapi, "/api/v1/trades/", "get", "200"), page)
    for row in page["results"]:
        detail = api_client.get(f"/api/v1/trades/{row['id']}/").json()
        assert_conforms(
            openapi, _response_schema(openapi, "/api/v1/trades/{id}/", "get", "200"), detail
        )


def test_listed_orders_and_positions_match_the_schema(openapi, api_client, user, instrument):
    trade(user, instrument, "buy", "1", "100")
    submit(user, instrument, "sell", "1", order_type="limit", limit_price=Decimal("120"))
    for name in ("orders", "positions", "events"):
        page = api_client.get(f"/api/v1/{name}/").json()
        assert page["results"], name
        schema = _response_schema(openapi, f"/api/v1/{name}/", "get", "200")
        assert_conforms(openapi, schema, page)
