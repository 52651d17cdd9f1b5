"""The lab's research pages through real HTTP requests: a run's analyses, comparing runs, the
sweep page with its heatmap data, and the admin's sweep page."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from backtests import analysis, selectors, services
from backtests.models import BacktestRun, RunStatus, Sweep
from tests.backtests.conftest import END, T0
from tests.factories import StrategyFactory, UserFactory

pytestmark = pytest.mark.django_db


def _finished(user: Any, strategy: Any, **overrides: Any) -> BacktestRun:
    run = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, overrides=overrides or None
    )
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


@pytest.fixture
def run(user, strategy) -> BacktestRun:  # type: ignore[no-untyped-def]
    return _finished(user, strategy)


@pytest.fixture
def other_run(user, strategy) -> BacktestRun:  # type: ignore[no-untyped-def]
    """A second run of the user's, with half the capital and other parameters."""
    return _finished(
        user, strategy, parameters={"fast": 8, "slow": 30}, initial_capital=Decimal("5000")
    )


def _json_script(page: str, element_id: str) -> Any:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page)
    assert match, f"no #{element_id} on the page"
    return json.loads(match.group(1))


# --- A run's analyses ---------------------------------------------------------------------------


def test_the_analysis_agrees_with_the_runs_metrics(client, user, run) -> None:
    client.force_login(user)
    response = client.get(reverse("lab-run-analysis", args=[run.pk]))
    assert response.status_code == 200
    data = response.json()
    closed = run.metrics["num_trades"]
    assert closed > 0
    # 600 hourly bars from 2024-01-01: all in January 2024, so that month's compounded
    # return and the year's total are the run's return.
    assert data["monthly"]["years"] == [2024]
    assert data["monthly"]["returns"][0][0] == pytest.approx(run.metrics["return_pct"])
    assert data["monthly"]["returns"][0][1:] == [None] * 11
    assert data["monthly"]["year_totals"][0] == pytest.approx(run.metrics["return_pct"])
    histogram = data["pnl_histogram"]
    assert histogram["trades"] == closed == data["closed_trades"]
    won = sum(histogram["winners"])
    assert won / closed * 100 == pytest.approx(run.metrics["win_rate_pct"])
    assert sum(row["count"] for row in data["exit_reasons"]) == closed
    assert all(row["label"] for row in data["exit_reasons"])
    assert sum(row["count"] for row in data["durations"]) == closed
    assert len(data["durations"]) == len(analysis.DURATION_BUCKETS)


def test_the_run_page_holds_the_analysis_panels(client, user, run) -> None:
    client.force_login(user)
    page = client.get(reverse("lab-run", args=[run.pk])).content.decode()
    assert f'data-url="{reverse("lab-run-analysis", args=[run.pk])}"' in page
    assert "lab/analysis.js" in page


def test_another_users_run_has_no_analysis(client, other_user, run) -> None:
    client.force_login(other_user)
    response = client.get(reverse("lab-run-analysis", args=[run.pk]))
    assert response.status_code == 404
    assert set(response.json()) == {"detail"}


def test_an_unfinished_run_has_no_analysis_yet(client, user, strategy) -> None:
    queued = services.backtest_submit(user=user, strategy=strategy, start=T0, end=END)
    client.force_login(user)
    response = client.get(reverse("lab-run-analysis", args=[queued.pk]))
    assert response.status_code == 409
    assert "queued" in response.json()["detail"]


