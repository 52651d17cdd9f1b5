"""A researcher in Chromium, against the real stack (PostgreSQL, Redis, a Celery worker,
daphne): start a small walk-forward from the lab's study form, watch it finish over the
WebSocket, and read its charts; no page may trip the Content-Security-Policy.

    .venv/bin/python tests/run_with_postgres.py -- \\
        .venv/bin/pytest -q -p no:cacheprovider tests/e2e/test_study_browser.py
"""

from __future__ import annotations

from typing import Any

import pytest

from backtests.models import BacktestRun
from studies.models import Study, StudyFold, StudyTrial
from tests.browser import browser_page
from tests.e2e.test_backtest_service import PASSWORD, _copy_candles, stack  # noqa: F401
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_MS = 150_000
TRACES = "(document.getElementById('%s').data || []).length"  # a chart's plotly traces
# Reported by the page itself: Playwright's init scripts are not subject to the page's CSP.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", event => {
  window.reportCspViolation(
    `${event.violatedDirective} ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def _drawn(page: Any, chart: str) -> dict[str, Any]:
    """What plotly drew in #chart: each trace's name and its numbers of x and y points."""
    return page.evaluate(  # type: ignore[no-any-return]
        """id => {
          const node = document.getElementById(id);
          return { plotted: node.classList.contains("js-plotly-plot"),
                   traces: (node.data || []).map(t => ({ name: t.name, x: (t.x || []).length,
                     y: (t.y || []).filter(v => v !== null && v !== undefined).length })) };
        }""",
        chart,
    )


def test_researcher_runs_a_walk_forward_from_the_lab_to_its_charts(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="walker")
    instrument = InstrumentFactory(symbol="WFAUSDT")
    _copy_candles(instrument.pk)
    StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="sma_cross",
        name="wf sma", parameters={"fast": 10, "slow": 60},
    )  # fmt: skip
    base = f"http://{stack['web']}"

    with browser_page() as page:
        violations: list[str] = []
        errors: list[str] = []
        page.expose_function("reportCspViolation", lambda text: violations.append(text))
        page.add_init_script(CSP_LISTENER)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(90_000)

        page.goto(f"{base}/lab/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.click("#nav-studies")
        page.wait_for_url("**/lab/studies/")
        page.click("#study-new")
        page.wait_for_url("**/lab/studies/new/")

        # A 2 x 2 grid, searched in each of 3 rolling folds and over the whole period.
        for name, (low, high, step) in {"fast": (5, 10, 5), "slow": (30, 60, 30)}.items():
            page.fill(f"input[name='space-{name}_low']", str(low))
            page.fill(f"input[name='space-{name}_high']", str(high))
            page.fill(f"input[name='space-{name}_step']", str(step))
        assert page.inner_text("#st-grid") == "4"
        page.select_option("#id_sampler", "grid")
        page.fill("#id_n_trials", "4")
        page.fill("#st-start", "2023-01-01T00:00")
        page.fill("#st-end", "2023-01-02T17:40")  # 2,500 one-minute bars
        assert page.locator("#st-wf-fields").is_hidden()
        page.check("#st-wf")
        assert page.locator("#st-wf-fields").is_visible()
        page.select_option("#id_wf_mode", "rolling")
        page.fill("#id_wf_in_sample", "1000")
        page.fill("#id_wf_out_of_sample", "3y")  # not a length: refused on its field
        page.click("#st-submit")
        page.wait_for_selector("p.field-error[data-field='wf_out_of_sample']")
        assert "m, h, d or w" in page.inner_text("p.field-error[data-field='wf_out_of_sample']")
        assert not Study.objects.exists()

        assert page.is_checked("#st-wf")  # the form came back as it was sent
        page.fill("#id_wf_out_of_sample", "500")
        page.click("#st-submit")
        page.wait_for_url("**/lab/studies/*/")
        study = Study.objects.get()
        assert study.owner == user and study.mode == "walk_forward"

        # The page follows the study over its WebSocket and reloads itself on the final
        # message: the progress section goes away without the test reloading anything.
        page.wait_for_function(
            "() => !document.getElementById('live')"
            " && document.querySelector('#run-status .status').textContent === 'succeeded'",
            timeout=WAIT_MS,
        )
        study.refresh_from_db()
        assert study.status == "succeeded", study.error
        assert study.folds_total == 3 and study.trials_done == 16
        assert StudyFold.objects.filter(study=study).count() == 4  # 3 folds and the whole period

        # The fold timeline: in-sample and out-of-sample bars for each of the 3 folds.
        page.wait_for_function(f"() => {TRACES % 'chart-timeline'} === 2")
        timeline = _drawn(page, "chart-timeline")
        assert [t["name"] for t in timeline["traces"]] == ["In sample", "Out of sample"]
        assert all(t["y"] == 3 for t in timeline["traces"]), timeline
        assert page.locator("#chart-timeline .barlayer .point").count() == 6

        # In-sample against out-of-sample: a value on both sides of every fold.
        page.wait_for_function(f"() => {TRACES % 'chart-folds'} === 2")
        bars = _drawn(page, "chart-folds")
        assert [t["y"] for t in bars["traces"]] == [3, 3], bars
        assert page.input_value("#fold-metric") == "sharpe"

        # The stitched out-of-sample equity against the whole-period optimum's.
        page.wait_for_function(f"() => {TRACES % 'chart-equity'} === 2")
        equity = _drawn(page, "chart-equity")
        assert all(t["x"] > 100 for t in equity["traces"]), equity
        assert page.locator("#chart-equity .scatterlayer .trace").count() == 2

        history = _drawn(page, "chart-history")
        assert history["plotted"] and sum(t["y"] for t in history["traces"]) >= 16 - 1
        assert page.locator("#folds tbody tr").count() >= 3
        assert "Deflated Sharpe Ratio" in page.inner_text("#overfitting")

        # The trials, then one opened as a backtest of its window.
        page.wait_for_function(
            "() => document.querySelectorAll('#trials tbody tr[data-trial]').length === 16"
        )
        first = StudyTrial.objects.filter(study=study, state="complete").order_by("id").first()
        assert first is not None
        row = page.locator(f"#trials tbody tr[data-trial='{first.pk}']")
        assert row.locator("td").nth(2).inner_text() == " · ".join(
            f"{name} {value}" for name, value in first.params.items()
        )
        row.locator("button.open-trial").click()
        page.wait_for_url("**/lab/runs/*/")
        opened = BacktestRun.objects.get()
        assert opened.parameters == {**study.parameters, **first.params}
        assert (opened.start, opened.end) == (first.fold.is_start, first.fold.is_end)

        xlsx = page.request.get(f"{base}/api/v1/studies/{study.pk}/export/?format=xlsx")
        assert xlsx.status == 200 and xlsx.body()[:2] == b"PK"
        assert violations == [] and errors == [], (violations, errors)
