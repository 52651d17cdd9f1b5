"""portfolio_submit (validation, the params-hash cache) and portfolio_execute (results saved
in one go, or a failure that saves nothing)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtests.engine import BacktestConfig
from backtests.engine.portfolio import run_portfolio
from backtests.models import RunStatus
from backtests.services import BacktestInputError
from marketdata.selectors import candles_load
from persistence.models import Artifact, CachedResult
from portfolios import selectors
from portfolios.models import PortfolioRun, PortfolioTrade
from portfolios.services import execution
from portfolios.services import settings as portfolio_settings
from strategies.library.base import StrategyRef
from tests.portfolios.conftest import SYMBOLS, execute, instruments_of, submit

pytestmark = pytest.mark.django_db


def engine_result(run: PortfolioRun):  # type: ignore[no-untyped-def]
    """run_portfolio called directly on the run's candles and settings."""
    candles = {}
    for instrument in instruments_of(run):
        candles[instrument.symbol], _ = candles_load(
            instrument_id=instrument.pk, timeframe=run.timeframe, start=run.start, end=run.end
        )
    return run_portfolio(
        candles,
        StrategyRef(kind=run.kind, params=run.parameters),
        BacktestConfig(
            initial_capital=float(run.initial_capital),
            fee_rate=float(run.fee_rate),
            slippage_bps=float(run.slippage_bps),
            timeframe=run.timeframe,
        ),
        allocation=run.allocation,
        weights=run.weights,
        max_positions=run.max_positions,
        rebalance=run.rebalance,
        drift_threshold=None if run.drift_threshold is None else float(run.drift_threshold),
    )


