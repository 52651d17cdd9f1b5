"""The admin site as a whole: every domain model is registered and its list renders (for a
superuser), internal tables stay out of other staff's way, and constraints speak in words."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.factories import UserFactory

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
    assert staff_user.is_superuser  # internal tables are for superusers only
    assert model in site._registry, f"{model._meta.label} is not in the admin"
    client.force_login(staff_user)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client.get(url).status_code == 200


INTERNAL_TABLES = [
    "persistence.ParamSet",
    "persistence.CachedResult",
    "persistence.Artifact",
    "persistence.Snapshot",
    "persistence.Checkpoint",
    "trading.PositionHead",
    "trading.TradeRollup",
    "trading.TradeStreakRollup",
]


def _changelist(label: str) -> str:
    model = apps.get_model(label)
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def test_staff_who_are_not_superusers_do_not_see_the_internal_tables(client) -> None:  # type: ignore[no-untyped-def]
    staff = UserFactory(is_staff=True, is_superuser=False)
    staff.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(staff)

    index = client.get(reverse("admin:index")).content.decode()

    assert f'href="{_changelist("trading.Order")}"' in index  # the domain tables stay
    assert f'href="{_changelist("backtests.BacktestRun")}"' in index
    for label in INTERNAL_TABLES:
        assert f'href="{_changelist(label)}"' not in index, label
        assert client.get(_changelist(label)).status_code == 403, label


def test_superusers_still_see_the_internal_tables(client, staff_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(staff_user)
    index = client.get(reverse("admin:index")).content.decode()
    for label in INTERNAL_TABLES:
        assert f'href="{_changelist(label)}"' in index, label


def test_every_constraint_explains_itself_in_words() -> None:
    # Without a message, a refused form shows 'Constraint "<name>" is violated.'
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            assert (
                constraint.violation_error_message != constraint.default_violation_error_message
            ), f"{model._meta.label}: {constraint.name}"