def test_the_analysis_needs_a_login(client, run) -> None:
    response = client.get(reverse("lab-run-analysis", args=[run.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- Comparing runs -------------------------------------------------------------------------


def _compare(client: Any, *ids: Any) -> Any:
    return client.get(reverse("lab-compare"), {"runs": [str(i) for i in ids]})


def test_two_runs_compare_as_curves_from_100_and_metrics_side_by_side(
    client, user, run, other_run
) -> None:
    client.force_login(user)
    response = _compare(client, run.pk, other_run.pk)
    assert response.status_code == 200
    page = response.content.decode()
    curves = _json_script(page, "compare-data")["curves"]
    assert [curve["id"] for curve in curves] == [run.pk, other_run.pk]
    for curve, source in zip(curves, (run, other_run), strict=True):
        equity = selectors.equity_frame(source)["equity"]
        # Normalised by each run's own capital: 10,000 and 5,000 both start near 100.
        assert curve["value"][0] == pytest.approx(
            equity.iloc[0] / float(source.initial_capital) * 100
        )
        assert curve["value"][-1] == pytest.approx(100 + source.metrics["return_pct"], abs=1e-4)
    assert "fast 5 · slow 20" in page and "fast 8 · slow 30" in page
    assert "Sharpe ratio" in page and "sharpe_ratio" not in page
    better = 0 if run.metrics["return_pct"] > other_run.metrics["return_pct"] else 1
    assert _marks(page, "return_pct") == [i == better for i in range(2)]


def _marks(page: str, key: str) -> list[bool]:
    row = re.search(rf'<tr data-metric="{key}">(.*?)</tr>', page, re.S)
    assert row is not None, key
    return [bool(mark) for mark in re.findall(r'<td class="num( best)?">', row.group(1))]


def test_amounts_of_money_are_not_graded_across_different_capitals(
    client, user, run, other_run
) -> None:
    client.force_login(user)
    page = _compare(client, run.pk, other_run.pk).content.decode()
    assert _marks(page, "final_equity") == [False, False]  # 10,000 against 5,000
    assert _marks(page, "num_trades") == [False, False]  # describes, does not grade
    # Durations read in days and hours, times as UTC minutes.
    assert "24 d 23 h" in page and "2024-01-01 00:00 UTC" in page


def test_money_is_graded_between_runs_of_the_same_capital(client, user, strategy, run):
    third = _finished(user, strategy, parameters={"fast": 8, "slow": 30})
    client.force_login(user)
    page = _compare(client, run.pk, third.pk).content.decode()
    richer = 0 if run.metrics["final_equity"] > third.metrics["final_equity"] else 1
    assert _marks(page, "final_equity") == [i == richer for i in range(2)]
    cheaper = 0 if run.metrics["commissions"] < third.metrics["commissions"] else 1
    assert _marks(page, "commissions") == [i == cheaper for i in range(2)]  # lower is better


@pytest.mark.parametrize(
    ("count", "words"),
    [(1, "Choose at least 2 runs"), (6, "Compare at most 5 runs")],
)
def test_too_few_or_too_many_runs_are_a_clear_message(client, user, run, count, words) -> None:
    client.force_login(user)
    ids = [run.pk] + [run.pk + 1000 + i for i in range(count - 1)]
    response = _compare(client, *ids)
    assert response.status_code == 400
    assert words in response.content.decode()


def test_the_same_run_twice_counts_once(client, user, run) -> None:
    client.force_login(user)
    response = _compare(client, run.pk, run.pk)
    assert response.status_code == 400
    assert "you chose 1" in response.content.decode()


def test_a_run_id_that_is_not_a_number_is_a_clear_message(client, user, run) -> None:
    client.force_login(user)
    response = _compare(client, run.pk, "abc")
    assert response.status_code == 400
    assert "&#x27;abc&#x27; is not one" in response.content.decode()


def test_another_users_run_is_refused_without_leaking_it(
    client, user, other_user, run, other_run
) -> None:
    strategy = StrategyFactory(owner=other_user, instrument=run.instrument, name="secret edge")
    theirs = _finished(other_user, strategy, parameters={"fast": 6, "slow": 25})
    client.force_login(user)
    response = _compare(client, run.pk, theirs.pk)
    assert response.status_code == 404
    page = response.content.decode()
    assert "secret edge" not in page and "fast 6" not in page and "compare-data" not in page
    missing = _compare(client, run.pk, theirs.pk + 999).content.decode()

    # A run that does not exist reads the same: the message tells nothing about theirs.
    def message(html: str) -> str:
        found = re.search(
            r'<section class="card error-box" id="compare-error">(.*?)</section>', html, re.S
        )
        assert found is not None
        return re.sub(r"#\d+", "#N", found.group(1))

    assert message(page) == message(missing)


def test_an_unfinished_run_cannot_be_compared(client, user, strategy, run) -> None:
    queued = services.backtest_submit(
        user=user, strategy=strategy, start=T0, end=END, use_cache=False
    )
    client.force_login(user)
    response = _compare(client, run.pk, queued.pk)
    assert response.status_code == 400
    assert f"#{queued.pk} (queued)" in response.content.decode()


def test_the_home_page_picks_runs_to_compare_with_a_plain_form(client, user, run, other_run):
    client.force_login(user)
    page = client.get(reverse("lab-home")).content.decode()
    form = re.search(r'<form method="get" action="([^"]+)" id="compare-form">', page)
    assert form is not None and form.group(1) == reverse("lab-compare")
    for pk in (run.pk, other_run.pk):
        assert f'name="runs" value="{pk}"' in page
    assert "Compare selected" in page


# --- Sweeps ----------------------------------------------------------------------------------

GRID = {"window": [7, 14, 21], "oversold": [20.0, 30.0], "overbought": [70.0, 80.0]}
BEST = {"window": 14, "oversold": 30.0, "overbought": 80.0}


def _sharpe(window: int, oversold: float, overbought: float) -> float:
    # -2.333 at BEST; overbought 70 is 2 worse, so averaging it away would read -3.333.
    return round(
        -2.333 - abs(window - 14) * 0.1 - (30 - oversold) * 0.01 - (80 - overbought) * 0.2, 3
    )


@pytest.fixture
def sweep(user, market) -> Sweep:  # type: ignore[no-untyped-def]
    strategy = StrategyFactory(
        owner=user,
        instrument=market,
        kind="rsi_reversion",
        name="rsi dip buyer",
        parameters={"window": 14, "oversold": 30.0, "overbought": 70.0},
    )
    rows = [
        {
            "params": {"window": w, "oversold": lo, "overbought": hi},
            "metrics": {"sharpe": _sharpe(w, lo, hi), "return_pct": 1.5, "num_trades": 12},
            "cached": False,
        }
        for w in GRID["window"]
        for lo in GRID["oversold"]
        for hi in GRID["overbought"]
    ]
    rows.sort(key=lambda row: -row["metrics"]["sharpe"])
    return Sweep.objects.create(
        owner=user,
        strategy=strategy,
        kind=strategy.kind,
        instrument=market,
        timeframe="1h",
        start=T0,
        end=END,
        initial_capital=Decimal("10000"),
        fee_rate=Decimal("0.001"),
        grid=GRID,
        rank_metric="sharpe",
        status=RunStatus.SUCCEEDED,
        progress=100,
        combinations_total=len(rows),
        combinations_done=len(rows),
        results=rows,
        best_parameters=rows[0]["params"],
        best_value=rows[0]["metrics"]["sharpe"],
    )


def _heatmap(client: Any, sweep: Sweep, **query: str) -> Any:
    return client.get(reverse("lab-sweep-heatmap", args=[sweep.pk]), query)


def test_by_default_the_third_parameter_is_sliced_at_the_best_so_the_best_cell_is_true(
    client, user, sweep
) -> None:
    client.force_login(user)
    data = _heatmap(client, sweep).json()
    assert sweep.best_parameters == BEST and sweep.best_value == -2.333
    assert (data["x"], data["y"]) == ("window", "oversold")
    assert data["rules"] == {"overbought": {"kind": "at", "value": 80.0}}
    assert data["best"]["value"] == sweep.best_value
    assert data["x_labels"] == ["7", "14", "21"] and data["y_labels"] == ["20", "30"]
    assert data["z"][data["best"]["y_index"]][data["best"]["x_index"]] == -2.333
    assert data["metric_label"] == "Sharpe ratio"
    assert "overbought fixed at 80, the best combination's value" in data["rule_text"]
    hover = data["hover"][1][1]
    assert "window 14 · oversold 30 · overbought 80" in hover and "-2.333" in hover
    assert data["combos"][1][1] == BEST


def test_folding_the_third_parameter_changes_the_cells_and_says_so(client, user, sweep) -> None:
    client.force_login(user)
    data = _heatmap(client, sweep, **{"rule.overbought": "mean"}).json()
    assert data["z"][1][1] == pytest.approx(-3.333)  # the mean over overbought 70 and 80
    assert "each cell the mean Sharpe ratio over overbought's 2 values" in data["rule_text"]
    assert data["combos"][1][1] == BEST  # a click opens the best combination in the cell
    sliced = _heatmap(client, sweep, **{"rule.overbought": "at:70.0"}).json()
    assert sliced["z"][1][1] == pytest.approx(-4.333)
    assert sliced["best"] is None  # the best combination is not in this slice


def test_other_axes_can_be_chosen(client, user, sweep) -> None:
    client.force_login(user)
    data = _heatmap(client, sweep, x="overbought", y="window").json()
    assert data["x_labels"] == ["70", "80"] and data["y_labels"] == ["7", "14", "21"]
    assert data["rules"] == {"oversold": {"kind": "at", "value": 30.0}}
    assert data["best"] == {"x_index": 1, "y_index": 1, "value": -2.333}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"x": "nope"}, "x"),
        ({"x": "window", "y": "window"}, "y"),
        ({"rule.overbought": "average"}, "rule.overbought"),
        ({"rule.overbought": "at:75"}, "rule.overbought"),
        ({"rule.overbought": "at:{"}, "rule.overbought"),
    ],
)
def test_a_bad_heatmap_choice_is_a_400_naming_it(client, user, sweep, query, field) -> None:
    client.force_login(user)
    response = _heatmap(client, sweep, **query)
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_one_varied_parameter_is_a_bar_per_value(client, user, sweep) -> None:
    sweep.grid = {"window": [7, 14, 21], "oversold": [30.0], "overbought": [80.0]}
    sweep.results = [row for row in sweep.results if row["params"]["overbought"] == 80.0]
    sweep.results = [row for row in sweep.results if row["params"]["oversold"] == 30.0]
    sweep.save()
    client.force_login(user)
    data = _heatmap(client, sweep).json()
    assert data["y"] is None and data["x"] == "window"
    assert data["z"] == [-3.033, -2.333, -3.033]
    assert data["best"] == {"x_index": 1, "y_index": None, "value": -2.333}


