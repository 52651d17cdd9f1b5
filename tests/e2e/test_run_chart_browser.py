"""The run page's chart in a real browser, against the real stack: a finished run of 300,000
one-minute bars is explored from the whole range down to single bars, a trade picked in the
table is shown on the chart, and nothing on the page breaks the Content-Security-Policy."""

from __future__ import annotations

import pandas as pd
import pytest

from backtests import services
from backtests.models import BacktestTrade
from tests.browser import browser_page
from tests.e2e.test_backtest_service import BARS, PASSWORD, T0, _copy_candles, stack  # noqa: F401
from tests.factories import InstrumentFactory, StrategyFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Waits are functions, never bare expressions: Playwright evaluates a bare expression with
# eval(), which the page's Content-Security-Policy refuses.
BUCKET_BARS = "document.getElementById('run-chart').dataset.bucketBars"
# The chart's x range in epoch milliseconds (plotly's dates are UTC without a zone).
X_RANGE = """() => document.getElementById('run-chart').layout.xaxis.range.map(v =>
  typeof v === 'number' ? v : Date.parse(String(v).replace(' ', 'T').slice(0, 23) + 'Z'))"""


def _wait(page, condition: str, console: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait for `condition` (a function's source); on a timeout, say what the page shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition)
    except PlaywrightTimeout:
        shown = page.inner_text("#chart-scale") + " / " + page.inner_text("#chart-errors")
        raise AssertionError(
            f"never true: {condition}\nchart: {shown}\nconsole: {console}"
        ) from None


def _ms(value: object) -> float:
    return pd.Timestamp(value).timestamp() * 1000  # type: ignore[arg-type]


def test_the_chart_zooms_to_single_bars_and_follows_a_picked_trade(stack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    user = UserFactory(username="chartist")
    instrument = InstrumentFactory(symbol="CHARTUSDT")
    _copy_candles(instrument.pk)
    strategy = StrategyFactory(
        owner=user, instrument=instrument, timeframe="1m", kind="sma_cross",
        name="chart sma", parameters={"fast": 10, "slow": 60},
    )  # fmt: skip
    run = services.backtest_submit(
        user=user,
        strategy=strategy,
        start=T0,
        end=T0 + pd.Timedelta(minutes=BARS),
        overrides={"allow_short": True},
        enqueue=False,
    )
    services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    trade_count = BacktestTrade.objects.filter(run=run).count()
    assert trade_count > 200
    base = f"http://{stack['web']}"

    with browser_page() as page:
        page.set_default_timeout(90_000)
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        # A refused eval() that the page catches never reaches the console by itself (plotly's
        # WebGL traces do that): report every violation the document sees.
        page.add_init_script(
            """document.addEventListener('securitypolicyviolation', e => console.error(
                 'Content Security Policy violation: ' + e.violatedDirective + ' at ' +
                 e.sourceFile + ':' + e.lineNumber))"""
        )
        page.goto(f"{base}/lab/runs/{run.pk}/")  # redirected to the login page first
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/lab/runs/{run.pk}/")

        # The whole run: 300,000 bars merged into at most 1,500 candles.
        _wait(page, f"() => {BUCKET_BARS} !== ''", console)
        whole = int(page.evaluate(f"() => {BUCKET_BARS}"))
        assert whole == -(-BARS // 1500), page.inner_text("#chart-scale")
        assert f"1 candle = {whole} bars of 1m" in page.inner_text("#chart-scale")
        markers = page.evaluate(
            """() => document.getElementById('run-chart').data
                 .filter(t => t.mode === 'markers').reduce((n, t) => n + t.x.length, 0)"""
        )
        assert markers >= 2 * trade_count - 1  # every entry and exit (an open trade has one)

        # Zoom to two hours in the middle: single bars.
        middle = pd.Timestamp(T0) + pd.Timedelta(minutes=BARS // 2)
        later = middle + pd.Timedelta(hours=2)
        page.evaluate(
            """([a, b]) => Plotly.relayout(document.getElementById('run-chart'),
                 {'xaxis.range': [a, b]})""",
            [str(middle.tz_localize(None)), str(later.tz_localize(None))],
        )
        _wait(page, f"() => {BUCKET_BARS} === '1'", console)
        assert "1 candle = 1 bar of 1m" in page.inner_text("#chart-scale")
        candles = page.evaluate("() => document.getElementById('run-chart').data[0].x.length")
        assert 120 <= candles <= 240  # the two hours, and a quarter of that either side

        # The trades table: the first page, then a trade picked far from the zoomed window.
        first_page = min(100, trade_count)
        _wait(
            page,
            f"() => document.querySelectorAll('#trades tbody tr').length === {first_page}",
            console,
        )
        assert page.inner_text("#trades-page").startswith(f"1\N{EN DASH}100 of {trade_count:,}")
        row = page.locator("#trades tbody tr").nth(40)
        trade = BacktestTrade.objects.get(pk=int(row.get_attribute("data-trade") or 0))
        row.click()
        entry, exit_ = _ms(trade.entry_time), _ms(trade.exit_time)
        _wait(
            page,
            f"""() => {{ const r = ({X_RANGE})(); return r[0] <= {entry} && r[1] >= {exit_}
                 && r[1] - r[0] < 86400000; }}""",
            console,
        )
        assert "selected" in (row.get_attribute("class") or "")
        # ...and the window around it is loaded at the trade's scale, with its markers.
        _wait(
            page,
            f"""() => {{ const node = document.getElementById('run-chart');
                 const x = node.data[0].x.map(v => Date.parse(v));
                 return x.length && x[0] <= {entry} && x[x.length - 1] >= {exit_}; }}""",
            console,
        )
        assert int(page.evaluate(f"() => {BUCKET_BARS}")) < whole

        page.click("#trades-next")
        _wait(
            page,
            "() => document.getElementById('trades-page').textContent.startsWith('101')",
            console,
        )

        # Back to the whole run.
        page.click("#chart-reset")
        _wait(page, f"() => {BUCKET_BARS} === '{whole}'", console)

    violations = [
        line
        for line in console
        if "Content Security Policy" in line or line.startswith("pageerror")
    ]
    assert violations == [], violations
