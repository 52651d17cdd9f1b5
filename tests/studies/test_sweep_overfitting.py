"""A sweep's DSR and PBO, computed on request from each combination's returns."""

from __future__ import annotations

import pytest

from backtests import services as backtest_services
from persistence.models import CachedResult
from tests.studies.conftest import END, T0

pytestmark = pytest.mark.django_db


@pytest.fixture
def sweep(user, strategy, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            made = backtest_services.sweep_submit(
                user=user,
                strategy=strategy,
                start=T0,
                end=END,
                grid={"fast": [3, 5, 8], "slow": [20, 30]},
                rank_metric="sharpe",
            )
    finally:
        app.conf.task_always_eager = False
    made.refresh_from_db()
    assert made.status == "succeeded", made.error
    return made


def test_a_sweeps_overfitting_statistics_are_computed_once_then_cached(api_client, sweep) -> None:
    url = f"/api/v1/sweeps/{sweep.pk}/overfitting/"
    first = api_client.get(url)
    assert first.status_code == 200, first.json()
    data = first.json()
    assert data["combinations"] == 6 and data["computed"] == 6 and data["cached"] == 0
    assert data["best_parameters"] == sweep.best_parameters
    dsr = data["deflated_sharpe_ratio"]
    assert dsr["n_trials"] == 6 and 0 <= dsr["value"] <= 1
    assert 0 <= data["probability_of_backtest_overfitting"]["value"] <= 1
    assert CachedResult.objects.filter(kind="study_trial").count() == 6
    again = api_client.get(url).json()
    assert again["computed"] == 0 and again["cached"] == 6
    assert again["deflated_sharpe_ratio"] == dsr


def test_an_unfinished_or_foreign_sweep_has_no_statistics(
    api_client, user, strategy, other_user
) -> None:
    queued = backtest_services.sweep_submit(
        user=user, strategy=strategy, start=T0, end=END, grid={"fast": [3, 5]}
    )
    assert api_client.get(f"/api/v1/sweeps/{queued.pk}/overfitting/").status_code == 409
    from rest_framework.test import APIClient

    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert stranger.get(f"/api/v1/sweeps/{queued.pk}/overfitting/").status_code == 404


def test_a_sweep_too_large_to_recompute_is_refused(api_client, sweep, settings) -> None:
    settings.STUDY_SWEEP_STATS_MAX_BAR_RUNS = 100
    response = api_client.get(f"/api/v1/sweeps/{sweep.pk}/overfitting/")
    assert response.status_code == 409 and "study" in response.json()["detail"]
