"""Portfolio backtests: several instruments traded by one strategy kind with shared cash.

A run snapshots everything that determined its result (kind, parameters, instruments in
order, range, costs, allocation), so it always means what it computed. Its trades are
engine output stored as Decimal, like every amount of money in the database.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from backtests.models import RunStatus
from marketdata.timeframes import timeframe_choices


class Allocation(models.TextChoices):
    """How signals become target weights; the engine's ALLOCATIONS."""

    EQUAL = "equal", "Equal weight"
    FIXED = "fixed", "Fixed weights"
    SIGNAL = "signal", "Proportional to signal"


class Rebalance(models.TextChoices):
    """When holdings are brought back to their targets; the engine's REBALANCES."""

    CHANGE = "change", "When the targets change"
    DAILY = "1d", "Daily"
    WEEKLY = "1w", "Weekly"
    MONTHLY = "1M", "Monthly"


class PortfolioRun(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portfolio_runs"
    )
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=40)
    parameters = models.JSONField(default=dict, blank=True)
    instruments = models.ManyToManyField(
        "marketdata.Instrument", through="PortfolioInstrument", related_name="+"
    )
    timeframe = models.CharField(max_length=8, choices=timeframe_choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    initial_capital = models.DecimalField(max_digits=20, decimal_places=2)
    fee_rate = models.DecimalField(max_digits=8, decimal_places=6)
    slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    allocation = models.CharField(
        max_length=8, choices=Allocation.choices, default=Allocation.EQUAL
    )
    weights = models.JSONField(
        null=True, blank=True, help_text="Symbol to weight, for the fixed allocation"
    )
    max_positions = models.PositiveIntegerField(null=True, blank=True)
    rebalance = models.CharField(max_length=8, choices=Rebalance.choices, default=Rebalance.CHANGE)
    drift_threshold = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0, help_text="Percent done, 0 to 100")
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    bars = models.PositiveIntegerField(default=0)
    params_hash = models.CharField(max_length=64, db_index=True)
    cache_hit = models.BooleanField(default=False)
    # A cache hit shares the trades and curves of the run that computed the result.
    shared_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="shared_by"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="portfolio_owner_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=F("start")),
                name="portfolio_range_ordered",
                violation_error_message="End must be after start.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values),
                name="portfolio_status_valid",
                violation_error_message="Status is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100),
                name="portfolio_progress_range",
                violation_error_message="Progress must be between 0 and 100.",
            ),
            models.CheckConstraint(
                condition=Q(initial_capital__gt=0),
                name="portfolio_capital_positive",
                violation_error_message="Initial capital must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(allocation__in=Allocation.values),
                name="portfolio_allocation_valid",
                violation_error_message="Allocation is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=Q(rebalance__in=Rebalance.values),
                name="portfolio_rebalance_valid",
                violation_error_message="Rebalance is not one of the allowed choices.",
            ),
        ]

    def __str__(self) -> str:
        return f"Portfolio #{self.pk} {self.name or self.kind} ({self.status})"


class PortfolioInstrument(models.Model):
    """One instrument of a run, at its place in the run's order (ties go to the earlier)."""

    portfolio = models.ForeignKey(PortfolioRun, on_delete=models.CASCADE, related_name="members")
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="portfolio_members"
    )
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["portfolio_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["portfolio", "instrument"],
                name="portfolio_instrument_once",
                violation_error_message="An instrument is listed once per portfolio.",
            ),
            models.UniqueConstraint(
                fields=["portfolio", "position"],
                name="portfolio_instrument_position_once",
                violation_error_message="Each place in a portfolio's order holds one instrument.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.portfolio_id}#{self.position}: {self.instrument_id}"


class PortfolioTrade(models.Model):
    """One simulated round trip of one instrument of a run (engine output, long-only)."""

    run = models.ForeignKey(PortfolioRun, on_delete=models.CASCADE, related_name="trades")
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="portfolio_trades"
    )
    side = models.CharField(max_length=5)
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField()
    entry_price = models.DecimalField(max_digits=30, decimal_places=10)
    exit_price = models.DecimalField(max_digits=30, decimal_places=10)
    quantity = models.DecimalField(max_digits=38, decimal_places=18)
    pnl = models.DecimalField(max_digits=30, decimal_places=8)
    pnl_pct = models.FloatField()
    fees = models.DecimalField(max_digits=30, decimal_places=8)
    exit_reason = models.CharField(max_length=12)
    is_open = models.BooleanField(default=False)

    class Meta:
        ordering = ["run_id", "entry_time", "id"]
        indexes = [models.Index(fields=["run", "entry_time"], name="pf_trade_run_time")]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0),
                name="pf_trade_quantity_positive",
                violation_error_message="Quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(side__in=["long", "short"]),
                name="pf_trade_side_valid",
                violation_error_message="Side must be long or short.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.entry_time:%Y-%m-%d %H:%M} ({self.exit_reason})"
