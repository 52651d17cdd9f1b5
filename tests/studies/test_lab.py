"""The lab's study pages through real HTTP requests: the list (only the researcher's own),
the form built from the kind's spec (its errors on the field they name, from the form and
from the service), a finished walk-forward's page and its history, ownership, the nav link,
the sweep page's overfitting panel, and no inline script or style anywhere."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from backtests.models import RunStatus, Sweep
from studies.models import Study
from tests.config.test_deploy import inline_code
from tests.factories import StrategyFactory, UserFactory
from tests.studies.conftest import END, T0, submit

NEW = "/lab/studies/new/"


def _json_script(page: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page)
    assert match, f"no #{element_id} on the page"
    return json.loads(match.group(1))


def _study(owner: Any, instrument: Any, **extra: Any) -> Study:
    """A queued study row, as study_submit leaves one before a worker starts it."""
    fields: dict[str, Any] = {
        "owner": owner,
        "kind": "sma_cross",
        "instrument": instrument,
        "timeframe": "1h",
        "start": T0,
        "end": END,
        "initial_capital": 1000,
        "fee_rate": 0,
        "n_trials": 10,
        "trials_total": 10,
        "optuna_prefix": f"lab-{owner.pk}-{Study.objects.count()}",
        "search_space": {"fast": {"type": "int", "low": 2, "high": 10, "step": 1, "log": False}},
        "objectives": [{"metric": "sharpe", "direction": "maximize"}],
        **extra,
    }
    return Study.objects.create(**fields)


def _form(strategy: Any, **change: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "strategy": strategy.pk,
        "space-fast_low": 3,
        "space-fast_high": 9,
        "space-fast_step": 2,
        "space-slow_low": 20,
        "space-slow_high": 40,
        "space-slow_step": 10,
        "start": T0.strftime("%Y-%m-%dT%H:%M"),
        "end": END.strftime("%Y-%m-%dT%H:%M"),
        "sampler": "grid",
        "n_trials": 20,
        "objective": "sharpe",
        "direction": "",
        "objective_2": "",
        "direction_2": "",
        "min_trades": "",
        "constraint_metric": "",
        "constraint_min": "",
        "constraint_max": "",
        "parallelism": 2,
        "seed": 0,
        "use_cache": "on",
        "wf_mode": "rolling",
        "wf_in_sample": "",
        "wf_out_of_sample": "",
        "wf_step": "",
        "compare_whole_period": "on",
    }
    data.update(change)
    return {key: value for key, value in data.items() if value is not None}


def _field_errors(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in re.findall(r'data-field="([^"]+)">([^<]*)</p>', page):
        found.setdefault(name, []).append(message)
    return found


# --- The list and the navigation ---------------------------------------------------------


@pytest.mark.django_db
def test_the_list_shows_only_the_researchers_own_studies(client, user, other_user, market) -> None:
    mine = _study(user, market, best_values=[1.2345], trials_done=4)
    theirs = _study(other_user, market)
    client.force_login(user)
    page = client.get("/lab/studies/").content.decode()
    assert f'data-study="{mine.pk}"' in page and f'data-study="{theirs.pk}"' not in page
    assert "Sharpe ratio (higher is better)" in page  # the objective in words
    assert "4/10" in page and "1.234" in page
    assert f'href="{NEW}"' in page


@pytest.mark.django_db
def test_staff_see_their_own_studies_in_the_lab_list_too(client, staff_user, user, market) -> None:
    theirs = _study(user, market)
    client.force_login(staff_user)
    assert f'data-study="{theirs.pk}"' not in client.get("/lab/studies/").content.decode()


@pytest.mark.django_db
def test_the_labs_navigation_links_to_the_studies(client, user) -> None:
    client.force_login(user)
    page = client.get(reverse("lab-home")).content.decode()
    assert '<a href="/lab/studies/" id="nav-studies">Studies</a>' in page
    assert 'id="recent-studies"' in page


@pytest.mark.django_db
def test_the_pages_need_a_login(client, user, market) -> None:
    study = _study(user, market)
    for url in ("/lab/studies/", NEW, f"/lab/studies/{study.pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


# --- The form --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_form_is_built_from_the_kinds_spec(client, user, strategy) -> None:
    client.force_login(user)
    page = client.get(NEW).content.decode()
    assert 'data-space="fast"' in page and 'data-space="slow"' in page
    assert "Fast SMA window, in bars." in page  # the spec's help
    # A range around the strategy's values (fast 5, slow 20), on the spec's step.
    assert re.search(r'name="space-fast_low" value="2"', page)
    assert re.search(r'name="space-slow_high" value="30"', page)
    for sampler in ("grid", "random", "tpe", "nsga2"):
        assert f'<option value="{sampler}"' in page
    assert ">Sharpe ratio</option>" in page and ">Max drawdown %</option>" in page
    assert 'id="st-wf"' in page and 'name="wf_in_sample"' in page
    assert 'name="start" value="2024-01-01T00:00"' in page


@pytest.mark.django_db
def test_a_valid_form_starts_a_walk_forward_and_opens_its_page(client, user, strategy) -> None:
    client.force_login(user)
    response = client.post(
        NEW,
        _form(
            strategy,
            walk_forward="on",
            wf_in_sample="240",
            wf_out_of_sample="120",
            wf_step="",
            min_trades=2,
            constraint_metric="max_drawdown_pct",
            constraint_min="-40",
        ),
    )
    study = Study.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/lab/studies/{study.pk}/"
    assert study.owner == user and study.sampler == "grid" and study.mode == "walk_forward"
    assert study.search_space["fast"] == {
        "type": "int",
        "low": 3,
        "high": 9,
        "step": 2,
        "log": False,
    }
    assert study.walk_forward["in_sample"] == 240 and study.walk_forward["out_of_sample"] == 120
    assert study.walk_forward["folds"] == 3
    assert study.constraints == [
        {"metric": "num_trades", "min": 2, "max": None},
        {"metric": "max_drawdown_pct", "min": -40.0, "max": None},
    ]
    assert study.n_trials == 4 * 3  # the grid's size, not the 20 asked


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"space-fast_high": 2}, "space-fast_high", "at least the low"),
        ({"space-fast_low": ""}, "space-fast_low", "Required when"),
        ({"space-fast_low": 0}, "space-fast_low", "greater than or equal to 1"),
        ({"n_trials": 0}, "n_trials", "greater than or equal to 1"),
        ({"walk_forward": "on"}, "wf_in_sample", "Required for a walk-forward"),
        (
            {"walk_forward": "on", "wf_in_sample": "3y", "wf_out_of_sample": "5d"},
            "wf_in_sample",
            "a number followed by m, h, d or w",
        ),
        # From the service: the windows against the data, NSGA-II's objectives, the grid.
        (
            {"walk_forward": "on", "wf_in_sample": "550", "wf_out_of_sample": "100"},
            "wf_in_sample",
            "longer than the data",
        ),
        ({"sampler": "nsga2"}, "objective", "two or more"),
        ({"parallelism": 100_000}, "parallelism", "Must be from 1 to"),
        ({"constraint_min": "1"}, "constraint_metric", "Choose the metric"),
        ({"objective_2": "sharpe"}, "objective", "once"),
    ],
)
def test_bad_input_shows_on_the_field_it_names_and_starts_nothing(
    client, user, strategy, change, field, words
) -> None:
    client.force_login(user)
    response = client.post(NEW, _form(strategy, **change))
    assert response.status_code == 200
    page = response.content.decode()
    errors = _field_errors(page) | {
        "__all__": re.findall(r'<p class="errors"[^>]*>([^<]*)</p>', page)
    }
    assert field in errors, errors
    assert any(words in message for message in errors[field]), errors
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_an_empty_search_space_is_refused(client, user, strategy) -> None:
    client.force_login(user)
    blank = {f"space-{n}_{p}": "" for n in ("fast", "slow") for p in ("low", "high", "step")}
    page = client.post(NEW, _form(strategy, **blank)).content.decode()
    assert "The search space is empty" in page
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_another_users_strategy_is_not_found(client, user, other_user, market) -> None:
    theirs = StrategyFactory(owner=other_user, instrument=market, kind="sma_cross")
    client.force_login(user)
    assert client.get(f"{NEW}?strategy={theirs.pk}").status_code == 404
    assert client.post(NEW, _form(theirs)).status_code == 404
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_without_strategies_the_form_says_what_to_do(client, user) -> None:
    client.force_login(user)
    page = client.get(NEW).content.decode()
    assert "no strategies to study" in page and 'id="study-form"' not in page


# --- A study's page --------------------------------------------------------------------


@pytest.fixture
def finished(queue, study_strategy):  # type: ignore[no-untyped-def]
    study = queue.run(
        submit(
            study_strategy,
            sampler="grid",
            search_space={"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}},
            walk_forward={"mode": "rolling", "in_sample": 300, "out_of_sample": 100},
        )
    )
    assert study.status == "succeeded", study.error
    return study


@pytest.mark.django_db(transaction=True)
def test_a_finished_walk_forwards_page_words_and_charts_it(client, finished) -> None:
    client.force_login(finished.owner)
    response = client.get(f"/lab/studies/{finished.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Walk-forward: Rolling · in-sample 300 bars · out-of-sample 100 bars" in page
    assert "Searched: fast 3, 5 · slow 20, 30" in page
    assert "Objectives: Sharpe ratio (higher is better)" in page
    for chart in (
        "chart-history",
        "chart-importance",
        "chart-timeline",
        "chart-folds",
        "chart-equity",
    ):
        assert f'id="{chart}"' in page, chart
    assert 'id="chart-pareto"' not in page  # one objective: no Pareto front
    # The folds, in words, with the chosen parameters and the fold's DSR and PBO.
    folds = finished.folds.filter(role="fold").order_by("index")
    assert page.count("<td>Fold ") == folds.count() == 3
    assert "fast " in page and " · slow " in page and "{&#x27;fast" not in page
    # DSR and PBO of the whole-period optimisation, each with its sentence.
    assert 'data-stat="dsr"' in page and 'data-stat="pbo"' in page
    assert "Deflated Sharpe Ratio" in page and "combinatorial splits" in page
    for link in ("format=xlsx", "format=csv&amp;table=trials", "format=csv&amp;table=folds"):
        assert f"/api/v1/studies/{finished.pk}/export/?{link}" in page
    assert 'id="study-admin"' not in page  # not staff
    assert 'id="live"' not in page  # finished: no progress section
    data = _json_script(page, "study-data")
    assert data["mode"] == "walk_forward" and data["status"] == "succeeded"
    assert data["urls"]["equity"] == f"/api/v1/studies/{finished.pk}/equity/"
    assert data["objectives"][0]["label"] == "Sharpe ratio"
    assert set(data["importance"]["values"]) <= {"fast", "slow"}


@pytest.mark.django_db(transaction=True)
def test_the_history_holds_every_finished_trial_per_optimisation(client, finished) -> None:
    client.force_login(finished.owner)
    history = client.get(f"/lab/studies/{finished.pk}/history.json").json()
    stages = {stage["key"]: stage for stage in history["stages"]}
    assert list(stages) == ["fold-0", "fold-1", "fold-2", "whole-0"]
    assert [stages[key]["label"] for key in stages] == [
        "Fold 1",
        "Fold 2",
        "Fold 3",
        "Whole period",
    ]
    assert sum(len(stage["number"]) for stage in stages.values()) == finished.trials_done == 16
    whole = stages["whole-0"]
    assert sorted(whole["params"]) == sorted(
        f"fast {f} · slow {s}" for f in (3, 5) for s in (20, 30)
    )
    complete = [
        v for v, state in zip(whole["values"], whole["state"], strict=True) if state == "complete"
    ]
    assert complete and all(len(values) == 1 for values in complete)


@pytest.mark.django_db(transaction=True)
def test_another_users_study_is_not_found_and_staff_get_the_admin_link(client, finished) -> None:
    client.force_login(UserFactory())
    assert client.get(f"/lab/studies/{finished.pk}/").status_code == 404
    assert client.get(f"/lab/studies/{finished.pk}/history.json").status_code == 404
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(f"/lab/studies/{finished.pk}/").content.decode()
    assert f'href="/admin/studies/study/{finished.pk}/change/"' in page


@pytest.mark.django_db
def test_a_running_study_shows_its_live_progress_and_a_cancel_button(client, user, market) -> None:
    study = _study(user, market, status=RunStatus.RUNNING, trials_done=3, progress=30)
    client.force_login(user)
    page = client.get(f"/lab/studies/{study.pk}/").content.decode()
    assert f'data-ws="/ws/studies/{study.pk}/"' in page
    assert 'id="cancel"' in page and "3 / 10 trials" in page
    assert "computed when the study has finished" in page


# --- The sweep page's overfitting panel ----------------------------------------------


@pytest.fixture
def sweep(user, strategy) -> Sweep:  # type: ignore[no-untyped-def]
    rows = [
        {"params": {"fast": f, "slow": 20}, "metrics": {"sharpe": f / 10}, "cached": False}
        for f in (3, 5)
    ]
    return Sweep.objects.create(
        owner=user, strategy=strategy, kind="sma_cross", instrument=strategy.instrument,
        timeframe="1h", start=T0, end=END, initial_capital=Decimal("1000"),
        fee_rate=Decimal("0"), grid={"fast": [3, 5], "slow": [20]}, rank_metric="sharpe",
        status=RunStatus.SUCCEEDED, progress=100, combinations_total=2, combinations_done=2,
        results=rows, best_parameters=rows[1]["params"], best_value=0.5,
    )  # fmt: skip


@pytest.mark.django_db
def test_a_finished_sweep_offers_its_dsr_and_pbo(client, user, sweep) -> None:
    client.force_login(user)
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    assert f'data-url="/api/v1/sweeps/{sweep.pk}/overfitting/"' in page
    assert 'id="overfitting-load"' in page and "Probability of Backtest Overfitting" in page
    sweep.status = RunStatus.RUNNING
    sweep.save(update_fields=["status"])
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    assert 'id="sweep-overfitting"' not in page


# --- Content-Security-Policy -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_study_pages_hold_no_inline_script_or_style(client, finished) -> None:
    owner = finished.owner
    running = _study(owner, finished.instrument, status=RunStatus.RUNNING)
    client.force_login(owner)
    pages = {
        "list": client.get("/lab/studies/"),
        "form": client.get(NEW),
        "refused form": client.post(NEW, {"strategy": finished.strategy_id, "n_trials": "0"}),
        "finished": client.get(f"/lab/studies/{finished.pk}/"),
        "running": client.get(f"/lab/studies/{running.pk}/"),
        "home": client.get(reverse("lab-home")),
    }
    assert all(page.status_code == 200 for page in pages.values())
    found = {name: inline_code(page.content.decode()) for name, page in pages.items()}
    assert {name: code for name, code in found.items() if code} == {}
