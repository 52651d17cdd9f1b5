"""Backtest runs, their trades, and parameter sweeps.

A run snapshots everything that determined its result (kind, parameters, range, costs), so
editing the strategy later never changes what an old run means.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketdata.timeframes import timeframe_choices


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Sizing(models.TextChoices):
    """How big a position a target of +1 or -1 is; the engine's BacktestConfig.sizing."""

    FRACTION = "fraction", "Fraction of equity"
    FIXED_QUANTITY = "fixed_quantity", "Fixed quantity"
    FIXED_NOTIONAL = "fixed_notional", "Fixed notional"
    RISK = "risk", "Risk per trade"


class BacktestSettings(models.Model):
    """What every backtest-like job shares: the market, the range and the costs."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    strategy = models.ForeignKey(
        "strategies.Strategy", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=40)
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="+"
    )
    timeframe = models.CharField(max_length=8, choices=timeframe_choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    initial_capital = models.DecimalField(max_digits=20, decimal_places=2)
    fee_rate = models.DecimalField(max_digits=8, decimal_places=6)
    slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    size_fraction = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("1"))
    sizing = models.CharField(max_length=16, choices=Sizing.choices, default=Sizing.FRACTION)
    fixed_quantity = models.DecimalField(
        max_digits=38, decimal_places=18, null=True, blank=True, help_text="Units per position"
    )
    fixed_notional = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True, help_text="Quote per position"
    )
    risk_pct = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Percent of equity lost if the stop is hit",
    )
    fixed_fee = models.DecimalField(
        max_digits=20, decimal_places=8, default=Decimal("0"), help_text="Quote per fill"
    )
    min_fee = models.DecimalField(
        max_digits=20, decimal_places=8, default=Decimal("0"), help_text="Least fee per fill"
    )
    allow_short = models.BooleanField(default=False)
    stop_loss_pct = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    take_profit_pct = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    execution = models.JSONField(
        default=dict,
        blank=True,
        help_text="Entry orders, exits, leverage, margin, borrow and spread, where they differ "
        "from the engine's defaults (numbers as decimal strings).",
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0, help_text="Percent done, 0 to 100")
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


def _settings_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(end__gt=F("start")),
            name=f"{prefix}_range_ordered",
            violation_error_message="End must be after start.",
        ),
        models.CheckConstraint(
            condition=Q(status__in=RunStatus.values),
            name=f"{prefix}_status_valid",
            violation_error_message="Status is not one of the allowed choices.",
        ),
        models.CheckConstraint(
            condition=Q(progress__gte=0) & Q(progress__lte=100),
            name=f"{prefix}_progress_range",
            violation_error_message="Progress must be between 0 and 100.",
        ),
        models.CheckConstraint(
            condition=Q(initial_capital__gt=0),
            name=f"{prefix}_capital_positive",
            violation_error_message="Initial capital must be greater than zero.",
        ),
        models.CheckConstraint(
            # Above 1 only with leverage (execution's max_leverage; the service checks it).
            condition=Q(size_fraction__gt=0) & Q(size_fraction__lt=100),
            name=f"{prefix}_size_fraction_range",
            violation_error_message="Size fraction must be greater than 0 and below 100.",
        ),
        models.CheckConstraint(
            condition=Q(sizing__in=Sizing.values),
            name=f"{prefix}_sizing_valid",
            violation_error_message="Sizing is not one of the allowed choices.",
        ),
        models.CheckConstraint(
            condition=(Q(sizing=Sizing.FIXED_QUANTITY) & Q(fixed_quantity__gt=0))
            | (~Q(sizing=Sizing.FIXED_QUANTITY) & Q(fixed_quantity__isnull=True)),
            name=f"{prefix}_fixed_quantity_sizing",
            violation_error_message=(
                "Fixed quantity must be above zero when sizing is by fixed quantity, "
                "and empty otherwise."
            ),
        ),
        models.CheckConstraint(
            condition=(Q(sizing=Sizing.FIXED_NOTIONAL) & Q(fixed_notional__gt=0))
            | (~Q(sizing=Sizing.FIXED_NOTIONAL) & Q(fixed_notional__isnull=True)),
            name=f"{prefix}_fixed_notional_sizing",
            violation_error_message=(
                "Fixed notional must be above zero when sizing is by fixed notional, "
                "and empty otherwise."
            ),
        ),
        models.CheckConstraint(
            condition=(
                Q(sizing=Sizing.RISK)
                & Q(risk_pct__gt=0)
                & Q(risk_pct__lte=100)
                & Q(stop_loss_pct__isnull=False)
            )
            | (~Q(sizing=Sizing.RISK) & Q(risk_pct__isnull=True)),
            name=f"{prefix}_risk_sizing",
            violation_error_message=(
                "Sizing by risk needs a risk percent above 0 and at most 100 and a stop loss; "
                "other sizings leave the risk percent empty."
            ),
        ),
        models.CheckConstraint(
            condition=Q(fixed_fee__gte=0) & Q(min_fee__gte=0),
            name=f"{prefix}_fees_not_negative",
            violation_error_message="Fixed and minimum fees must be zero or more.",
        ),
    ]


class BacktestRun(BacktestSettings):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backtest_runs"
    )
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="backtest_runs",
    )
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="backtest_runs"
    )
    sweep = models.ForeignKey(
        "Sweep", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    # blank: a kind without parameters (buy_and_hold) runs with {}.
    parameters = models.JSONField(default=dict, blank=True)
    params_hash = models.CharField(max_length=64, db_index=True)
    bars_done = models.PositiveIntegerField(default=0)
    bars_total = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    cache_hit = models.BooleanField(default=False)
    # A cache hit shares the trades and curves of the run that computed the result.
    shared_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="shared_by"
    )
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Executions started; more than one means a worker was lost"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the executing worker"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="run_owner_recent"),
            models.Index(fields=["status"], name="run_status"),
        ]
        constraints = _settings_constraints("run")

    def __str__(self) -> str:
        return f"Backtest #{self.pk} {self.kind} ({self.status})"


class BacktestTrade(models.Model):
    """One simulated round trip of a run; engine output, so float64 like the engine."""

    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="trades")
    direction = models.CharField(max_length=5)
    entry_time = models.DateTimeField()
    exit_time = models.DateTimeField(null=True, blank=True)
    entry_price = models.FloatField()
    exit_price = models.FloatField(null=True, blank=True)
    quantity = models.FloatField()
    pnl = models.FloatField()
    pnl_pct = models.FloatField()
    fees = models.FloatField()
    duration_seconds = models.FloatField(null=True, blank=True)
    exit_reason = models.CharField(max_length=16)  # "trailing_stop" is the longest
    is_open = models.BooleanField(default=False)

    class Meta:
        ordering = ["run_id", "entry_time", "id"]
        indexes = [models.Index(fields=["run", "entry_time"], name="bt_trade_run_time")]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0),
                name="bt_trade_quantity_positive",
                violation_error_message="Quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(direction__in=["long", "short"]),
                name="bt_trade_direction_valid",
                violation_error_message="Direction must be long or short.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.entry_time:%Y-%m-%d %H:%M} ({self.exit_reason})"


class Sweep(BacktestSettings):
    """A parameter sweep: one strategy kind evaluated over a grid of parameter combinations."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sweeps"
    )
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sweeps",
    )
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="sweeps"
    )
    grid = models.JSONField(default=dict, help_text="Parameter name to list of values")
    samples = models.PositiveIntegerField(null=True, blank=True, help_text="Random samples")
    rank_metric = models.CharField(max_length=40, default="sharpe")
    combinations_total = models.PositiveIntegerField(default=0)
    combinations_done = models.PositiveIntegerField(default=0)
    combinations_cached = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list, blank=True)
    best_parameters = models.JSONField(null=True, blank=True)
    best_value = models.FloatField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = _settings_constraints("sweep")

    def __str__(self) -> str:
        return f"Sweep #{self.pk} {self.kind} ({self.status})"
