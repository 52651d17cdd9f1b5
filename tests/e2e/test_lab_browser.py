"""A researcher in a real browser, against the real stack: start a backtest and a sweep in the
lab, watch them finish on a real worker, and study the charts and downloads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backtests.models import BacktestRun, Sweep
from tests.browser import browser_page
from tests.e2e.test_backtest_service import PASSWORD, _copy_candles, stack  # noqa: F401
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_researcher_runs_a_backtest_and_a_sweep_from_the_lab(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="researcher")
    instrument = InstrumentFactory(symbol="LABUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="sma_cross",
        name="lab sma", parameters={"fast": 10, "slow": 60},
    )  # fmt: skip
    base = f"http://{stack['web']}"

    with browser_page() as page:
        page.set_default_timeout(90_000)
        page.goto(f"{base}/lab/")  # redirected to the login page first
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("#backtest-form").count() == 1, (
            page.url,
            page.inner_text("body")[:800],
        )
        assert page.input_value("#bt-params input[name='param:fast']") == "10"

        page.fill("#bt-params input[name='param:fast']", "60")
        page.click("#bt-submit")
        page.wait_for_function("() => document.getElementById('bt-errors').textContent.length > 0")
        assert "fast" in page.inner_text("#bt-errors")  # fast < slow, named in the error
        assert not BacktestRun.objects.exists()

        page.fill("#bt-params input[name='param:fast']", "15")
        # About 60,000 of the 300,000 bars: enough trades to chart, quick on a loaded CI box.
        page.fill("#bt-start", "2023-01-01T00:00")
        page.fill("#bt-end", "2023-02-12T00:00")
        page.click("#bt-submit")
        page.wait_for_url("**/lab/runs/*/")
        # Function form: Playwright evaluates a bare expression with eval(), which the CSP refuses.
        page.wait_for_function("() => document.getElementById('run-chart')?.dataset.bucketBars")
        run = BacktestRun.objects.get()
        assert run.status == "succeeded" and run.owner == user and run.parameters["fast"] == 15
        assert run.end - run.start == timedelta(days=42)
        assert page.evaluate("() => document.getElementById('run-chart').data[0].x.length") > 50
        page.wait_for_function("() => document.querySelectorAll('#trades tbody tr').length > 0")
        shown = page.locator("#trades tbody tr").count()
        assert shown == min(run.trades.count(), 100) and shown > 0
        xlsx = page.request.get(
            f"{base}/api/v1/backtests/{run.pk}/export/?format=xlsx", timeout=90_000
        )
        assert xlsx.status == 200 and xlsx.body()[:2] == b"PK"

        page.goto(f"{base}/lab/")
        page.select_option("#sw-strategy", str(strategy.pk))
        page.click("#sw-setup")  # the sweep's range rows come from the strategy's kind
        page.wait_for_url(lambda url: "/lab/sweeps/new/?strategy=" in url)
        for name, (start, stop, step) in {"fast": (5, 15, 5), "slow": (30, 60, 30)}.items():
            page.fill(f"input[name='range-{name}_from']", str(start))
            page.fill(f"input[name='range-{name}_to']", str(stop))
            page.fill(f"input[name='range-{name}_step']", str(step))
        assert page.inner_text("#sw-count") == "6"
        page.fill("#sw-start", "2023-01-01T00:00")
        page.fill("#sw-end", "2023-02-12T00:00")
        page.click("#sw-submit")
        page.wait_for_url("**/lab/sweeps/*/")
        page.wait_for_selector("#sweep-heatmap .hm-chart .heatmaplayer")
        sweep = Sweep.objects.get()
        assert sweep.status == "succeeded" and sweep.combinations_done == 6
        cells = "document.querySelector('#sweep-heatmap .hm-chart').data[0].z.flat()"
        assert page.evaluate(f"() => {cells}.filter(v => v !== null).length") == 6
