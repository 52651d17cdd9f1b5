"""The ML predictor in a real browser, against the real stack: a small walk-forward backtest
started from the lab home form trains its models on a real worker, and its run page draws the
run chart and the ML panel (P(up) over price, per-fold metrics, the confusion matrix, the
feature importances) without breaking the Content-Security-Policy."""

from __future__ import annotations

import pytest

from backtests.models import BacktestRun
from tests.browser import browser_page
from tests.e2e.test_backtest_service import PASSWORD, _copy_candles, stack  # noqa: F401
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Logistic regression on 3,000 one-minute bars: seven folds of 400 bars, each trained on the
# 300 before it; seconds of work on a loaded CI box.
SMALL_ML = {"model": 0, "lookahead": 1, "train_window": 300, "retrain_step": 400}
START, END = "2023-01-01T00:00", "2023-01-03T02:00"  # 50 hours: 3,000 bars
# Waits and reads are functions, never bare expressions: Playwright evaluates a bare
# expression with eval(), which the page's Content-Security-Policy refuses.
ML_READY = "() => document.getElementById('run-ml')?.dataset.ready === 'true'"
# Every phase text the live progress showed; sessionStorage outlives the final reload.
RECORD_PROGRESS = """document.addEventListener('DOMContentLoaded', () => {
  const text = document.getElementById('live-text');
  if (!text) return;
  const record = () => {
    const seen = JSON.parse(sessionStorage.getItem('progress') || '[]');
    seen.push(text.textContent);
    sessionStorage.setItem('progress', JSON.stringify(seen));
  };
  new MutationObserver(record).observe(text, {childList: true, characterData: true, subtree: true});
})"""


def _traces(page, chart: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The chart's plotly traces (name, points, finite values), once plotly has drawn it."""
    traces = page.evaluate(
        """(id) => {
             const node = document.getElementById(id);
             if (!node.querySelector('.main-svg')) return null;  // not drawn by plotly
             return node.data.map(t => ({
               name: t.name,
               points: (t.orientation === 'h' ? t.y : t.x).length,
               values: (t.orientation === 'h' ? t.x : t.y).filter(v => v !== null),
             }));
           }""",
        chart,
    )
    assert traces, f"#{chart} was not drawn by plotly"
    return traces  # type: ignore[no-any-return]


def test_researcher_runs_an_ml_backtest_from_the_lab_and_sees_its_diagnostics(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="modeller")
    instrument = InstrumentFactory(symbol="MLUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="ml_predictor",
        name="lab ml", parameters=SMALL_ML,
    )  # fmt: skip
    base = f"http://{stack['web']}"

    with browser_page() as page:
        page.set_default_timeout(90_000)
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        # A refused eval() or inline style that the page catches never reaches the console by
        # itself: report every violation the document sees.
        page.add_init_script(
            """document.addEventListener('securitypolicyviolation', e => console.error(
                 'Content Security Policy violation: ' + e.violatedDirective + ' at ' +
                 e.sourceFile + ':' + e.lineNumber))"""
        )
        page.add_init_script(RECORD_PROGRESS)
        page.goto(f"{base}/lab/")  # redirected to the login page first
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.select_option("#bt-strategy", str(strategy.pk))
        # The form shows the strategy's own parameters, the ML ones among them.
        assert page.input_value("#bt-params input[name='param:train_window']") == "300"
        assert page.input_value("#bt-params input[name='param:retrain_step']") == "400"
        page.fill("#bt-start", START)
        page.fill("#bt-end", END)
        page.click("#bt-submit")
        page.wait_for_url("**/lab/runs/*/")

        # The page reloads on the run's final message, with the results and the ML panel.
        page.wait_for_function(ML_READY)
        run = BacktestRun.objects.get()
        assert run.status == "succeeded", run.error
        assert run.kind == "ml_predictor" and run.owner == user
        assert run.parameters["model"] == 0 and run.parameters["train_window"] == 300
        page.wait_for_function("() => document.getElementById('run-chart')?.dataset.bucketBars")
        assert page.evaluate("() => document.getElementById('run-chart').data[0].x.length") > 50

        diagnostics = page.request.get(f"{base}/api/v1/backtests/{run.pk}/ml/").json()
        folds = diagnostics["folds"]
        assert len(folds) == 7, [f["predict_start"] for f in folds]

        close, probability = _traces(page, "ml-probability")
        assert close["name"] == "Close" and probability["name"] == "P(up)"
        assert close["points"] == probability["points"] == len(diagnostics["series"]["ts"])
        assert len(close["values"]) == close["points"]  # a price on every bar
        # P(up) from the first fold on: out of sample, so none before the first window.
        assert len(probability["values"]) > 2000
        assert all(0 <= p <= 1 for p in probability["values"])

        metrics = _traces(page, "ml-folds")
        assert [t["name"] for t in metrics] == ["Accuracy", "Precision", "Recall", "ROC AUC"]
        assert all(t["points"] == len(folds) for t in metrics)
        assert metrics[0]["values"] == [f["accuracy"] for f in folds]
        fold_rows = page.locator("#ml-fold-table tbody tr")
        assert fold_rows.count() == len(folds)
        assert fold_rows.nth(0).locator("td").nth(1).inner_text() == (
            f"{folds[0]['predict_start']}\N{EN DASH}{folds[0]['predict_end'] - 1}"
        )

        cells = page.evaluate(
            """() => [...document.querySelectorAll('#ml-confusion tbody tr')]
                 .map(row => [...row.querySelectorAll('td')].map(td => Number(td.textContent)))"""
        )
        assert cells == diagnostics["confusion"]
        assert sum(map(sum, cells)) == sum(f["test_bars"] for f in folds)

        importance = _traces(page, "ml-importance")
        assert [t["name"] for t in importance] == [
            "Model importance",
            "Permutation (accuracy drop)",
        ]
        assert all(t["points"] == len(diagnostics["feature_names"]) for t in importance)
        assert any(v != 0 for v in importance[0]["values"])

        # The progress the run page showed before the reload named the folds being trained.
        progress = page.evaluate("() => JSON.parse(sessionStorage.getItem('progress') || '[]')")

    violations = [
        line
        for line in console
        if "Content Security Policy" in line or line.startswith("pageerror")
    ]
    assert violations == [], violations
    assert any(text.startswith("Training models") for text in progress), progress
