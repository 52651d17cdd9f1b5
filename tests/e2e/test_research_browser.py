"""A researcher in a real browser, against the real stack: compare two runs computed by the
worker, study a run's analyses, and explore a three-parameter sweep's heatmap down to
opening a combination as a backtest. No page may trip the Content-Security-Policy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from backtests.models import BacktestRun, RunStatus, Sweep
from tests.browser import browser_page
from tests.e2e.test_backtest_service import (  # noqa: F401
    PASSWORD,
    T0,
    Api,
    _copy_candles,
    _wait_for,
    stack,
)
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BARS = 20_000  # minutes per run: quick on the worker, yet weeks of trades


def _log_in(page: Any, base: str, username: str) -> list[str]:
    """Log in; returns the list the page's CSP complaints are collected in."""
    complaints: list[str] = []
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.set_default_timeout(90_000)
    page.goto(f"{base}/lab/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return complaints


def _succeeded(run_id: int) -> bool:
    return BacktestRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).exists()


def test_researcher_compares_two_runs_and_reads_a_runs_analyses(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="comparer")
    instrument = InstrumentFactory(symbol="CMPUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="sma_cross",
        name="compare sma", parameters={"fast": 10, "slow": 60},
    )  # fmt: skip
    api = Api(stack["web"], user.username)
    first = api.submit(strategy.pk, BARS)
    second = api.submit(
        strategy.pk, BARS, parameters={"fast": 20, "slow": 90}, initial_capital="2500"
    )
    for run in (first, second):
        _wait_for(lambda run=run: _succeeded(run["id"]), f"run {run['id']} on the worker")
    base = f"http://{stack['web']}"

    with browser_page() as page:
        complaints = _log_in(page, base, user.username)
        page.check(f"input[name=runs][value='{first['id']}']")
        page.check(f"input[name=runs][value='{second['id']}']")
        page.click("#compare-submit")
        page.wait_for_url("**/lab/compare/?runs=*")
        page.wait_for_selector("#chart-compare .scatterlayer .trace")
        assert page.locator("#chart-compare .scatterlayer .trace").count() == 2
        starts = page.evaluate(
            "() => document.getElementById('chart-compare').data.map(t => t.y[0])"
        )
        # 10,000 and 2,500 of capital both start at about 100.
        assert all(abs(value - 100) < 2 for value in starts), starts
        header = page.inner_text("#compare-metrics thead")
        assert f"#{first['id']} compare sma" in header and f"#{second['id']} compare sma" in header
        sharpe_row = page.locator("#compare-metrics tr[data-metric='sharpe'] td")
        assert sharpe_row.count() == 2
        # Columns come in the order the form sent the runs (the table's, newest first).
        order = [int(pk) for pk in parse_qs(urlparse(page.url).query)["runs"]]
        assert sorted(order) == sorted([first["id"], second["id"]])
        for i, pk in enumerate(order):
            shown = BacktestRun.objects.get(pk=pk).metrics["sharpe"]
            assert sharpe_row.nth(i).inner_text().endswith(f"{shown:.4g}")
        assert page.locator("#compare-metrics td.best").count() > 0

        page.goto(f"{base}/lab/runs/{first['id']}/")
        page.wait_for_selector("#run-analysis[data-ready='1']")
        assert page.locator("table.monthly-returns tbody tr").count() == 1  # January 2023
        assert page.locator("#analysis-pnl .barlayer .trace").count() == 2  # winners, losers
        assert page.locator("#analysis-exit-reasons tbody tr").count() >= 1
        assert page.locator("#analysis-durations tbody tr").count() == 5
        assert complaints == []


GRID = {"fast": [8, 12], "slow": [26, 30, 34], "signal": [5, 9]}


def _sharpe(fast: int, slow: int, signal: int) -> float:
    # -2.333 at fast 12 · slow 30 · signal 9; signal 5 is 2 worse everywhere.
    return round(-2.333 - abs(slow - 30) * 0.05 - (12 - fast) * 0.1 - (9 - signal) * 0.5, 3)


def _finished_sweep(user: Any, strategy: Any) -> Sweep:
    """A finished three-parameter sweep, stored as the sweep service stores one."""
    rows = [
        {
            "params": {"fast": f, "slow": s, "signal": g},
            "metrics": {"sharpe": _sharpe(f, s, g), "return_pct": 1.0, "num_trades": 10},
            "cached": False,
        }
        for f in GRID["fast"]
        for s in GRID["slow"]
        for g in GRID["signal"]
    ]
    rows.sort(key=lambda row: -row["metrics"]["sharpe"])
    return Sweep.objects.create(
        owner=user, strategy=strategy, kind=strategy.kind, instrument=strategy.instrument,
        timeframe="1m", start=T0, end=T0 + timedelta(minutes=BARS),
        initial_capital=Decimal("10000"), fee_rate=Decimal("0.001"), grid=GRID,
        rank_metric="sharpe", status=RunStatus.SUCCEEDED, progress=100,
        combinations_total=len(rows), combinations_done=len(rows), results=rows,
        best_parameters=rows[0]["params"], best_value=rows[0]["metrics"]["sharpe"],
    )  # fmt: skip


