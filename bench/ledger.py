"""Benchmark of the trading ledger; prints figures, asserts nothing.

    .venv/bin/python tests/run_with_postgres.py -- .venv/bin/python bench/ledger.py \\
        [--fills 100000] [--batch 5000] [--positions 20] [--writers 1] [--same-owner] \\
        [--http-fills 300] [--trades 1000000] [--pages 500] [--rebuilds 300]

A size of 0 skips its section (--fills 0 skips 1 and 4, which replays 1's streams).

1. Bulk fill ingest through `fills_record` (the path behind POST /fills/bulk/ and
   import_fills): fills/s and event writes/s, then a check (not timed) that every position
   row equals its replay and that the chain verifies. With --writers N, N processes ingest
   at once, each --fills fills of its own positions (its own instruments, and its own owner
   unless --same-owner), and the figure is all their fills over the time from the first
   start to the last finish: the one-writer and two-writer figures show how far concurrent
   writers of the ledger get past its global chain lock.
2. Single fill over HTTP: POST /api/v1/fills/ with JWT on a local socket, client-observed
   p50/p95, to a threaded WSGI server in this process and to daphne with its connection
   pool (as `make run` serves it).
3. With --trades trades bulk-inserted by SQL (then the summary rollups rebuilt): the first
   page of a filtered GET /api/v1/trades/ and its --pages'th page (cursor), and
   GET /api/v1/trades/summary/, timed in process (the full Django stack and the database, no
   network; not the client's parsing of the body): p50. The two pages are timed in turn.
4. Position rebuild from the newest snapshot plus the tail: p50 over --rebuilds streams.

Needs DATABASE_URL (PostgreSQL); on SQLite it runs, but the figures mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PASSWORD = "bench-password-123"  # noqa: S105  (a throwaway user in a throwaway database)


def instrument_model() -> Any:
    try:
        from marketdata.models import Instrument
    except ImportError:  # a tree from before market data had its own app (A/B runs)
        from trading.models import Instrument  # type: ignore[attr-defined,no-redef]
    return Instrument


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fills", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--same-owner", action="store_true")
    parser.add_argument("--http-fills", type=int, default=300)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--rebuilds", type=int, default=300)
    args = parser.parse_args()

    _create_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    vendor = connection.vendor
    print(f"database: {vendor}" + ("" if vendor == "postgresql" else " (figures mean little)"))

    from accounts.models import User
    from strategies.models import Strategy

    Instrument = instrument_model()

    user = User.objects.create_user("bench", password=PASSWORD)
    instruments = [
        Instrument.objects.create(
            symbol=f"B{i}USDT",
            base=f"B{i}",
            quote="USDT",
            price_tick=Decimal("0.01"),
            quantity_step=Decimal("0.001"),
        )
        for i in range(max(1, args.positions // 4))
    ]
    strategies = [
        Strategy.objects.create(
            owner=user, name=f"bench {i}", kind="sma_cross", instrument=instruments[0]
        )
        for i in range(3)
    ]
    if args.writers > 1 and vendor != "postgresql":
        raise SystemExit("--writers above 1 needs PostgreSQL")
    if args.fills:
        bench_ingest(args, user, instruments, strategies)
    if args.http_fills:
        bench_http(args, user, instruments[0])
    if args.trades:
        bench_lists(args, user, instruments, strategies)
    if args.rebuilds and args.fills:
        bench_rebuild(args)


def _create_database() -> None:
    """run_with_postgres starts an empty cluster: create DATABASE_URL's database if missing."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return
    import psycopg

    head, _, name = url.rpartition("/")
    with psycopg.connect(f"{head}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def bench_ingest(args: Any, user: Any, instruments: list[Any], strategies: list[Any]) -> None:
    from persistence.events import ledger_verify
    from persistence.models import Event

    plans = [
        _ingest_plan(args, *_writer_books(args, w, user, instruments, strategies), key=f"w{w}")
        for w in range(args.writers)
    ]
    events_before = Event.objects.count()
    spans = _ingest_run(plans)
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    events = Event.objects.count() - events_before
    total = args.fills * args.writers
    writers = (
        ""
        if args.writers == 1
        else f"; {args.writers} writers at once, {args.fills} fills each, "
        + ("one owner" if args.same_owner else "one owner each")
        + ", each writer: "
        + ", ".join(f"{args.fills / (end - start):,.0f}" for start, end in spans)
        + " fills/s"
    )
    print(
        f"bulk ingest: {total} fills in {elapsed:.2f} s = {total / elapsed:,.0f} fills/s, "
        f"{events} events = {events / elapsed:,.0f} event writes/s (batches of {args.batch}"
        f"{writers})"
    )
    drifted, streams = _drifted()
    start = time.perf_counter()
    report = ledger_verify()
    verify_s = time.perf_counter() - start
    print(
        f"  exactness: {streams} positions, {drifted} differ from a full replay; "
        f"chain verify {'OK' if report.ok else 'FAILED'} over {report.events} events "
        f"in {verify_s:.2f} s"
    )


def _writer_books(
    args: Any, w: int, user: Any, instruments: list[Any], strategies: list[Any]
) -> tuple[Any, list[Any], list[Any]]:
    """Writer `w`'s owner, instruments and strategies: writer 0 has the bench's own, every
    other writer instruments of its own, and an owner of its own unless --same-owner."""
    if w == 0:
        return user, instruments, strategies
    from accounts.models import User
    from strategies.models import Strategy

    Instrument = instrument_model()

    owner = user if args.same_owner else User.objects.create_user(f"bench-w{w}")
    mine = [
        Instrument.objects.create(
            symbol=f"W{w}{i.symbol}",
            base=f"W{w}{i.base}",
            quote=i.quote,
            price_tick=i.price_tick,
            quantity_step=i.quantity_step,
        )
        for i in instruments
    ]
    books = [
        Strategy.objects.create(
            owner=owner, name=f"bench w{w} {n}", kind="sma_cross", instrument=mine[0]
        )
        for n in range(len(strategies))
    ]
    return owner, mine, books


def _ingest_plan(
    args: Any, owner: Any, instruments: list[Any], strategies: list[Any], *, key: str
) -> tuple[Any, list[list[Any]]]:
    """An owner's orders, and the batches of fills of them that one writer ingests."""
    import random

    from trading.services import FillInput, order_submit

    rng = random.Random(7)  # every writer's load has the same shape
    books = [(instrument, strategy) for instrument in instruments for strategy in strategies]
    books = books[: args.positions]
    # Two big orders per position, one each way, so fills go long, short and through zero.
    orders = []
    for n, (instrument, strategy) in enumerate(books):
        for side in ("buy", "sell"):
            orders.append(
                order_submit(
                    owner=owner,
                    instrument=instrument,
                    side=side,
                    quantity=Decimal(args.fills),
                    client_order_id=f"ingest-{key}-{n}-{side}",
                    strategy=strategy,
                ).order
            )
    fills = [
        FillInput(
            order_id=orders[rng.randrange(len(orders))].pk,
            venue_trade_id=f"{key}v{i}",
            quantity=Decimal(rng.randint(1, 2000)) / 1000,
            price=Decimal(rng.randint(9_000, 11_000)) / 100,
            ts=T0 + timedelta(seconds=i),
            fee=Decimal(rng.randint(0, 100)) / 10_000,
        )
        for i in range(args.fills)
    ]
    return owner, [fills[at : at + args.batch] for at in range(0, len(fills), args.batch)]


def _ingest_run(plans: list[tuple[Any, list[list[Any]]]]) -> list[tuple[float, float]]:
    """Run each plan's batches, one writer per plan; return each writer's (start, end).

    One plan runs in this process. Several run in as many forked processes, each with its
    own connection, started together: threads would share one interpreter lock, and the
    ingest is as much Python as database.
    """
    if len(plans) == 1:
        return [_ingest_batches(*plans[0])]
    import multiprocessing

    from django.db import connections

    connections.close_all()  # each child opens its own
    context = multiprocessing.get_context("fork")
    barrier, spans = context.Barrier(len(plans)), context.Queue()
    processes = [
        context.Process(target=_ingest_writer, args=(owner, batches, barrier, spans))
        for owner, batches in plans
    ]
    for process in processes:
        process.start()
    results = [spans.get() for _ in processes]
    for process in processes:
        process.join()
    failed = [error for _, _, error in results if error]
    if failed:
        raise RuntimeError(f"a writer failed: {failed[0]}")
    return [(start, end) for start, end, _ in results]


def _ingest_writer(owner: Any, batches: list[list[Any]], barrier: Any, spans: Any) -> None:
    from django.db import connection

    try:
        barrier.wait()
        spans.put((*_ingest_batches(owner, batches), ""))
    except BaseException as exc:
        spans.put((0.0, 0.0, repr(exc)))
    finally:
        connection.close()


def _ingest_batches(owner: Any, batches: list[list[Any]]) -> tuple[float, float]:
    from trading.services import fills_record

    start = time.time()  # one clock for every process
    for batch in batches:
        fills_record(owner=owner, fills=batch)
    return start, time.time()


def _drifted() -> tuple[int, int]:
    """How many position streams' rows differ from a full replay, of how many."""
    from persistence.models import Event

    Instrument = instrument_model()

    position_replay, position_row_for, position_streams = _replay_reads()
    from trading.services import position_drift

    streams = position_streams()
    drifted = 0
    for stream in streams:
        head = Event.objects.filter(stream=stream).order_by("-version").first()
        assert head is not None
        instrument = Instrument.objects.get(pk=head.data["instrument_id"])
        full = position_replay(stream=stream, instrument=instrument, use_snapshot=False)
        row = position_row_for(
            owner_id=head.data["owner_id"],
            strategy_id=head.data["strategy_id"],
            instrument_id=instrument.pk,
        )
        drifted += bool(position_drift(row, full.state))
    return drifted, len(streams)


def bench_http(args: Any, user: Any, instrument: Any) -> None:
    """Single fills over HTTP to two servers: a threaded WSGI server in this process (the
    figure earlier runs reported), and daphne with its connection pool, as `make run`
    serves the app. Each fill of one order, so every post locks the same rows."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    from config.serve import free_port, wait_for_port, web_command, web_env

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        label = "threaded WSGI server in the bench's process"
        _post_fills(base, label, "wsgi", args, user, instrument)
    finally:
        server.shutdown()

    port = free_port()
    daphne = subprocess.Popen(
        web_command("127.0.0.1", port),
        cwd=BASE_DIR,
        env=web_env(dict(os.environ)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port, timeout=60):
            raise RuntimeError("daphne did not start")
        label = "daphne with its connection pool, as make run serves it"
        _post_fills(f"http://127.0.0.1:{port}", label, "daphne", args, user, instrument)
    finally:
        daphne.terminate()
        daphne.wait(timeout=30)


def _post_fills(base: str, server: str, key: str, args: Any, user: Any, instrument: Any) -> None:
    from trading.services import order_submit

    def post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - a local URL
            base + path, data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request) as response:  # noqa: S310
            return dict(json.loads(response.read()))

    token = post("/api/v1/auth/token/", {"username": "bench", "password": PASSWORD})["access"]
    order = order_submit(
        owner=user,
        instrument=instrument,
        side="buy",
        quantity=Decimal(args.http_fills + 10),
        client_order_id=f"http-{key}",
    ).order
    latencies = []
    for i in range(args.http_fills + 10):
        body = {
            "order": order.pk,
            "venue_trade_id": f"http-{key}-{i}",
            "quantity": "1",
            "price": "100.00",
            "fee": "0.01",
            "ts": (T0 + timedelta(seconds=i)).isoformat(),
        }
        start = time.perf_counter()
        post("/api/v1/fills/", body, token)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies = latencies[10:]  # warm-up
    print(
        f"single fill over HTTP (JWT, local socket; {server}): p50 {p(latencies, 0.5):.1f} ms, "
        f"p95 {p(latencies, 0.95):.1f} ms over {len(latencies)} fills"
    )


def bench_lists(args: Any, user: Any, instruments: list[Any], strategies: list[Any]) -> None:
    from django.db import connection
    from rest_framework.test import APIClient

    ids = [i.pk for i in instruments]
    strategy_ids = [s.pk for s in strategies]
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO trading_trade (owner_id, instrument_id, strategy_id, direction,
                entry_time, exit_time, entry_price, exit_price, quantity, pnl, pnl_pct, fees,
                exit_reason, status, created_at, updated_at)
            SELECT %s, (%s::bigint[])[1 + g %% %s], (%s::bigint[])[1 + g %% 3],
                CASE WHEN g %% 2 = 0 THEN 'long' ELSE 'short' END,
                %s::timestamptz + g * interval '1 minute',
                %s::timestamptz + g * interval '1 minute' + interval '30 minutes',
                100, 100 + (g %% 21 - 10) / 10.0, 1,
                (g %% 21 - 10) / 10.0, (g %% 21 - 10) / 10.0, 0.01,
                'signal', 'closed', now(), now()
            FROM generate_series(1, %s) AS g
            """,
            [user.pk, ids, len(ids), strategy_ids, T0, T0, args.trades],
        )
        cursor.execute("ANALYZE trading_trade")
    print(f"inserted {args.trades:,} trades in {time.perf_counter() - start:.1f} s")
    # The trades went in by SQL, around the services that keep the summary's daily
    # rollups: rebuild them, as `rebuild_trade_rollups` would after a bulk load.
    from trading.rollups import trade_rollups_rebuild

    start = time.perf_counter()
    series_days, owner_days = trade_rollups_rebuild()
    print(
        f"  rollups rebuilt in {time.perf_counter() - start:.1f} s "
        f"({series_days:,} series-days, {owner_days:,} owner-days)"
    )

    client = APIClient()
    client.force_authenticate(user)
    symbol = instruments[0].symbol
    first_url = f"/api/v1/trades/?symbol={symbol}&status=closed&limit=100"

    def serve(url: str) -> bytes:
        # What the server does for a request, up to its rendered body: not the client's
        # parsing of it.
        response = client.get(url)
        assert response.status_code == 200, response.content[:500]
        return bytes(response.content)

    def get(url: str) -> dict[str, Any]:
        return dict(json.loads(serve(url)))

    url, page = first_url, 1
    while page < args.pages:
        following = get(url)["next"]
        if following is None:
            break  # fewer trades than pages
        url, page = following, page + 1
    # The two pages in turn, 60 times each: a burst of load on this shared machine then
    # weighs on both alike rather than on whichever was being timed.
    first, deep = [], []
    for _ in range(60):
        first += timed(lambda: serve(first_url), 1)
        deep += timed(lambda: serve(url), 1)
    print(
        f"trades list ({args.trades:,} trades, filtered by symbol+status, 100/page, in process): "
        f"first page p50 {p(first, 0.5):.1f} ms; page {page} p50 {p(deep, 0.5):.1f} ms "
        f"(ratio {p(deep, 0.5) / p(first, 0.5):.2f})"
    )
    get("/api/v1/trades/summary/")
    summary = timed(lambda: get("/api/v1/trades/summary/"), 5)
    print(
        f"trades summary over {get('/api/v1/trades/summary/')['trades']:,} trades (in process): "
        f"p50 {p(summary, 0.5):.0f} ms, min {min(summary):.0f} ms"
    )


