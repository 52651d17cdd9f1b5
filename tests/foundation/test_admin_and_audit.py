"""The admin works as a back-office, and every edit there leaves an audit entry."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.apps import apps
from django.contrib.admin.sites import site
from django.urls import reverse

from persistence.models import Event
from strategies.models import Strategy
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def _strategy_form(strategy: Strategy, **changes: object) -> dict[str, object]:
    data = {
        "owner": strategy.owner_id,
        "name": strategy.name,
        "description": strategy.description,
        "kind": strategy.kind,
        "parameters": '{"fast": 10, "slow": 50}',
        "instrument": strategy.instrument_id,
        "timeframe": strategy.timeframe,
        "initial_capital": "10000",
        "fee_rate": "0.001",
        "slippage_bps": "0",
        "status": strategy.status,
    }
    data.update(changes)
    return data


def test_admin_edit_of_a_strategy_records_the_user_and_changed_fields(client, staff_user):
    strategy = StrategyFactory(status="draft")
    client.force_login(staff_user)
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])

    response = client.post(url, _strategy_form(strategy, status="paused", name="renamed"))

    assert response.status_code == 302, response.content[:2000]
    entry = LogEntry.objects.get_for_object(strategy).order_by("-timestamp").first()
    assert entry is not None
    assert entry.actor == staff_user
    assert entry.action == LogEntry.Action.UPDATE
    assert entry.changes_dict["status"] == ["draft", "paused"]
    assert entry.changes_dict["name"][1] == "renamed"


def test_strategy_history_page_shows_the_audit_trail(client, staff_user):
    strategy = StrategyFactory()
    client.force_login(staff_user)
    client.post(
        reverse("admin:strategies_strategy_change", args=[strategy.pk]),
        _strategy_form(strategy, status="active"),
    )
    history = client.get(reverse("admin:strategies_strategy_history", args=[strategy.pk]))
    assert history.status_code == 200
    assert staff_user.username in history.content.decode()
    assert "active" in history.content.decode()


def test_admin_rejects_invalid_strategy_parameters_with_a_field_message(client, staff_user):
    strategy = StrategyFactory()
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:strategies_strategy_change", args=[strategy.pk]),
        _strategy_form(strategy, parameters='{"fast": 60, "slow": 50}'),
    )
    assert response.status_code == 200
    assert "fast" in response.content.decode()
    strategy.refresh_from_db()
    assert strategy.parameters == {"fast": 10, "slow": 50}


def test_event_admin_cannot_add_change_or_delete(rf, staff_user):
    model_admin = site._registry[Event]
    request = rf.get("/")
    request.user = staff_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


@pytest.mark.parametrize(
    "model",
    [
        m
        for m in apps.get_models()
        if m._meta.app_label in {"accounts", "strategies", "trading", "backtests", "persistence"}
    ],
    ids=lambda m: m._meta.label,
)
def test_every_domain_model_is_registered_and_its_list_page_renders(client, staff_user, model):
    assert model in site._registry, f"{model._meta.label} is not in the admin"
    client.force_login(staff_user)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert client.get(url).status_code == 200
