"""`/api/v1/` itself: the API's entry point lists its top-level endpoints."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_the_api_root_lists_top_level_endpoints_with_absolute_urls() -> None:
    response = APIClient().get("/api/v1/")
    assert response.status_code == 200
    links = response.json()
    assert links["backtests"] == "http://testserver/api/v1/backtests/"
    assert links["sweeps"] == "http://testserver/api/v1/sweeps/"
    assert links["strategies"] == "http://testserver/api/v1/strategies/"
    assert links["orders"] == "http://testserver/api/v1/orders/"
    assert links["docs"] == "http://testserver/api/docs/"


def test_every_link_of_the_api_root_is_routed(api_client: APIClient) -> None:
    links = api_client.get("/api/v1/").json()
    for name, url in links.items():
        # POST-only endpoints answer 405 and the download needs its query: routed all the same.
        assert api_client.get(url).status_code != 404, name


def test_the_api_root_is_left_out_of_the_schema() -> None:
    paths = APIClient().get("/api/schema/?format=json").json()["paths"]
    assert "/api/v1/" not in paths
    assert "/api/v1/backtests/" in paths
