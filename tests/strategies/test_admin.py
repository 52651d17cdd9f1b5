"""Strategies in the admin: edits are audited and parameters are checked by the kind's spec."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

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
