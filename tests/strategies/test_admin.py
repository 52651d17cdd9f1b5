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
        # The parameter fields the form generates from the kind's spec.
        "parameters_for": strategy.kind,
        "param_fast": "10",
        "param_slow": "50",
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
        _strategy_form(strategy, param_fast="60"),
    )
    assert response.status_code == 200
    assert "fast" in response.content.decode()
    strategy.refresh_from_db()
    assert strategy.parameters == {"fast": 10, "slow": 50}


def test_admin_add_page_shows_the_chosen_kinds_fields_and_defaults_the_owner(client, staff_user):
    client.force_login(staff_user)
    page = client.get(reverse("admin:strategies_strategy_add") + "?kind=rsi_reversion")
    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="param_oversold"' in body and "Buy below this RSI." in body
    assert 'name="parameters"' not in body  # no raw JSON
    assert f'<option value="{staff_user.pk}" selected>' in body


def test_admin_adds_a_strategy_with_generated_parameter_fields(client, staff_user):
    template = StrategyFactory()
    client.force_login(staff_user)
    data = _strategy_form(template, name="added", param_fast="7", param_slow="21")
    response = client.post(reverse("admin:strategies_strategy_add"), data)
    assert response.status_code == 302, response.content[:2000]
    assert Strategy.objects.get(name="added").parameters == {"fast": 7, "slow": 21}


def test_admin_says_in_words_why_a_zero_capital_is_refused(client, staff_user):
    strategy = StrategyFactory()
    client.force_login(staff_user)

    response = client.post(
        reverse("admin:strategies_strategy_change", args=[strategy.pk]),
        _strategy_form(strategy, initial_capital="0"),
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Initial capital must be greater than zero." in page
    assert "strategy_capital_positive" not in page
    strategy.refresh_from_db()
    assert strategy.initial_capital > 0
