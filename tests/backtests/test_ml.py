"""The ML predictor through the app: a run, its stored models and diagnostics, the API."""

from __future__ import annotations

import pytest

from backtests import services
from backtests.ml import DIAGNOSTICS_ARTIFACT, MODEL_ARTIFACTS
from backtests.models import BacktestRun
from persistence.models import Artifact
from tests.backtests.conftest import END, T0
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/backtests/"
SMALL_ML = {
    "model": 2,
    "lookahead": 1,
    "train_window": 200,
    "retrain_step": 100,
    "n_estimators": 10,
    "max_depth": 2,
}


@pytest.fixture
def ml_strategy(user, market):  # type: ignore[no-untyped-def]
    return StrategyFactory(owner=user, instrument=market, kind="ml_predictor", parameters=SMALL_ML)


def submit(api_client, strategy, **extra):  # type: ignore[no-untyped-def]
    body = {"strategy": strategy.pk, "start": T0.isoformat(), "end": END.isoformat(), **extra}
    return api_client.post(URL, body, format="json")


def run_to_completion(api_client, strategy) -> dict:  # type: ignore[no-untyped-def]
    response = submit(api_client, strategy)
    assert response.status_code == 201, response.json()
    run = BacktestRun.objects.get(pk=response.json()["id"])
    if run.status == "queued":
        services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    return api_client.get(f"{URL}{run.pk}/").json()


def model_artifacts() -> int:
    return Artifact.objects.filter(name__in=MODEL_ARTIFACTS.values()).count()


def test_an_ml_run_reports_per_fold_diagnostics_and_keeps_its_models(
    api_client, ml_strategy
) -> None:
    run = run_to_completion(api_client, ml_strategy)
    assert run["status"] == "succeeded", run
    # Saved by the run itself, with its other results: its models and its diagnostics.
    assert model_artifacts() == 4
    assert Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).count() == 1
    assert BacktestRun.objects.get(pk=run["id"]).progress == 100
    response = api_client.get(f"{URL}{run['id']}/ml/")
    assert response.status_code == 200
    data = response.json()
    # 600 bars, the first prediction at 33 + 200: folds start at 233, 333, ..., 533.
    assert [f["predict_start"] for f in data["folds"]] == [233, 333, 433, 533]
    for fold in data["folds"]:
        assert fold["train_end"] - 1 + 1 < fold["predict_start"]
        assert 0 <= fold["accuracy"] <= 1
        assert sum(map(sum, fold["confusion"])) == fold["test_bars"]
        assert set(fold["importances"]) == set(data["feature_names"])
        assert set(fold["permutation_importances"]) == set(data["feature_names"])
    assert len(data["series"]["probability"]) == 600
    assert data["series"]["probability"][232] is None
    assert 0 <= data["series"]["probability"][233] <= 1
    assert model_artifacts() == 4
    assert Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).count() == 1

    # Read again: the stored diagnostics, nothing retrained or rewritten.
    again = api_client.get(f"{URL}{run['id']}/ml/").json()
    assert again == data
    assert model_artifacts() == 4
    assert Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).count() == 1

    # Rebuilt from scratch, every fold's model comes from its artifact.
    Artifact.objects.filter(name=DIAGNOSTICS_ARTIFACT).delete()
    rebuilt = api_client.get(f"{URL}{run['id']}/ml/").json()
    assert all(f["reused"] for f in rebuilt["folds"])
    assert rebuilt["series"] == data["series"]
    assert model_artifacts() == 4


def test_the_same_ml_request_again_is_a_cache_hit_with_identical_results(
    api_client, ml_strategy
) -> None:
    first = run_to_completion(api_client, ml_strategy)
    second = submit(api_client, ml_strategy).json()
    assert second["cache_hit"] is True
    assert second["headline_metrics"] == first["headline_metrics"]


def test_ml_diagnostics_of_another_kind_of_run_are_a_conflict(api_client, strategy) -> None:
    run = run_to_completion(api_client, strategy)
    assert api_client.get(f"{URL}{run['id']}/ml/").status_code == 409


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({**SMALL_ML, "train_window": 25, "lookahead": 20, "purge": 5}, "train_window"),
        ({**SMALL_ML, "feature_set": "momentum"}, "feature_set"),
        ({**SMALL_ML, "feature_set": 9}, "feature_set"),
    ],
)
def test_bad_ml_parameters_are_a_400_naming_the_field_and_nothing_is_saved(
    api_client, ml_strategy, parameters, field
) -> None:
    response = submit(api_client, ml_strategy, parameters=parameters)
    assert response.status_code == 400
    assert field in response.json()["parameters"], response.json()
    assert not BacktestRun.objects.exists()
    assert model_artifacts() == 0


def test_the_lab_panel_reads_the_runs_ml_diagnostics(api_client, ml_strategy) -> None:
    from django.template.loader import render_to_string

    run = BacktestRun.objects.get(pk=run_to_completion(api_client, ml_strategy)["id"])
    html = render_to_string("lab/_run_ml.html", {"run": run})
    assert f'data-url="/api/v1/backtests/{run.pk}/ml/"' in html
    assert "lab/ml.js" in html
    for chart in ("ml-probability", "ml-folds", "ml-confusion", "ml-importance"):
        assert f'id="{chart}"' in html
    assert "<script>" not in html and "style=" not in html  # nothing inline, for the CSP


def test_a_training_window_missing_a_class_is_a_400_naming_train_window_and_saves_nothing(
    api_client, ml_strategy
) -> None:
    # A dead zone of +-50% leaves every hourly bar flat: no "up" bar to learn from.
    response = submit(api_client, ml_strategy, parameters={**SMALL_ML, "threshold": 0.5})
    assert response.status_code == 400
    errors = response.json()["parameters"]["train_window"]
    assert "no 'up' label" in errors[0], errors
    assert not BacktestRun.objects.exists()
    assert model_artifacts() == 0
    assert not Artifact.objects.exists()