def test_the_heatmap_data_is_the_owners_or_staff_who_may_view_sweeps(
    client, other_user, sweep
) -> None:
    client.force_login(other_user)
    assert _heatmap(client, sweep).status_code == 404
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert _heatmap(client, sweep).status_code == 404  # staff, but not allowed sweeps
    staff.user_permissions.add(Permission.objects.get(codename="view_sweep"))
    staff = type(staff).objects.get(pk=staff.pk)  # permissions are cached per instance
    client.force_login(staff)
    assert _heatmap(client, sweep).status_code == 200


def test_the_sweep_page_reads_in_words(client, user, sweep) -> None:
    client.force_login(user)
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    assert "rsi dip buyer" in page
    assert "window 7, 14, 21 · oversold 20, 30 · overbought 70, 80" in page
    assert "window 14 · oversold 30 · overbought 80" in page  # the best, in words
    assert "{&#x27;" not in page and "{'" not in page  # no Python dicts
    assert "Sharpe ratio" in page and '<th class="num">sharpe</th>' not in page
    assert page.count("Open as backtest") == len(sweep.results)
    assert f'data-url="{reverse("lab-sweep-heatmap", args=[sweep.pk])}"' in page
    assert reverse("admin:backtests_sweep_change", args=[sweep.pk]) not in page  # not staff


