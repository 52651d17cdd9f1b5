"""`/metrics`: who may scrape it, and that the domain figures match what the database holds."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from backtests.models import BacktestRun, RunStatus, Sweep
from config.serve import free_port, start_embedded_redis
from persistence.checkpoints import checkpoint_write
from persistence.models import Checkpoint, Event
from persistence.services import cache_lookup, cache_store
from tests.factories import InstrumentFactory
from trading.services import fill_record, order_submit

pytestmark = pytest.mark.django_db

URL = "/metrics"
ELSEWHERE = "203.0.113.7"  # TEST-NET-3: never in the default allow-list
T0 = datetime(2024, 1, 1, tzinfo=UTC)
_ids = count(1)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client, **extra) -> Samples:  # type: ignore[no-untyped-def]
    response = client.get(URL, **extra)
    assert response.status_code == 200, response.content
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def _run(strategy_owner, instrument, status: str, *, seconds: float | None, **extra) -> BacktestRun:  # type: ignore[no-untyped-def]
    started = T0 if seconds is not None else None
    finished = T0 + timedelta(seconds=seconds) if seconds is not None else None
    return BacktestRun.objects.create(
        owner=strategy_owner,
        kind="sma_cross",
        instrument=instrument,
        timeframe="1h",
        start=T0,
        end=T0 + timedelta(days=1),
        initial_capital=10_000,
        fee_rate=0,
        params_hash=f"{next(_ids):064d}",
        status=status,
        started_at=started,
        finished_at=finished,
        **extra,
    )


# --- Who may scrape -------------------------------------------------------------------


def test_metrics_are_forbidden_from_an_address_not_allowed_without_a_token(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get(URL, REMOTE_ADDR=ELSEWHERE).status_code == 403
    wrong = client.get(URL, REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION="Bearer not-the-secret")
    assert wrong.status_code == 403
    basic = client.get(URL, REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION="Basic scrape-secret")
    assert basic.status_code == 403


def test_the_bearer_token_opens_metrics_from_any_address(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    response = client.get(URL, REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_an_empty_token_setting_opens_nothing(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(URL, REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_loopback_is_allowed_by_default_and_the_allow_list_takes_networks(client, settings):
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get(URL, REMOTE_ADDR="::1").status_code == 200
    settings.METRICS_ALLOW = ["10.0.0.0/8", "192.0.2.1", "not-an-address"]
    assert client.get(URL, REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get(URL, REMOTE_ADDR="192.0.2.1").status_code == 200
    assert client.get(URL, REMOTE_ADDR="::ffff:10.1.1.1").status_code == 200
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get(URL, REMOTE_ADDR="192.0.2.2").status_code == 403


def test_a_proxied_request_is_not_let_in_by_its_proxys_address(client):
    response = client.get(URL, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=ELSEWHERE)
    assert response.status_code == 403


def test_metrics_answer_only_reads(client):
    assert client.post(URL).status_code == 405


# --- What it exports ------------------------------------------------------------------


def test_request_and_database_metrics_come_from_django_prometheus(client):
    client.get("/health")
    samples = scrape(client)
    assert value(samples, "django_http_requests_total_by_method_total", method="GET") >= 1
    assert any(name == "django_db_execute_total" for name in names(samples))


def test_each_recorded_fill_moves_the_fill_total(client, user, instrument):
    before = value(scrape(client), "tradelab_fills_total")
    order = order_submit(
        owner=user,
        instrument=instrument,
        side="buy",
        quantity=Decimal("3"),
        client_order_id="metrics-1",
    ).order
    for minute in range(3):
        fill_record(
            order=order,
            venue_trade_id=f"metrics-v{minute}",
            quantity=Decimal("1"),
            price=Decimal("100"),
            ts=T0 + timedelta(minutes=minute),
        )
    assert value(scrape(client), "tradelab_fills_total") == before + 3


def test_runs_and_sweeps_are_counted_by_status(client, user):
    instrument = InstrumentFactory()
    _run(user, instrument, RunStatus.SUCCEEDED, seconds=10)
    _run(user, instrument, RunStatus.SUCCEEDED, seconds=20)
    _run(user, instrument, RunStatus.FAILED, seconds=5)
    _run(user, instrument, RunStatus.QUEUED, seconds=None)
    Sweep.objects.create(
        owner=user,
        kind="sma_cross",
        instrument=instrument,
        timeframe="1h",
        start=T0,
        end=T0 + timedelta(days=1),
        initial_capital=10_000,
        fee_rate=0,
        status=RunStatus.RUNNING,
    )
    samples = scrape(client)
    assert value(samples, "tradelab_backtest_runs", status="succeeded") == 2
    assert value(samples, "tradelab_backtest_runs", status="failed") == 1
    assert value(samples, "tradelab_backtest_runs", status="queued") == 1
    assert value(samples, "tradelab_backtest_runs", status="cancelled") == 0
    assert value(samples, "tradelab_sweeps", status="running") == 1
    assert value(samples, "tradelab_sweeps", status="succeeded") == 0
    # No study model exists yet, so no studies family: a hook, not a made-up zero.
    assert not any(name.startswith("tradelab_studies") for name in names(samples))


def test_a_finished_run_lands_in_the_bucket_of_its_duration(client, user):
    instrument = InstrumentFactory()
    _run(user, instrument, RunStatus.SUCCEEDED, seconds=90)
    _run(user, instrument, RunStatus.FAILED, seconds=3)
    # Neither ran anything to time: a cache hit and a run still queued.
    _run(user, instrument, RunStatus.SUCCEEDED, seconds=0, cache_hit=True)
    _run(user, instrument, RunStatus.QUEUED, seconds=None)
    samples = scrape(client)
    bucket = "tradelab_backtest_run_duration_seconds_bucket"
    assert value(samples, bucket, status="succeeded", le="60.0") == 0
    assert value(samples, bucket, status="succeeded", le="120.0") == 1
    assert value(samples, bucket, status="succeeded", le="+Inf") == 1
    assert value(samples, "tradelab_backtest_run_duration_seconds_sum", status="succeeded") == 90
    assert value(samples, "tradelab_backtest_run_duration_seconds_count", status="succeeded") == 1
    assert value(samples, bucket, status="failed", le="1.0") == 0
    assert value(samples, bucket, status="failed", le="5.0") == 1
    assert value(samples, "tradelab_backtest_run_duration_seconds_count", status="cancelled") == 0


def test_cache_hits_and_misses_match_the_cache(client):
    for params_hash in ("a" * 64, "b" * 64):
        cache_store(kind="backtest", params_hash=params_hash, content=b"{}", format="json")
    cache_store(kind="candles", params_hash="c" * 64, content=b"12345", format="json")
    for _ in range(3):
        assert cache_lookup(kind="backtest", params_hash="a" * 64) is not None
    assert cache_lookup(kind="backtest", params_hash="d" * 64) is None  # stores nothing
    samples = scrape(client)
    assert value(samples, "tradelab_cache_hits_total", kind="backtest") == 3
    assert value(samples, "tradelab_cache_misses_total", kind="backtest") == 2
    assert value(samples, "tradelab_cache_hits_total", kind="candles") == 0
    assert value(samples, "tradelab_cache_misses_total", kind="candles") == 1
    assert value(samples, "tradelab_cache_size_bytes", kind="candles") == 5


def test_the_event_log_head_follows_appended_events(client, user, instrument):
    order_submit(
        owner=user,
        instrument=instrument,
        side="buy",
        quantity=Decimal("1"),
        client_order_id="metrics-events",
    )
    newest = Event.objects.order_by("-seq").values_list("seq", flat=True).first()
    assert newest is not None
    assert value(scrape(client), "tradelab_event_log_head_seq") == newest


def test_the_checkpoint_age_and_lag_are_reported_once_there_is_a_checkpoint(
    client, user, instrument
):
    assert "tradelab_ledger_checkpoint_age_seconds" not in names(scrape(client))
    order_submit(
        owner=user, instrument=instrument, side="buy", quantity=Decimal("1"), client_order_id="c1"
    )
    checkpoint_write(witnesses=[], at=timezone.now() - timedelta(minutes=5))
    samples = scrape(client)
    assert 300 <= value(samples, "tradelab_ledger_checkpoint_age_seconds") < 330
    assert value(samples, "tradelab_ledger_checkpoint_lag_events") == 0
    order_submit(
        owner=user, instrument=instrument, side="buy", quantity=Decimal("1"), client_order_id="c2"
    )
    appended = Event.objects.filter(seq__gt=Checkpoint.objects.get().seq).count()
    assert appended > 0
    assert value(scrape(client), "tradelab_ledger_checkpoint_lag_events") == appended


def test_an_unreachable_broker_is_reported_down_and_the_rest_still_answers(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    samples = scrape(client)
    assert value(samples, "tradelab_broker_up") == 0
    assert not any(name == "tradelab_celery_queue_length" for name in names(samples))
    assert "tradelab_fills_total" in names(samples)
    assert value(samples, "tradelab_metrics_errors") == 0


def test_a_broker_that_never_answers_is_reported_down_after_the_timeout(client, settings):
    """A Redis that accepts connections and says nothing: the scrape does not hang on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed when the test ends
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    settings.METRICS_BROKER_TIMEOUT = 0.2
    try:
        assert value(scrape(client), "tradelab_broker_up") == 0
    finally:
        listener.close()
        for connection in accepted:
            connection.close()
    assert len(accepted) == 1


