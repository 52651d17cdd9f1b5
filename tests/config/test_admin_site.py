"""The admin site as a whole: every domain model is registered and its list renders."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.admin.sites import site
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model",
    [
        m
        for m in apps.get_models()
        if m._meta.app_label
        in {"accounts", "persistence", "marketdata", "strategies", "trading", "backtests"}
    ],
    ids=lambda m: m._meta.label,
)
def test_every_domain_model_is_registered_and_its_list_page_renders(client, staff_user, model):
    assert model in site._registry, f"{model._meta.label} is not in the admin"
    client.force_login(staff_user)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client.get(url).status_code == 200