def test_staff_get_a_link_to_the_sweeps_admin_page(client, staff_user, sweep) -> None:
    client.force_login(staff_user)
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    assert reverse("admin:backtests_sweep_change", args=[sweep.pk]) in page


def test_opening_a_combination_posts_what_the_api_accepts(client, api_client, user, sweep):
    client.force_login(user)
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    request = _json_script(page, "sweep-open")
    assert request["url"] == "/api/v1/backtests/" and request["refused"] is None
    params = request["params"][3]
    response = api_client.post(
        request["url"], {**request["body"], "parameters": params}, format="json"
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["parameters"] == params
    assert (created["strategy"], created["timeframe"]) == (sweep.strategy_id, "1h")
    assert created["start"].startswith("2024-01-01T00:00:00")
    assert request["run_url"].replace("{id}", str(created["id"])) == f"/lab/runs/{created['id']}/"


def test_a_sweep_whose_strategy_is_gone_says_it_cannot_be_opened(client, user, sweep) -> None:
    sweep.strategy.delete()
    client.force_login(user)
    page = client.get(reverse("lab-sweep", args=[sweep.pk])).content.decode()
    assert "rsi_reversion on BTCUSDT" in page  # the kind stands in for the name
    assert "cannot be started as backtests" in _json_script(page, "sweep-open")["refused"]


def test_the_home_page_lists_sweeps_by_strategy_name(client, user, sweep) -> None:
    client.force_login(user)
    page = client.get(reverse("lab-home")).content.decode()
    sweeps = re.search(r'<table class="data" id="sweeps">(.*?)</table>', page, re.S)
    assert sweeps is not None
    assert "rsi dip buyer" in sweeps.group(1) and "rsi_reversion" not in sweeps.group(1)
    assert "Sharpe ratio" in sweeps.group(1)


def test_the_admin_sweep_page_shows_the_heatmap_and_the_ranked_table(
    client, staff_user, sweep
) -> None:
    client.force_login(staff_user)
    page = client.get(reverse("admin:backtests_sweep_change", args=[sweep.pk])).content.decode()
    assert f'data-url="{reverse("lab-sweep-heatmap", args=[sweep.pk])}"' in page
    assert "lab/heatmap.js" in page and "vendor/plotly.min.js" in page
    assert 'id="sweep-ranked"' in page
    assert "window 14 · oversold 30 · overbought 80" in page
    request = _json_script(page, "sweep-open")
    assert request["run_url"] == "/admin/backtests/backtestrun/{id}/change/"


def test_the_research_pages_hold_no_inline_script_or_style(
    client, staff_user, user, sweep, run, other_run
) -> None:
    from tests.config.test_deploy import inline_code

    client.force_login(user)
    pages = {
        "compare": _compare(client, run.pk, other_run.pk),
        "refused compare": _compare(client, run.pk),
        "sweep": client.get(reverse("lab-sweep", args=[sweep.pk])),
        "run": client.get(reverse("lab-run", args=[run.pk])),
        "home": client.get(reverse("lab-home")),
    }
    client.force_login(staff_user)
    pages["admin sweep"] = client.get(reverse("admin:backtests_sweep_change", args=[sweep.pk]))
    found = {name: inline_code(page.content.decode()) for name, page in pages.items()}
    assert {name: code for name, code in found.items() if code} == {}


def test_a_sweep_still_running_has_an_empty_heatmap_not_an_error(client, user, sweep) -> None:
    sweep.results, sweep.best_parameters, sweep.best_value = [], None, None
    sweep.status = RunStatus.RUNNING
    sweep.save()
    client.force_login(user)
    data = _heatmap(client, sweep).json()
    assert data["z"] == [[None, None, None]] * 2 and data["best"] is None
    assert client.get(reverse("lab-sweep", args=[sweep.pk])).status_code == 200
