"""Password reset by email: Django's views under `/accounts/password-reset/`, our pages."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-secret-77"


def reset_link(mail) -> str:  # type: ignore[no-untyped-def]
    match = re.search(r"https?://testserver(/accounts/password-reset/\S+/\S+/)", mail.body)
    assert match, mail.body
    return match.group(1)


def logs_in(username: str, password: str) -> bool:
    """Whether the login page lets `username` in (django-axes wants a real request)."""
    browser = Client()
    response = browser.post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in browser.session


def test_the_emailed_link_sets_a_new_password_that_logs_in(client, user, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "Tradelab <noreply@tradelab.test>"
    asked = client.post("/accounts/password-reset/", {"email": user.email.upper()})
    assert (asked.status_code, asked["Location"]) == (302, "/accounts/password-reset/done/")
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [user.email]
    assert mail.from_email == "Tradelab <noreply@tradelab.test>"
    assert mail.subject == "Reset your Tradelab password"
    assert user.username in mail.body

    link = reset_link(mail)
    form_page = client.get(link, follow=True)  # Django swaps the token for a session key
    assert form_page.context["validlink"] is True
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert (done.status_code, done["Location"]) == (302, "/accounts/password-reset/complete/")
    assert "Password changed" in client.get(done["Location"]).content.decode()

    assert logs_in(user.username, NEW_PASSWORD)
    assert not logs_in(user.username, "pass-word-123")
    assert Client().get(link, follow=True).context["validlink"] is False  # used once


def test_the_new_password_must_pass_the_validators(client, user, mailoutbox):
    client.post("/accounts/password-reset/", {"email": user.email})
    form_page = client.get(reset_link(mailoutbox[0]), follow=True)
    set_url = form_page.redirect_chain[-1][0]
    refused = client.post(set_url, {"new_password1": "12345678", "new_password2": "12345678"})
    assert refused.status_code == 200
    assert "entirely numeric" in " ".join(refused.context["form"].errors["new_password2"])
    user.refresh_from_db()
    assert user.check_password("pass-word-123")


def test_an_unknown_address_gets_the_same_answer_and_no_mail(client, mailoutbox):
    asked = client.post("/accounts/password-reset/", {"email": "nobody@example.com"})
    assert (asked.status_code, asked["Location"]) == (302, "/accounts/password-reset/done/")
    assert mailoutbox == []


def test_a_forged_link_is_refused(client, user):
    page = client.get("/accounts/password-reset/MQ/not-a-token/", follow=True)
    assert page.context["validlink"] is False
    assert "This link is invalid" in page.content.decode()


def test_the_reset_pages_are_the_sites_own(client):
    html = client.get("/accounts/password-reset/").content.decode()
    assert "Reset your password" in html
    assert "lab/lab.css" in html  # the lab's layout, not the admin's
    assert "style=" not in html