def _shown(page: Any) -> dict[str, Any]:
    """What the heatmap draws: its cells, and the value in the cell framed as the best."""
    return page.evaluate(
        """() => {
          const gd = document.querySelector('#sweep-heatmap .hm-chart');
          const cells = gd.data[0], frame = (gd.layout.shapes || [])[0];
          const best = frame ? cells.z[frame.y0 + 0.5][frame.x0 + 0.5] : null;
          return { z: cells.z, x: cells.x, y: cells.y, best,
                   rule: document.querySelector('#sweep-heatmap .hm-rule').textContent };
        }"""
    )


def _wait_for_rule(page: Any, words: str) -> None:
    page.wait_for_function(
        "words => document.querySelector('#sweep-heatmap .hm-rule').textContent.includes(words)",
        arg=words,
    )


def _click_cell(page: Any, x_label: str, y_label: str) -> None:
    """A real mouse click on the middle of a heatmap cell (category axes: cell i at i)."""
    point = page.evaluate(
        """([x, y]) => {
          const gd = document.querySelector('#sweep-heatmap .hm-chart');
          const cells = gd.data[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
          const box = gd.getBoundingClientRect();
          return [box.left + xa._offset + xa.c2p(cells.x.indexOf(x)),
                  box.top + ya._offset + ya.c2p(cells.y.indexOf(y))];
        }""",
        [x_label, y_label],
    )
    page.mouse.click(point[0], point[1])


def test_researcher_explores_a_sweep_heatmap_and_opens_combinations(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="sweeper", is_staff=True, is_superuser=True)
    instrument = InstrumentFactory(symbol="HMPUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="macd_cross",
        name="macd grid", parameters={"fast": 12, "slow": 26, "signal": 9},
    )  # fmt: skip
    sweep = _finished_sweep(user, strategy)
    assert sweep.best_value == -2.333
    base = f"http://{stack['web']}"

    with browser_page() as page:
        complaints = _log_in(page, base, user.username)
        assert "macd grid" in page.inner_text("#sweeps")  # listed by the strategy's name
        page.goto(f"{base}/lab/sweeps/{sweep.pk}/")
        page.wait_for_selector("#sweep-heatmap .hm-chart .heatmaplayer")
        assert "fast 8, 12 · slow 26, 30, 34 · signal 5, 9" in page.inner_text("#sweep-grid")

        # By default signal is sliced at the best combination's value: the framed best cell
        # holds the best value itself, not an average over signal.
        shown = _shown(page)
        assert shown["best"] == sweep.best_value
        assert "signal fixed at 9, the best combination's value" in shown["rule"]
        assert "Sharpe ratio" in page.inner_text("#sweep-heatmap .hm-legend")

        page.select_option("#sweep-heatmap select[name='rule.signal']", "at:5")
        _wait_for_rule(page, "signal fixed at 5.")
        sliced = _shown(page)
        assert sliced["z"] != shown["z"] and sliced["best"] is None
        assert max(max(row) for row in sliced["z"]) == pytest.approx(-4.333)

        page.select_option("#sweep-heatmap select[name='rule.signal']", "mean")
        _wait_for_rule(page, "mean Sharpe ratio over signal's 2 values")
        assert _shown(page)["best"] == pytest.approx(-3.333)  # the frame's cell is a mean now

        # x and y swap places when x takes y's parameter; then signal goes on an axis.
        page.select_option("#sweep-heatmap select[name=x]", "signal")
        _wait_for_rule(page, "for each signal (across)")
        axes = _shown(page)
        assert axes["x"] == ["5", "9"] and "fast fixed at 12" in axes["rule"]

        page.goto(f"{base}/lab/sweeps/{sweep.pk}/")
        page.wait_for_selector("#sweep-heatmap .hm-chart .heatmaplayer")
        _click_cell(page, "8", "34")  # fast 8 · slow 34 · signal 9 (the default slice)
        page.wait_for_url("**/lab/runs/*/")
        opened = BacktestRun.objects.order_by("-id").first()
        assert opened is not None
        assert opened.parameters == {"fast": 8, "slow": 34, "signal": 9}
        assert (opened.start, opened.end, opened.timeframe) == (sweep.start, sweep.end, "1m")
        assert page.url.endswith(f"/lab/runs/{opened.pk}/")
        _wait_for(lambda: _succeeded(opened.pk), "the opened combination on the worker")

        page.goto(f"{base}/lab/sweeps/{sweep.pk}/")
        page.locator("button.open-combo").nth(1).click()  # the second best
        page.wait_for_url("**/lab/runs/*/")
        second = BacktestRun.objects.order_by("-id").first()
        assert second is not None and second.parameters == sweep.results[1]["params"]

        page.goto(f"{base}/admin/backtests/sweep/{sweep.pk}/change/")
        page.wait_for_selector("#sweep-heatmap .hm-chart .heatmaplayer")
        assert _shown(page)["best"] == sweep.best_value
        assert page.locator("#sweep-ranked tbody tr").count() == len(sweep.results)
        assert complaints == []
