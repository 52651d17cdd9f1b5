"""`GET /metrics`: Prometheus metrics for operators, allowed with `METRICS_TOKEN` or from an
address in `METRICS_ALLOW`.

django-prometheus counts the requests and queries of the process that answers. Everything
else (fills, runs, the cache, the broker's queues, the event log) is read from the database
and the broker at scrape time, so any one web process gives the same, whole answer however
many web and worker processes there are.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from functools import lru_cache
from typing import Any

import redis
from django.apps import apps
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Model, Q, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from redis.backoff import NoBackoff
from redis.retry import Retry

from backtests.models import FINISHED_STATUSES, BacktestRun, RunStatus, Sweep
from persistence.checkpoints import checkpoint_latest
from persistence.models import Event
from persistence.selectors import cache_stats
from trading.models import Fill

logger = logging.getLogger(__name__)

# Upper bounds, in seconds, of the run-duration histogram's buckets (+Inf is added).
RUN_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)

# Where a study model would live once studies exist (see study_model()).
STUDY_MODEL = "backtests.Study"

# kombu's Redis transport keeps a queue's prioritised messages in sibling lists named
# queue + separator + step (priority 0 in the queue's own list); a queue's depth is their sum.
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
_KOMBU_PRIORITY_SEPARATOR = "\x06\x16"


class TradelabCollector:
    """The domain's figures, computed per scrape with a few aggregate queries.

    A source that fails is logged and left out of that scrape (and counted in
    `tradelab_metrics_errors`): a scrape never fails because one figure could not be read.
    """

    def collect(self) -> Iterator[Metric]:
        sources: tuple[Callable[[], Iterable[Metric]], ...] = (
            _fills,
            _job_statuses,
            _run_durations,
            _cache,
            _broker,
            _event_log,
        )
        errors = 0
        for source in sources:
            try:
                # Whole families only: a source that fails halfway yields nothing.
                families = list(source())
            except Exception:  # one unreadable figure must not cost the whole scrape
                logger.exception("metrics: %s failed", source.__name__)
                errors += 1
                continue
            yield from families
        yield GaugeMetricFamily(
            "tradelab_metrics_errors",
            "Sources that could not be read in this scrape (the log says why).",
            value=errors,
        )


def _fills() -> Iterator[Metric]:
    yield CounterMetricFamily(
        "tradelab_fills", "Fills recorded in the ledger.", value=Fill.objects.count()
    )


def _status_counts(model: type[Model]) -> dict[str, int]:
    # Every status is reported, zeros too, so a series drops to 0 rather than vanishing.
    counts = dict.fromkeys(RunStatus.values, 0)
    rows = model._default_manager.order_by().values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def study_model() -> type[Model] | None:
    """The hook for studies (optimisations, walk-forwards, ML backtests): none exists yet.

    Once backtests has a `Study` model with a RunStatus `status`, `tradelab_studies` is
    exported by status like runs and sweeps; until then the family is left out.
    """
    try:
        return apps.get_model(STUDY_MODEL)
    except LookupError:
        return None


def _job_statuses() -> Iterator[Metric]:
    jobs: list[tuple[str, str, type[Model] | None]] = [
        ("tradelab_backtest_runs", "Backtest runs by status.", BacktestRun),
        ("tradelab_sweeps", "Parameter sweeps by status.", Sweep),
        ("tradelab_studies", "Studies by status.", study_model()),
    ]
    for name, documentation, model in jobs:
        if model is None:
            continue
        family = GaugeMetricFamily(name, documentation, labels=["status"])
        for status, n in _status_counts(model).items():
            family.add_metric([status], n)
        yield family


def _run_durations() -> Iterator[Metric]:
    """Finished runs' durations (finished_at - started_at) by status, bucketed by the database.

    Cache hits are left out: they ran nothing, and their zero durations would bury the rest.
    """
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    buckets = {
        f"le_{index}": Count(
            "pk", filter=Q(finished_at__lte=F("started_at") + timedelta(seconds=bound))
        )
        for index, bound in enumerate(RUN_DURATION_BUCKETS)
    }
    rows = (
        BacktestRun.objects.filter(
            status__in=FINISHED_STATUSES,
            cache_hit=False,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by()
        .values("status")
        .annotate(runs=Count("pk"), seconds=Sum(duration), **buckets)
    )
    by_status: dict[str, dict[str, Any]] = {row["status"]: dict(row) for row in rows}
    family = HistogramMetricFamily(
        "tradelab_backtest_run_duration_seconds",
        "Time from start to finish of executed backtest runs, by final status.",
        labels=["status"],
    )
    for status in FINISHED_STATUSES:
        row = by_status.get(status, {})
        cumulative = [
            (floatToGoString(bound), float(row.get(f"le_{index}", 0)))
            for index, bound in enumerate(RUN_DURATION_BUCKETS)
        ]
        cumulative.append(("+Inf", float(row.get("runs", 0))))
        seconds = row.get("seconds") or timedelta(0)
        family.add_metric([status], cumulative, sum_value=seconds.total_seconds())
    yield family


def _cache() -> Iterator[Metric]:
    stats = cache_stats()
    hits = CounterMetricFamily(
        "tradelab_cache_hits",
        "Result-cache lookups answered from the cache, by kind (purged entries leave the sum).",
        labels=["kind"],
    )
    misses = CounterMetricFamily(
        "tradelab_cache_misses",
        "Result-cache misses, by kind: each stored entry was stored after one miss.",
        labels=["kind"],
    )
    size = GaugeMetricFamily(
        "tradelab_cache_size_bytes", "Bytes held by the result cache, by kind.", labels=["kind"]
    )
    for kind, row in stats["by_kind"].items():
        hits.add_metric([kind], row["hits"])
        misses.add_metric([kind], row["entries"])
        size.add_metric([kind], row["size_bytes"])
    yield from (hits, misses, size)


def _broker() -> Iterator[Metric]:
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return  # an in-memory or foreign broker: no queues another process could see
    up = GaugeMetricFamily("tradelab_broker_up", "1 if the Redis broker answered this scrape.")
    try:
        lengths = _queue_lengths(url)
    except Exception as exc:  # unreachable, refused, timed out, bad URL: reported as down
        logger.warning("metrics: broker unreachable: %s: %s", type(exc).__name__, exc)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    depth = GaugeMetricFamily(
        "tradelab_celery_queue_length",
        "Messages waiting in a Celery queue on the broker (taken by no worker yet).",
        labels=["queue"],
    )
    for queue, length in lengths.items():
        depth.add_metric([queue], length)
    yield depth


def _queue_names() -> list[str]:
    from config.celery import app

    names = [app.conf.task_default_queue]
    names += [queue.name for queue in app.conf.task_queues or ()]
    return list(dict.fromkeys(names))


def _queue_lengths(url: str) -> dict[str, int]:
    """LLEN of each configured queue's lists, in one round trip bounded by a short timeout."""
    options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    prefix: str = options.get("global_keyprefix", "")
    steps: tuple[int, ...] = tuple(options.get("priority_steps", _KOMBU_PRIORITY_STEPS))
    separator: str = options.get("sep", _KOMBU_PRIORITY_SEPARATOR)
    timeout = settings.METRICS_BROKER_TIMEOUT
    queues = _queue_names()
    # One attempt: redis-py retries a failed connection (with back-off) unless told not to.
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        pipeline = client.pipeline(transaction=False)
        for queue in queues:
            for step in steps:
                pipeline.llen(f"{prefix}{queue}{separator}{step}" if step else f"{prefix}{queue}")
        lengths: list[Any] = pipeline.execute()
    finally:
        client.close()
    per_queue = len(steps)
    return {
        queue: sum(int(n) for n in lengths[i * per_queue : (i + 1) * per_queue])
        for i, queue in enumerate(queues)
    }


