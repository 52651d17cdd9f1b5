"""The studies API: submit (400s naming the field, nothing created), ownership (404), the
trials, folds, curves and exports of a finished study, cancel, and the schema."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from rest_framework.test import APIClient

from studies.models import Study
from tests.factories import StrategyFactory
from tests.studies.conftest import END, SPACE, T0, submit

URL = "/api/v1/studies/"


def body(strategy, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "strategy": strategy.pk,
        "start": T0.isoformat(),
        "end": END.isoformat(),
        "sampler": "tpe",
        "n_trials": 20,
        "search_space": SPACE,
        "objectives": [{"metric": "sharpe", "direction": "maximize"}],
        **extra,
    }


@pytest.mark.django_db
def test_a_study_is_created_queued_with_its_resolved_request(
    api_client, strategy, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post(
            URL,
            body(strategy, walk_forward={"in_sample": "10d", "out_of_sample": "5d"}, min_trades=3),
            format="json",
        )
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["mode"] == "walk_forward"
    assert data["websocket"] == f"/ws/studies/{data['id']}/"
    assert data["search_space"]["slow"] == {
        "type": "int",
        "low": 12,
        "high": 40,
        "step": 4,
        "log": False,
    }
    assert data["constraints"] == [{"metric": "num_trades", "min": 3, "max": None}]
    assert data["walk_forward"]["mode"] == "rolling" and data["walk_forward"]["step"] == "5d"
    # 600 hourly bars = 25 days: rolling 10d + 5d windows moving by 5d make 3 folds.
    assert data["folds_total"] == 3 and data["trials_total"] == 20 * 4
    assert len(callbacks) == 1  # the launch, enqueued once the study is committed


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"n_trials": 0}, "n_trials", "greater than or equal to 1"),
        ({"search_space": {}}, "search_space", "empty"),
        ({"objectives": [{"metric": "alpha_beta_gamma"}]}, "objectives", "valid choice"),
        ({"search_space": {"fast": {"low": 2, "high": 5000}}}, "search_space", "at most"),
        ({"search_space": {"speed": {}}}, "search_space", "Unknown parameter"),
        (
            {"walk_forward": {"in_sample": 500, "out_of_sample": 200}},
            "walk_forward",
            "longer than the data",
        ),
        ({"walk_forward": {"in_sample": "3y", "out_of_sample": 20}}, "walk_forward", "duration"),
        ({"constraints": [{"metric": "nope", "min": 1}]}, "constraints", "valid choice"),
        ({"sampler": "nsga2"}, "objectives", "two or more"),
        (
            {"sampler": "grid", "search_space": {"fast": {"low": 2.5, "high": 3}}},
            "search_space",
            "integer",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(
    api_client, strategy, change, field, words
) -> None:
    response = api_client.post(URL, body(strategy, **change), format="json")
    assert response.status_code == 400, response.json()
    errors = response.json()
    assert field in errors, errors
    assert words in str(errors[field]), errors
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_windows_longer_than_the_data_name_in_sample(api_client, strategy) -> None:
    response = api_client.post(
        URL, body(strategy, walk_forward={"in_sample": 550, "out_of_sample": 100}), format="json"
    )
    assert response.status_code == 400
    message = response.json()["walk_forward"]["in_sample"][0]
    assert "550 + 100" in message and "600 bars" in message


@pytest.mark.django_db
def test_another_users_strategy_and_study_are_not_found(api_client, strategy, other_user) -> None:
    theirs = StrategyFactory(owner=other_user, instrument=strategy.instrument)
    response = api_client.post(URL, body(theirs), format="json")
    assert response.status_code == 400 and "strategy" in response.json()
    study = Study.objects.create(
        owner=other_user,
        kind="sma_cross",
        instrument=strategy.instrument,
        timeframe="1h",
        start=T0,
        end=END,
        initial_capital=1000,
        fee_rate=0,
        n_trials=1,
        optuna_prefix="theirs",
        search_space=SPACE,
        objectives=[{"metric": "sharpe", "direction": "maximize"}],
    )
    for path in ("", "trials/", "folds/", "equity/", "export/"):
        assert api_client.get(f"{URL}{study.pk}/{path}").status_code == 404, path
    assert api_client.post(f"{URL}{study.pk}/cancel/").status_code == 404
    assert api_client.get(URL).json()["results"] == []


@pytest.fixture
def finished(queue, study_strategy):  # type: ignore[no-untyped-def]
    study = queue.run(
        submit(
            study_strategy,
            sampler="grid",
            search_space={"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}},
            walk_forward={"mode": "anchored", "in_sample": 300, "out_of_sample": 150},
        )
    )
    assert study.status == "succeeded", study.error
    client = APIClient()
    client.force_authenticate(study_strategy.owner)
    return client, study


@pytest.mark.django_db(transaction=True)
def test_a_finished_walk_forward_reads_back_over_the_api(finished) -> None:
    client, study = finished
    detail = client.get(f"{URL}{study.pk}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 100
    assert detail["summary"]["walk_forward"]["folds"] == 2

    trials = client.get(f"{URL}{study.pk}/trials/").json()["results"]
    assert len(trials) == 4 * 3
    first = trials[0]
    assert {"params", "values", "state", "duration_seconds", "cache_hit", "worker"} <= set(first)
    assert first["stage"] == "fold" and first["fold"] == 0
    assert first["backtest"]["parameters"] == first["params"]
    assert first["backtest"]["end"] == pd.Timestamp(T0 + timedelta(hours=300)).isoformat()
    # Opened as a backtest, a trial keeps the study's costs and sizing, not the strategy's.
    assert first["backtest"]["fee_rate"] == str(study.fee_rate)
    assert first["backtest"]["sizing"] == study.sizing
    assert first["backtest"]["timeframe"] == study.timeframe
    whole = client.get(f"{URL}{study.pk}/trials/", {"role": "whole"}).json()["results"]
    assert len(whole) == 4 and all(t["fold"] is None for t in whole)
    assert client.get(f"{URL}{study.pk}/trials/", {"state": "sideways"}).status_code == 400

    folds = client.get(f"{URL}{study.pk}/folds/").json()
    assert [f["index"] for f in folds] == [0, 1]
    assert folds[0]["is_bars"] == 300 and folds[0]["oos_bars"] == 150
    assert folds[1]["is_start"] == folds[0]["is_start"]  # anchored
    assert folds[0]["chosen_parameters"] and "sharpe" in folds[0]["oos_metrics"]

    curves = client.get(f"{URL}{study.pk}/equity/", {"max_points": 50}).json()
    assert curves["study"] == study.pk
    assert len(curves["stitched_oos"]["ts"]) == 50 == len(curves["whole_period"]["equity"])
    assert client.get(f"{URL}{study.pk}/equity/", {"max_points": 1}).status_code == 400

    assert client.post(f"{URL}{study.pk}/cancel/").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_trials_and_folds_export_as_csv_and_xlsx(finished) -> None:
    client, study = finished
    response = client.get(f"{URL}{study.pk}/export/", {"format": "csv", "table": "trials"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    trials = pd.read_csv(io.BytesIO(response.content))
    assert len(trials) == 12
    assert {"param_fast", "param_slow", "value_sharpe", "metric_num_trades", "worker"} <= set(
        trials.columns
    )
    folds = pd.read_csv(
        io.BytesIO(
            client.get(f"{URL}{study.pk}/export/", {"format": "csv", "table": "folds"}).content
        )
    )
    assert list(folds["stage"]) == ["fold", "fold", "whole"]
    assert {"chosen_fast", "is_sharpe", "oos_sharpe", "probability_of_backtest_overfitting"} <= set(
        folds.columns
    )
    book = client.get(f"{URL}{study.pk}/export/")
    assert book.status_code == 200
    sheets = pd.read_excel(io.BytesIO(book.content), sheet_name=None)
    assert set(sheets) == {"summary", "trials", "folds"}
    assert len(sheets["trials"]) == 12 and len(sheets["folds"]) == 3
    assert client.get(f"{URL}{study.pk}/export/", {"format": "pdf"}).status_code in (400, 404)


@pytest.mark.django_db
def test_every_study_endpoint_is_in_the_schema(api_client) -> None:
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/studies/",
        "/api/v1/studies/{id}/",
        "/api/v1/studies/{id}/trials/",
        "/api/v1/studies/{id}/folds/",
        "/api/v1/studies/{id}/equity/",
        "/api/v1/studies/{id}/cancel/",
        "/api/v1/studies/{id}/export/",
        "/api/v1/sweeps/{sweep_id}/overfitting/",
    ):
        assert path in paths, path
    assert "StudySubmitRequest" in schema["components"]["schemas"]