def test_an_in_memory_broker_reports_no_broker_figures(client, settings):
    settings.CELERY_BROKER_URL = "memory://"
    assert not any(name.startswith("tradelab_broker") for name in names(scrape(client)))


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    proc, url = start_embedded_redis(tmp_path / "redis")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_queue_length_counts_waiting_task_messages_of_every_priority(
    client, settings, redis_url
):
    from config.celery import app

    settings.CELERY_BROKER_URL = redis_url
    with app.connection_for_write(redis_url) as connection:
        for priority in (None, None, 9):
            app.send_task("backtests.tasks.reap_stale", connection=connection, priority=priority)
    samples = scrape(client)
    assert value(samples, "tradelab_broker_up") == 1
    assert value(samples, "tradelab_celery_queue_length", queue="celery") == 3


def test_a_source_that_fails_is_left_out_and_counted_never_a_500(client, monkeypatch):
    from config import metrics

    def broken() -> dict[str, object]:
        raise RuntimeError("cache table unreadable")

    monkeypatch.setattr(metrics, "cache_stats", broken)
    samples = scrape(client)
    assert value(samples, "tradelab_metrics_errors") == 1
    assert not any(name.startswith("tradelab_cache") for name in names(samples))
    assert "tradelab_fills_total" in names(samples)
