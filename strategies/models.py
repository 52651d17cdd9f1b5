"""The `Strategy` table: a named, parameterised use of a strategy kind on one instrument."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from marketdata.timeframes import timeframe_choices
from strategies.library.registry import kind_choices


class Strategy(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="strategies"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=40, choices=kind_choices)
    parameters = models.JSONField(default=dict, blank=True)
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="strategies"
    )
    timeframe = models.CharField(max_length=8, choices=timeframe_choices, default="1h")
    initial_capital = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("10000"))
    fee_rate = models.DecimalField(
        max_digits=8, decimal_places=6, default=Decimal("0.001"), help_text="Fraction of notional"
    )
    slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # The status an archived strategy goes back to when restored; set by strategy_archive.
    status_before_archive = models.CharField(
        max_length=10, choices=Status.choices, blank=True, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "name"]
        verbose_name_plural = "strategies"
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                name="strategy_name_unique_per_owner",
                violation_error_message="This owner already has a strategy with this name.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "paused", "archived"]),
                name="strategy_status_valid",
                violation_error_message="Status must be draft, active, paused or archived.",
            ),
            models.CheckConstraint(
                condition=Q(initial_capital__gt=0),
                name="strategy_capital_positive",
                violation_error_message="Initial capital must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(fee_rate__gte=0) & Q(fee_rate__lt=1),
                name="strategy_fee_rate_range",
                violation_error_message="Fee rate must be at least 0 and less than 1.",
            ),
            models.CheckConstraint(
                condition=Q(slippage_bps__gte=0),
                name="strategy_slippage_non_negative",
                violation_error_message="Slippage must not be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
