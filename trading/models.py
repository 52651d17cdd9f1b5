"""The trading ledger: orders, fills, positions, round-trip trades and their rollups.

Ledger money and quantities are `NUMERIC` (Decimal).
Invariants that must never break live in the database as constraints, not only in Python.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketdata.models import PRICE, QTY, DecimalSpec, Instrument

MONEY: DecimalSpec = {"max_digits": 38, "decimal_places": 18}


def _in(field: str, choices: type[models.TextChoices]) -> Q:
    return Q(**{f"{field}__in": choices.values})


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"


class TimeInForce(models.TextChoices):
    GTC = "gtc", "Good till cancelled"
    IOC = "ioc", "Immediate or cancel"
    FOK = "fok", "Fill or kill"
    DAY = "day", "Day"


class OrderStatus(models.TextChoices):
    NEW = "new", "New"
    ACCEPTED = "accepted", "Accepted"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


class OrderSource(models.TextChoices):
    MANUAL = "manual", "Manual"
    API = "api", "API"
    PAPER = "paper", "Paper"
    BACKTEST = "backtest", "Backtest"


class PositionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Direction(models.TextChoices):
    LONG = "long", "Long"
    SHORT = "short", "Short"


class TradeStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class ExitReason(models.TextChoices):
    SIGNAL = "signal", "Signal"
    STOP = "stop", "Stop"
    TARGET = "target", "Target"
    REVERSAL = "reversal", "Reversal"
    MANUAL = "manual", "Manual"
    END = "end", "End"


class Order(models.Model):
    Type = OrderType
    TimeInForce = TimeInForce
    Status = OrderStatus
    Source = OrderSource
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=8, choices=Type.choices, default=Type.MARKET)
    quantity = models.DecimalField(**QTY)
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    time_in_force = models.CharField(
        max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    client_order_id = models.CharField(max_length=64)
    filled_quantity = models.DecimalField(**QTY, default=0)
    filled_notional = models.DecimalField(
        **MONEY, default=0, help_text="Exact sum of quantity x price over the order's fills"
    )
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at", "-id"], name="order_owner_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "client_order_id"],
                name="order_client_id_unique_per_owner",
                violation_error_message="This client order id is already used.",
            ),
            # The target of the fills' (order, owner) foreign key on PostgreSQL.
            models.UniqueConstraint(
                fields=["id", "owner"],
                name="order_id_owner_key",
                violation_error_message="An order with this id and owner already exists.",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0),
                name="order_quantity_positive",
                violation_error_message="Quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                name="order_filled_within_quantity",
                violation_error_message="Filled quantity must be between 0 and the quantity.",
            ),
            models.CheckConstraint(
                condition=_in("side", Side),
                name="order_side_valid",
                violation_error_message="Side is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=_in("order_type", OrderType),
                name="order_type_valid",
                violation_error_message="Order type is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=_in("status", OrderStatus),
                name="order_status_valid",
                violation_error_message="Status is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=_in("source", OrderSource),
                name="order_source_valid",
                violation_error_message="Source is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=_in("time_in_force", TimeInForce),
                name="order_tif_valid",
                violation_error_message="Time in force is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=~Q(order_type="limit") | Q(limit_price__isnull=False),
                name="order_limit_has_price",
                violation_error_message="A limit order needs a limit price.",
            ),
            models.CheckConstraint(
                condition=~Q(order_type="stop") | Q(stop_price__isnull=False),
                name="order_stop_has_price",
                violation_error_message="A stop order needs a stop price.",
            ),
            models.CheckConstraint(
                condition=(Q(limit_price__isnull=True) | Q(limit_price__gt=0))
                & (Q(stop_price__isnull=True) | Q(stop_price__gt=0)),
                name="order_prices_positive",
                violation_error_message="Limit and stop prices must be greater than zero.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.instrument_id} ({self.client_order_id})"

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity


class Fill(models.Model):
    # On PostgreSQL one foreign key covers both columns: (order_id, owner_id) must be an
    # order's (id, owner_id) (migration 0006 adds it). That checks what two single-column
    # keys checked, and more: a fill's owner is its order's owner. It is also one check per
    # fill instead of two, which is a fifth of what a bulk ingest's commit costs.
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="fills", db_constraint=False
    )
    # Denormalised from the order so the venue trade id can be unique per owner in the database.
    # No index of its own: the unique (owner, venue_trade_id) and (owner, ts) indexes lead
    # with it, and one index fewer is one write fewer per fill ingested.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="fills",
        db_index=False,
        db_constraint=False,
    )
    venue_trade_id = models.CharField(max_length=100)
    quantity = models.DecimalField(**QTY)
    price = models.DecimalField(**PRICE)
    fee = models.DecimalField(**MONEY, default=0)
    ts = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [models.Index(fields=["owner", "-ts", "-id"], name="fill_owner_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "venue_trade_id"],
                name="fill_venue_id_unique_per_owner",
                violation_error_message="This owner already has a fill with this venue trade id.",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0),
                name="fill_quantity_positive",
                violation_error_message="Quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0),
                name="fill_price_positive",
                violation_error_message="Price must be greater than zero.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.venue_trade_id}: {self.quantity} @ {self.price}"


class Position(models.Model):
    """One position's life, from the fill that opens it to the fill that flattens it.

    A fill crossing through zero closes this row and opens a new one on the other side,
    so at most one row per (owner, strategy, instrument) is open at a time.
    """

    Status = PositionStatus
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="positions"
    )
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="positions",
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions")
    quantity = models.DecimalField(**QTY, default=0, help_text="Signed: negative is short")
    avg_entry_price = models.DecimalField(**PRICE, default=0)
    realized_pnl = models.DecimalField(**MONEY, default=0)
    fees_paid = models.DecimalField(**MONEY, default=0)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OPEN)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "status", "-opened_at"], name="position_owner_status")
        ]
        constraints = [
            models.CheckConstraint(
                condition=_in("status", PositionStatus),
                name="position_status_valid",
                violation_error_message="Status is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | (Q(quantity=0) & Q(closed_at__isnull=False)),
                name="position_closed_is_flat",
                violation_error_message="A closed position must be flat and have a closing time.",
            ),
            # NULL strategies are distinct in a unique index, so the manual (strategy-less)
            # book gets its own partial constraint.
            models.UniqueConstraint(
                fields=["owner", "strategy", "instrument"],
                condition=Q(status="open") & Q(strategy__isnull=False),
                name="position_one_open_per_strategy",
                violation_error_message="An open position for this strategy and instrument exists.",
            ),
            models.UniqueConstraint(
                fields=["owner", "instrument"],
                condition=Q(status="open") & Q(strategy__isnull=True),
                name="position_one_open_manual",
                violation_error_message="A manual position in this instrument is already open.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.quantity} ({self.status})"


class Trade(models.Model):
    """A round trip: an entry and, once closed, the exit that flattened it."""

    Direction = Direction
    Status = TradeStatus
    ExitReason = ExitReason
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trades"
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="trades")
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="trades",
    )
    position = models.ForeignKey(
        Position, on_delete=models.PROTECT, null=True, blank=True, related_name="trades"
    )
    direction = models.CharField(max_length=5, choices=Direction.choices)
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField(null=True, blank=True)
    entry_price = models.DecimalField(**PRICE)
    exit_price = models.DecimalField(**PRICE, null=True, blank=True)
    quantity = models.DecimalField(**QTY)
    pnl = models.DecimalField(**MONEY, default=0)
    pnl_pct = models.DecimalField(max_digits=20, decimal_places=8, default=0)
    fees = models.DecimalField(**MONEY, default=0)
    exit_reason = models.CharField(max_length=8, choices=ExitReason.choices, blank=True)
    status = models.CharField(max_length=6, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-entry_time", "-id"]
        indexes = [
            models.Index(fields=["owner", "-entry_time", "-id"], name="trade_owner_recent"),
            models.Index(fields=["owner", "status", "-exit_time"], name="trade_owner_closed"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0),
                name="trade_quantity_positive",
                violation_error_message="Quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(entry_price__gt=0),
                name="trade_entry_positive",
                violation_error_message="Entry price must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=_in("direction", Direction),
                name="trade_direction_valid",
                violation_error_message="Direction is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=_in("status", TradeStatus),
                name="trade_status_valid",
                violation_error_message="Status is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed")
                | (Q(exit_time__isnull=False) & Q(exit_price__isnull=False)),
                name="trade_closed_has_exit",
                violation_error_message="A closed trade needs an exit time and an exit price.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.quantity} {self.instrument_id} ({self.status})"


class _StreakSummary(models.Model):
    """The runs of one day's closed trades in exit order (see trading.rollups.Streaks)."""

    day = models.DateField(help_text="UTC day of the trades' exit_time")
    trades = models.PositiveIntegerField(default=0)
    first_outcome = models.SmallIntegerField(default=0, help_text="1 win, -1 loss, 0 even")
    first_run = models.PositiveIntegerField(default=0)
    last_outcome = models.SmallIntegerField(default=0)
    last_run = models.PositiveIntegerField(default=0)
    max_win_run = models.PositiveIntegerField(default=0)
    max_loss_run = models.PositiveIntegerField(default=0)
    # The newest trade in the day, by (exit_time, id): a trade that sorts before it closed
    # out of order, and the day is recomputed instead of appended to.
    last_exit_time = models.DateTimeField(null=True, blank=True)
    last_trade_id = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class TradeRollup(_StreakSummary):
    """Closed trades of one series (owner, strategy, instrument) on one UTC day.

    Maintained by the services with the trades; rebuilt by `rebuild_trade_rollups`.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    strategy = models.ForeignKey(
        "strategies.Strategy", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="+")
    wins = models.PositiveIntegerField(default=0)
    losses = models.PositiveIntegerField(default=0)
    gross_pnl = models.DecimalField(**MONEY, default=0)
    fees = models.DecimalField(**MONEY, default=0)
    net_pnl = models.DecimalField(**MONEY, default=0)
    gross_profit = models.DecimalField(**MONEY, default=0)
    gross_loss = models.DecimalField(**MONEY, default=0)
    best = models.DecimalField(**MONEY, null=True, blank=True)
    worst = models.DecimalField(**MONEY, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "day"], name="trade_rollup_owner_day")]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "strategy", "instrument", "day"],
                condition=Q(strategy__isnull=False),
                name="trade_rollup_unique_series_day",
                violation_error_message="This series already has a rollup for this day.",
            ),
            models.UniqueConstraint(
                fields=["owner", "instrument", "day"],
                condition=Q(strategy__isnull=True),
                name="trade_rollup_unique_manual_day",
                violation_error_message="This manual series already has a rollup for this day.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner_id}/{self.strategy_id}/{self.instrument_id} {self.day}"


class TradeStreakRollup(_StreakSummary):
    """The streaks of all of one owner's closed trades on one UTC day, every series together."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "day"],
                name="trade_streak_unique_owner_day",
                violation_error_message="This owner already has a streak rollup for this day.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.day}: {self.trades} trades"


class PositionHead(models.Model):
    """The newest state of one position stream: what its next fill is applied to.

    A projection of the stream's events, written in the same transaction as them, like
    the position rows. `version` is the stream version it reflects; a head that is not at
    the stream's version (missing, or written before this table existed) is ignored and
    the state is replayed from the newest snapshot and the events after it instead.
    """

    stream = models.CharField(max_length=200, primary_key=True)
    version = models.PositiveIntegerField()
    state = models.JSONField(help_text="PositionState.to_json() after event `version`")
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.stream}@{self.version}"
