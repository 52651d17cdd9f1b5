"""`seed_demo`: a demo user, two instruments with candles, strategies, and a small ledger."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.models import User
from accounts.services import user_create
from marketdata.services import candles_upsert, instrument_for_symbol, random_walk_candles
from persistence.progress import progress_bar
from strategies.models import Strategy
from strategies.services import strategy_create
from trading.demo import seed_demo_ledger

DEMO_INSTRUMENTS = [("BTCUSDT", 30_000.0, 1), ("ETHUSDT", 2_000.0, 2)]
DEMO_STRATEGIES: list[dict[str, Any]] = [
    {"name": "BTC SMA 20/100", "kind": "sma_cross", "symbol": "BTCUSDT",
     "parameters": {"fast": 20, "slow": 100}, "status": Strategy.Status.ACTIVE},
    {"name": "BTC RSI reversion", "kind": "rsi_reversion", "symbol": "BTCUSDT",
     "parameters": {"window": 14, "oversold": 30, "overbought": 70},
     "status": Strategy.Status.DRAFT},
    {"name": "ETH MACD", "kind": "macd_cross", "symbol": "ETHUSDT",
     "parameters": {"fast": 12, "slow": 26, "signal": 9}, "status": Strategy.Status.PAUSED},
    {"name": "ETH Bollinger", "kind": "bollinger_reversion", "symbol": "ETHUSDT",
     "parameters": {}, "status": Strategy.Status.ACTIVE},
    {"name": "BTC Donchian", "kind": "donchian_breakout", "symbol": "BTCUSDT",
     "parameters": {"entry_window": 20, "exit_window": 10}, "status": Strategy.Status.DRAFT},
    {"name": "BTC buy & hold", "kind": "buy_and_hold", "symbol": "BTCUSDT",
     "parameters": {}, "status": Strategy.Status.ACTIVE},
]  # fmt: skip


class Command(BaseCommand):
    help = "Seed a demo user, instruments with candles, strategies, orders, fills and positions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when any user already exists."
        )
        parser.add_argument("--bars", type=int, default=5_000, help="1h candles per instrument")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and User.objects.exists():
            self.stdout.write("Database already has users; demo data not seeded.")
            return
        username = os.environ.get("DEMO_USERNAME", "demo")
        password = os.environ.get("DEMO_PASSWORD", "tradelab-demo")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"User {username!r} exists; demo data not seeded again.")
            return
        with transaction.atomic():
            user = user_create(
                username=username, password=password, email="demo@example.com", is_staff=True
            )
            instruments = {}
            for symbol, start_price, seed in DEMO_INSTRUMENTS:
                instrument = instrument_for_symbol(symbol)
                instruments[symbol] = instrument
                frame = random_walk_candles(
                    bars=options["bars"], timeframe="1h", seed=seed, start_price=start_price
                )
                with progress_bar(f"{symbol} 1h", len(frame), "bar", self.stderr) as progress:
                    candles_upsert(
                        instrument=instrument, timeframe="1h", frame=frame, progress=progress
                    )
            for spec in DEMO_STRATEGIES:
                strategy_create(
                    owner=user,
                    name=spec["name"],
                    kind=spec["kind"],
                    instrument=instruments[spec["symbol"]],
                    timeframe="1h",
                    parameters=spec["parameters"],
                    status=spec["status"],
                    initial_capital=Decimal("10000"),
                )
            seed_demo_ledger(user=user, instruments=list(instruments.values()))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data seeded. Log in at /admin/ as {username} / {password} "
                f"({len(DEMO_STRATEGIES)} strategies, {len(instruments)} instruments)."
            )
        )