def _replay_reads() -> tuple[Any, Any, Any]:
    """position_replay, position_row_for and position_streams, from whichever tree runs."""
    try:
        from trading import selectors

        return selectors.position_replay, selectors.position_row_for, selectors.position_streams
    except AttributeError:  # a tree from before the replays moved to selectors (A/B runs)
        from trading import services

        return services.position_replay, services.position_row_for, services.position_streams


def bench_rebuild(args: Any) -> None:
    from django.conf import settings

    Instrument = instrument_model()

    position_replay, _, position_streams = _replay_reads()

    streams = position_streams()
    instruments = {i.symbol: i for i in Instrument.objects.all()}
    samples = []
    tails = []
    for n in range(args.rebuilds):
        stream = streams[n % len(streams)]
        instrument = instruments[stream.rsplit("-", 1)[1]]
        start = time.perf_counter()
        replay = position_replay(stream=stream, instrument=instrument)
        samples.append((time.perf_counter() - start) * 1000)
        tails.append(replay.events_applied)
    print(
        f"position rebuild from snapshot + tail (snapshot every {settings.LEDGER_SNAPSHOT_EVERY}, "
        f"mean tail {statistics.mean(tails):.0f} events): p50 {p(samples, 0.5):.2f} ms, "
        f"p95 {p(samples, 0.95):.2f} ms"
    )


if __name__ == "__main__":
    main()