def test_a_miss_queues_the_run_and_enqueues_its_task_on_commit(
    user, basket, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = submit(user)
    assert run.status == RunStatus.QUEUED and not run.cache_hit
    assert len(run.params_hash) == 64
    assert [i.symbol for i in instruments_of(run)] == list(SYMBOLS)
    assert len(callbacks) == 1


def test_a_three_instrument_run_matches_the_engine_called_directly(user, basket) -> None:
    run = execute(submit(user, fee_rate=Decimal("0.0005"), slippage_bps=Decimal("2")))
    assert run.status == RunStatus.SUCCEEDED, run.error
    expected = engine_result(run)
    curve = selectors.equity_frame(run)
    assert len(curve) == len(expected.equity) == run.bars
    assert curve["equity"].iloc[-1] == pytest.approx(float(expected.equity.iloc[-1]), rel=1e-12)
    assert run.metrics["num_trades"] == expected.metrics["num_trades"]
    rows = {row["instrument"]: row for row in selectors.per_instrument_rows(run)}
    assert list(rows) == list(SYMBOLS)
    for symbol in SYMBOLS:
        assert rows[symbol]["contribution"] == pytest.approx(expected.contribution[symbol])
        assert rows[symbol]["missing_bars"] == int(expected.missing_bars[symbol])
    stored = list(selectors.portfolio_trades(run=run))
    assert len(stored) == len(expected.trades) > 0
    for trade, engine in zip(stored, expected.trades.itertuples(index=False), strict=True):
        assert trade.instrument.symbol == engine.instrument
        assert trade.entry_time == engine.entry_time.to_pydatetime()
        assert trade.pnl == pytest.approx(Decimal(repr(engine.pnl)), abs=Decimal("1e-8"))
        assert isinstance(trade.quantity, Decimal)


def test_the_same_request_again_is_answered_from_the_cache_without_a_task(
    user, basket, django_capture_on_commit_callbacks
) -> None:
    first = execute(submit(user))
    with django_capture_on_commit_callbacks() as callbacks:
        again = submit(user, name="same again")
    assert again.cache_hit and again.status == RunStatus.SUCCEEDED
    assert again.params_hash == first.params_hash
    assert again.shared_from == first
    assert again.metrics == first.metrics
    assert callbacks == []
    assert selectors.portfolio_trades(run=again).count() == first.trades.count()
    assert len(selectors.equity_frame(again)) == first.bars


def test_a_different_instrument_order_or_allocation_misses_the_cache(user, basket) -> None:
    first = execute(submit(user))
    reordered = submit(user, instruments=list(reversed(SYMBOLS)))
    other = submit(user, allocation="signal")
    assert not reordered.cache_hit and not other.cache_hit
    assert len({first.params_hash, reordered.params_hash, other.params_hash}) == 3


def test_a_failure_midway_leaves_the_run_failed_with_nothing_saved(
    user, basket, monkeypatch
) -> None:
    run = submit(user)

    def broken_artifact_save(**kwargs):  # type: ignore[no-untyped-def]
        # The trades are already inserted by now: they must be rolled back with the rest.
        assert PortfolioTrade.objects.filter(run=run).exists()
        raise OSError("disk full")

    monkeypatch.setattr(execution, "artifact_save", broken_artifact_save)
    run = execute(run)
    assert run.status == RunStatus.FAILED
    assert "disk full" in run.error
    assert not PortfolioTrade.objects.filter(run=run).exists()
    assert not Artifact.objects.filter(params_hash=run.params_hash).exists()
    assert not CachedResult.objects.filter(kind="portfolio", params_hash=run.params_hash).exists()
    assert run.metrics == {}


def test_an_engine_error_is_a_readable_failure(user, basket, monkeypatch) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("engine exploded")

    run = submit(user)
    monkeypatch.setattr(execution, "run_portfolio", boom)
    run = execute(run)
    assert run.status == RunStatus.FAILED
    assert "engine exploded" in run.error
    assert not PortfolioTrade.objects.filter(run=run).exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instruments": ["AAAUSDT", "NOPE"]}, "instruments"),
        ({"instruments": ["AAAUSDT"]}, "instruments"),
        ({"instruments": ["AAAUSDT", "AAAUSDT"]}, "instruments"),
        ({"allocation": "fixed", "weights": {"AAAUSDT": 0.5, "ZZZ": 0.2}}, "weights"),
        ({"allocation": "fixed", "weights": {"AAAUSDT": 0.7, "BBBUSDT": 0.6}}, "weights"),
        ({"allocation": "fixed"}, "weights"),
        ({"weights": {"AAAUSDT": 0.5}}, "weights"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"parameters": {"fast": 30, "slow": 20}}, "parameters"),
        ({"parameters": {"nope": 1}}, "parameters"),
        ({"allocation": "best"}, "allocation"),
        ({"rebalance": "hourly"}, "rebalance"),
        ({"max_positions": 0}, "max_positions"),
        ({"drift_threshold": Decimal("1.5")}, "drift_threshold"),
        ({"fee_rate": Decimal("-0.1")}, "fee_rate"),
        ({"initial_capital": Decimal("0")}, "initial_capital"),
        ({"timeframe": "7h"}, "timeframe"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(user, basket, changes, field) -> None:
    with pytest.raises(BacktestInputError) as caught:
        submit(user, **changes)
    assert field in caught.value.errors, caught.value.errors
    assert not PortfolioRun.objects.exists()


def test_an_end_before_the_start_is_refused(user, basket) -> None:
    from tests.backtests.conftest import END, T0

    with pytest.raises(BacktestInputError) as caught:
        submit(user, start=END, end=T0)
    assert "end" in caught.value.errors


def test_fixed_weights_reach_the_engine(user, basket) -> None:
    run = execute(submit(user, allocation="fixed", weights={"BBBUSDT": 0.25, "AAAUSDT": 0.5}))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert list(run.weights) == ["AAAUSDT", "BBBUSDT"]  # in the instruments' order
    expected = engine_result(run)
    assert selectors.equity_frame(run)["equity"].iloc[-1] == pytest.approx(
        float(expected.equity.iloc[-1]), rel=1e-12
    )


def test_changed_candles_of_any_one_instrument_miss_the_cache(user, basket) -> None:
    first = execute(submit(user))
    last = basket[1].candles.order_by("-ts").first()
    last.close = last.close * 1.01
    last.high = max(last.high, last.close)
    last.save()
    again = submit(user)
    assert not again.cache_hit and again.params_hash != first.params_hash


def test_the_engines_config_errors_are_field_errors_and_create_nothing(
    user, basket, monkeypatch
) -> None:
    from backtests.engine import InvalidConfigError

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise InvalidConfigError({"rebalance": ["Not on this calendar."]})

    monkeypatch.setattr(portfolio_settings, "run_portfolio", refuse)
    with pytest.raises(BacktestInputError) as caught:
        submit(user)
    assert caught.value.errors == {"rebalance": ["Not on this calendar."]}
    assert not PortfolioRun.objects.exists()
