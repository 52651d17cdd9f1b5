"""strategies.services: every write to a strategy, with its rules."""

from __future__ import annotations

from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from strategies import services
from strategies.models import Strategy
from tests.factories import InstrumentFactory, OrderFactory, StrategyFactory, UserFactory

pytestmark = pytest.mark.django_db


def create(owner, instrument, **extra):  # type: ignore[no-untyped-def]
    fields = {
        "name": "trend",
        "kind": "sma_cross",
        "parameters": {"fast": 5, "slow": 20},
        "instrument": instrument,
        "timeframe": "1h",
    } | extra
    return services.strategy_create(owner=owner, **fields)


def test_create_fills_the_kinds_defaults(user, instrument):
    strategy = create(user, instrument, parameters={"fast": 5})
    assert strategy.parameters == {"fast": 5, "slow": 50}
    assert strategy.status == Strategy.Status.DRAFT


def test_a_kind_without_parameters_takes_an_empty_dict(user, instrument):
    strategy = create(user, instrument, kind="buy_and_hold", parameters={})
    strategy.refresh_from_db()
    assert strategy.parameters == {}


def test_invalid_parameters_name_the_parameter(user, instrument):
    with pytest.raises(ValidationError) as caught:
        create(user, instrument, parameters={"fast": 50, "slow": 10})
    assert set(caught.value.message_dict) == {"parameters.fast"}
    assert not Strategy.objects.exists()


def test_a_duplicate_name_is_a_validation_error_naming_name(user, other_user, instrument):
    create(user, instrument)
    with pytest.raises(ValidationError) as caught:
        create(user, instrument)
    assert caught.value.message_dict == {"name": [services.NAME_TAKEN]}
    # Another owner may use the same name.
    assert create(other_user, instrument).name == "trend"


def test_a_name_taken_between_the_check_and_the_save_is_still_a_name_error(user, instrument):
    create(user, instrument)
    # Neither the pre-check nor full_clean sees the clash (as when another request saves in
    # between): the database's constraint refuses the row, and the service answers with the
    # same error.
    with (
        mock.patch.object(services, "_name_taken", side_effect=[False, True]),
        mock.patch.object(Strategy, "validate_constraints"),
        pytest.raises(ValidationError) as caught,
    ):
        create(user, instrument)
    assert caught.value.message_dict == {"name": [services.NAME_TAKEN]}
    assert Strategy.objects.filter(owner=user).count() == 1


def test_an_integrity_error_that_is_not_a_name_clash_is_not_hidden(user, instrument):
    with (
        mock.patch.object(services, "_name_taken", return_value=False),
        mock.patch.object(Strategy, "save", side_effect=IntegrityError("other")),
        pytest.raises(IntegrityError),
    ):
        create(user, instrument)


def test_update_revalidates_parameters_and_names(user, instrument):
    strategy = create(user, instrument)
    create(user, instrument, name="other")
    with pytest.raises(ValidationError) as caught:
        services.strategy_update(strategy=strategy, parameters={"fast": 30, "slow": 20})
    assert "parameters.fast" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        services.strategy_update(strategy=strategy, name="other")
    assert set(caught.value.message_dict) == {"name"}
    updated = services.strategy_update(
        strategy=Strategy.objects.get(pk=strategy.pk), name="renamed", fee_rate=Decimal("0.002")
    )
    updated.refresh_from_db()
    assert (updated.name, updated.fee_rate) == ("renamed", Decimal("0.002"))


def test_update_refuses_fields_it_does_not_manage(user, instrument):
    strategy = create(user, instrument)
    with pytest.raises(TypeError):
        services.strategy_update(strategy=strategy, owner=UserFactory())


def test_archive_then_restore_returns_to_the_previous_status(user, instrument):
    strategy = create(user, instrument, status=Strategy.Status.PAUSED)
    services.strategy_archive(strategy=strategy)
    services.strategy_archive(strategy=strategy)  # twice: still remembers "paused"
    strategy.refresh_from_db()
    assert strategy.status == Strategy.Status.ARCHIVED
    services.strategy_restore(strategy=strategy)
    strategy.refresh_from_db()
    assert strategy.status == Strategy.Status.PAUSED
    assert strategy.status_before_archive == ""


def test_restore_without_a_remembered_status_is_draft(user, instrument):
    strategy = StrategyFactory(owner=user, instrument=instrument, status="archived")
    assert services.strategy_restore(strategy=strategy).status == Strategy.Status.DRAFT


def test_restoring_a_live_strategy_changes_nothing(user, instrument):
    strategy = create(user, instrument, status=Strategy.Status.ACTIVE)
    assert services.strategy_restore(strategy=strategy).status == Strategy.Status.ACTIVE


def test_clone_copies_kind_parameters_and_settings(user, instrument):
    original = create(
        user,
        instrument,
        parameters={"fast": 7, "slow": 30},
        timeframe="4h",
        description="trend follower",
        status=Strategy.Status.ACTIVE,
        initial_capital=Decimal("2500"),
        fee_rate=Decimal("0.0005"),
        slippage_bps=Decimal("3"),
    )
    copy = services.strategy_clone(strategy=original, name="trend v2")
    copy.refresh_from_db()
    assert copy.pk != original.pk and copy.owner == user
    copied = ["kind", "parameters", "instrument", "timeframe", "description"]
    copied += ["initial_capital", "fee_rate", "slippage_bps"]
    for field in copied:
        assert getattr(copy, field) == getattr(original, field), field
    assert copy.status == Strategy.Status.DRAFT
    with pytest.raises(ValidationError) as caught:
        services.strategy_clone(strategy=original, name="trend")
    assert set(caught.value.message_dict) == {"name"}


def test_a_strategy_nothing_refers_to_is_deleted(user, instrument):
    strategy = create(user, instrument)
    services.strategy_delete(strategy=strategy)
    assert not Strategy.objects.exists()


def test_a_strategy_with_a_backtest_run_is_not_deleted(user, instrument):
    from backtests.models import BacktestRun

    strategy = create(user, instrument)
    run = BacktestRun.objects.create(
        owner=user,
        strategy=strategy,
        kind=strategy.kind,
        instrument=instrument,
        timeframe="1h",
        start="2024-01-01T00:00Z",
        end="2024-01-02T00:00Z",
        initial_capital=Decimal("10000"),
        fee_rate=Decimal("0.001"),
        params_hash="x" * 64,
    )
    assert services.strategy_references(strategy=strategy) == [
        str(BacktestRun._meta.verbose_name_plural)
    ]
    with pytest.raises(services.StrategyConflict, match="archive it instead"):
        services.strategy_delete(strategy=strategy)
    run.refresh_from_db()
    assert run.strategy_id == strategy.pk  # SET_NULL would have lost it


def test_a_strategy_with_an_order_is_not_deleted(user):
    instrument = InstrumentFactory()
    strategy = create(user, instrument)
    OrderFactory(owner=user, instrument=instrument, strategy=strategy)
    with pytest.raises(services.StrategyConflict, match="orders"):
        services.strategy_delete(strategy=strategy)
    assert Strategy.objects.filter(pk=strategy.pk).exists()
