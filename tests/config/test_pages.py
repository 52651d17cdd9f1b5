"""Site-wide pages outside the API: the 404 page and the favicon."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_unknown_run_id_in_the_lab_is_the_labs_plain_404_page(client: Client, user) -> None:
    client.force_login(user)
    response = client.get("/lab/runs/999999/")
    assert response.status_code == 404
    assert "404.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert 'id="not-found"' in page
    assert "Back to research" in page
    assert "URLconf" not in page and "Traceback" not in page  # not Django's debug page


def test_an_unknown_page_is_the_same_404_page_for_visitors(client: Client) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert 'id="not-found"' in response.content.decode()


def test_favicon_ico_redirects_to_the_static_svg(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")


def test_the_labs_pages_link_the_favicon(client: Client, user) -> None:
    client.force_login(user)
    page = client.get("/lab/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
