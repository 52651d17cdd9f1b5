"""A researcher (not staff) manages strategies in a real browser, against the real stack:
create one from the form generated from its kind's spec, backtest it from its row and watch
the run finish on a real worker, then save it under a new name."""

from __future__ import annotations

import pytest

from backtests.models import BacktestRun
from strategies.models import Strategy
from tests.browser import browser_page
from tests.e2e.test_backtest_service import PASSWORD, _copy_candles, stack  # noqa: F401
from tests.factories import InstrumentFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_researcher_creates_backtests_and_clones_a_strategy_in_the_lab(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="quant", is_staff=False)
    instrument = InstrumentFactory(symbol="STRATUSDT")
    _copy_candles(instrument.pk)
    base = f"http://{stack['web']}"

    with browser_page() as page:
        page.set_default_timeout(90_000)
        page.goto(f"{base}/lab/strategies/")  # redirected to the login page first
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/lab/strategies/")
        assert "No strategies" in page.inner_text("#strategies")

        page.click("#new-strategy")
        page.wait_for_url("**/lab/strategies/new/")
        page.fill("#id_name", "ema trend")
        # Choosing a kind reloads the form with that kind's fields, keeping the name.
        page.select_option("#id_kind", "ema_cross")
        page.wait_for_url(lambda url: "kind=ema_cross" in url)
        assert page.input_value("#id_name") == "ema trend"
        assert page.input_value("#id_param_fast") == "12"  # the spec's default
        assert "Fast EMA span, in bars." in page.inner_text("#strategy-params")
        assert "exponential moving average" in page.inner_text("#kind-description")
        page.select_option("#id_instrument", str(instrument.pk))
        page.select_option("#id_timeframe", "1m")

        page.fill("#id_param_fast", "70")
        page.fill("#id_param_slow", "60")
        page.click("#strategy-save")
        page.wait_for_selector(".field-error[data-field='param_fast']")
        assert "less than slow" in page.inner_text(".field-error[data-field='param_fast']")
        assert not Strategy.objects.exists()

        page.fill("#id_param_fast", "15")
        page.click("#strategy-save")
        page.wait_for_url("**/lab/strategies/")
        strategy = Strategy.objects.get(owner=user)
        assert (strategy.kind, strategy.parameters) == ("ema_cross", {"fast": 15, "slow": 60})
        row = page.locator(f"tr[data-strategy='{strategy.pk}']")
        assert "ema trend" in row.inner_text()

        # The sweep form counts its combinations as the ranges change.
        page.goto(f"{base}/lab/sweeps/new/?strategy={strategy.pk}")
        page.fill("input[name='range-fast_from']", "5")
        page.fill("input[name='range-fast_to']", "15")
        page.fill("input[name='range-fast_step']", "5")
        page.fill("input[name='range-slow_from']", "30")
        page.fill("input[name='range-slow_to']", "60")
        page.fill("input[name='range-slow_step']", "10")
        assert page.inner_text("#sw-count") == "12"

        page.goto(f"{base}/lab/strategies/")
        page.locator(f"tr[data-strategy='{strategy.pk}'] a", has_text="Backtest").click()
        page.wait_for_url(lambda url: url.endswith(f"/lab/?strategy={strategy.pk}"))
        assert page.input_value("#bt-strategy") == str(strategy.pk)
        assert page.input_value("#bt-params input[name='param:fast']") == "15"
        page.fill("#bt-start", "2023-01-01T00:00")
        page.fill("#bt-end", "2023-01-22T00:00")
        page.click("#bt-submit")
        page.wait_for_url("**/lab/runs/*/")
        # Function form: Playwright evaluates a bare expression with eval(), which the CSP refuses.
        page.wait_for_function("() => document.getElementById('run-chart')?.dataset.bucketBars")
        run = BacktestRun.objects.get()
        assert run.status == "succeeded" and run.strategy == strategy and run.owner == user

        # The list shows the run's headline result, linked.
        page.goto(f"{base}/lab/strategies/")
        last_run = page.locator(f"tr[data-strategy='{strategy.pk}'] td.last-run")
        assert f"#{run.pk}" in last_run.inner_text()
        sharpe = page.inner_text(f"tr[data-strategy='{strategy.pk}'] td.sharpe").strip()
        assert abs(float(sharpe) - run.metrics["sharpe"]) <= 0.0051

        page.locator(f"tr[data-strategy='{strategy.pk}'] a.clone").click()
        page.wait_for_url(f"**/lab/strategies/{strategy.pk}/clone/")
        page.fill("#id_name", "ema trend v2")
        page.click("#clone-save")
        page.wait_for_url("**/lab/strategies/*/edit/")
        clone = Strategy.objects.get(owner=user, name="ema trend v2")
        assert clone.pk != strategy.pk and clone.parameters == strategy.parameters
        assert page.input_value("#id_param_fast") == "15"