def _event_log() -> Iterator[Metric]:
    # The log is append-only, so its highest sequence number counts the events appended
    # (give or take numbers a rolled-back transaction used); an index lookup, not a count.
    head = Event.objects.aggregate(head=Max("seq"))["head"] or 0
    yield GaugeMetricFamily(
        "tradelab_event_log_head_seq",
        "Sequence number of the newest ledger event (0 while the log is empty).",
        value=head,
    )
    checkpoint = checkpoint_latest()
    if checkpoint is None:
        return
    yield GaugeMetricFamily(
        "tradelab_ledger_checkpoint_age_seconds",
        "Seconds since the newest signed checkpoint of the event log's head was written.",
        value=(timezone.now() - checkpoint.created_at).total_seconds(),
    )
    yield GaugeMetricFamily(
        "tradelab_ledger_checkpoint_lag_events",
        "Sequence numbers past the newest checkpoint: events no checkpoint covers yet.",
        value=max(head - checkpoint.seq, 0),
    )


# A registry of our own, so the database is queried only when /metrics asks, never by
# whatever else reads prometheus_client's global registry.
DOMAIN_REGISTRY = CollectorRegistry(auto_describe=False)
DOMAIN_REGISTRY.register(TradelabCollector())


def _address_allowed(remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _allowed_networks(tuple(settings.METRICS_ALLOW)))


@lru_cache(maxsize=8)
def _allowed_networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            logger.warning("METRICS_ALLOW: %r is neither an IP address nor a network", entry)
    return tuple(networks)


def _bearer_token_valid(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def _proxied(request: HttpRequest) -> bool:
    # Behind a proxy, REMOTE_ADDR is the proxy's (often 127.0.0.1), not the client's.
    return any(
        header in request.headers for header in ("Forwarded", "X-Forwarded-For", "X-Real-IP")
    )


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    allowed = _bearer_token_valid(request) or (
        not _proxied(request) and _address_allowed(request.META.get("REMOTE_ADDR", ""))
    )
    if not allowed:
        return HttpResponseForbidden(
            "Metrics need a bearer token or an allowed address.\n", content_type="text/plain"
        )
    response = ExportToDjangoView(request)
    response.write(generate_latest(DOMAIN_REGISTRY))
    return response
