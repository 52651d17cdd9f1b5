"""The sign-up page `/accounts/signup/` and the login page's link to it."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db

URL = "/accounts/signup/"
GOOD_PASSWORD = "correct-horse-battery-42"


def form(**overrides: str) -> dict[str, str]:
    fields = {
        "username": "alice",
        "email": "alice@example.com",
        "password1": GOOD_PASSWORD,
        "password2": GOOD_PASSWORD,
    }
    return fields | overrides


def csrf_client() -> tuple[Client, str]:
    """A browser that enforces CSRF, after it has loaded the page and its token."""
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(URL)
    assert page.status_code == 200
    return browser, page.context["csrf_token"]


def test_sign_up_logs_the_new_user_in_and_sends_them_to_the_lab(registration_open):
    browser, token = csrf_client()
    response = browser.post(URL, form(csrfmiddlewaretoken=token))

    assert response.status_code == 302
    assert response["Location"] == "/lab/"
    user = User.objects.get(username="alice")
    assert not user.is_staff
    assert browser.session["_auth_user_id"] == str(user.pk)
    assert browser.get("/lab/").status_code == 200


def test_sign_up_without_the_csrf_token_is_refused(registration_open):
    browser, _token = csrf_client()
    assert browser.post(URL, form()).status_code == 403
    assert not User.objects.exists()


def test_the_page_shows_the_password_rules_and_fields(registration_open, client):
    html = client.get(URL).content.decode()
    for name in ("username", "email", "password1", "password2"):
        assert f'name="{name}"' in html
    assert "at least 8 characters" in html
    assert "style=" not in html  # the site's CSP forbids inline styles


def test_a_weak_password_is_shown_and_nobody_is_created(registration_open, client):
    response = client.post(URL, form(password1="password123", password2="password123"))
    assert response.status_code == 200
    assert "too common" in " ".join(response.context["form"].errors["password2"])
    assert not User.objects.exists()
    assert "_auth_user_id" not in client.session


def test_mismatched_passwords_are_shown(registration_open, client):
    response = client.post(URL, form(password2="something-else-42"))
    assert response.context["form"].errors["password2"] == [
        "The two password fields didn\u2019t match."
    ]
    assert not User.objects.exists()


def test_a_taken_email_found_by_the_service_is_shown_on_the_email_field(
    registration_open, client, user
):
    response = client.post(URL, form(email=user.email.upper()))
    assert response.status_code == 200
    assert response.context["form"].errors["email"] == [
        "A user with that email address already exists."
    ]
    assert "A user with that email address already exists." in response.content.decode()
    assert User.objects.count() == 1


def test_sign_up_logs_in_when_several_authentication_backends_are_configured(
    registration_open, client
):
    # django-axes puts a backend of its own before Django's; login() must be told which.
    registration_open.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.AllowAllUsersModelBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    assert client.post(URL, form()).status_code == 302
    assert client.get("/lab/").status_code == 200


def test_closed_registration_says_so_and_creates_nobody(settings, client):
    settings.REGISTRATION_OPEN = False
    page = client.get(URL)
    assert page.status_code == 403
    assert "Registration is closed" in page.content.decode()
    assert 'name="password1"' not in page.content.decode()
    assert client.post(URL, form()).status_code == 403
    assert not User.objects.exists()


def test_page_and_api_share_one_sign_up_budget_per_client(registration_open, client):
    registration_open.REGISTRATION_THROTTLE_RATE = "2/hour"
    assert client.post(URL, form(password2="typo")).status_code == 200
    api = client.post(
        "/api/v1/auth/register/",
        {"username": "bob", "email": "bob@example.com", "password": GOOD_PASSWORD},
    )
    assert api.status_code == 201
    refused = client.post(URL, form())
    assert refused.status_code == 429
    assert "Too many sign-up attempts" in refused.content.decode()
    assert not User.objects.filter(username="alice").exists()


def test_a_logged_in_user_is_sent_to_the_lab(registration_open, client, user):
    client.force_login(user)
    response = client.get(URL)
    assert (response.status_code, response["Location"]) == (302, "/lab/")


def test_the_login_page_links_to_sign_up_only_while_it_is_open(settings, client):
    settings.REGISTRATION_OPEN = True
    assert 'href="/accounts/signup/"' in client.get("/accounts/login/").content.decode()
    settings.REGISTRATION_OPEN = False
    html = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/signup/"' not in html
    assert 'href="/accounts/password-reset/"' in html
