"""Research studies: an Optuna optimisation or a walk-forward of them, its stages and trials.

A study is a tree of ordinary backtests. Its stages (`StudyFold`) are the optimisations it
runs: one over the whole range, and for a walk-forward one per fold over that fold's
in-sample window. `StudyTrial` is this app's record of each trial (its parameters and
result, where it ran, how long, whether the cache answered it): the live state of a study,
which every worker shares through the database and the samplers read. Each stage is also an
Optuna study in Optuna's own tables (same database), which receive the stage's finished
trials in bulk as it goes (services.sampling), so Optuna's tools read a complete record;
the API and the admin never read Optuna's tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from backtests.models import BacktestSettings, RunStatus


class StudyMode(models.TextChoices):
    OPTIMIZE = "optimize", "Optimisation"
    WALK_FORWARD = "walk_forward", "Walk-forward"


class SamplerName(models.TextChoices):
    GRID = "grid", "Grid"
    RANDOM = "random", "Random"
    TPE = "tpe", "TPE (Bayesian)"
    NSGA2 = "nsga2", "NSGA-II (multi-objective)"


class FoldRole(models.TextChoices):
    FOLD = "fold", "Walk-forward fold"
    WHOLE = "whole", "Whole period"


class TrialState(models.TextChoices):
    # A slot of the stage's budget is taken, Optuna has not been asked yet.
    ASKED = "asked", "Asked"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    # The parameters break the kind's rules, or the window is too short for them: told to
    # Optuna as PRUNED, so samplers learn to avoid the region.
    INFEASIBLE = "infeasible", "Infeasible"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TRIAL_PENDING_STATES = (TrialState.ASKED, TrialState.QUEUED, TrialState.RUNNING)
TRIAL_FINISHED_STATES = (
    TrialState.COMPLETE,
    TrialState.INFEASIBLE,
    TrialState.FAILED,
    TrialState.CANCELLED,
)


class Study(BacktestSettings):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studies"
    )
    strategy = models.ForeignKey(
        "strategies.Strategy",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="studies",
    )
    instrument = models.ForeignKey(
        "marketdata.Instrument", on_delete=models.PROTECT, related_name="studies"
    )
    # The parameters the search space leaves out, fixed at these values.
    parameters = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=12, choices=StudyMode.choices, default=StudyMode.OPTIMIZE)
    sampler = models.CharField(max_length=8, choices=SamplerName.choices, default=SamplerName.TPE)
    search_space = models.JSONField(default=dict, help_text="Parameter name to its dimension")
    objectives = models.JSONField(default=list, help_text="[{metric, direction}]")
    constraints = models.JSONField(default=list, blank=True, help_text="[{metric, min, max}]")
    n_trials = models.PositiveIntegerField(help_text="Trials per optimisation (per fold)")
    parallelism = models.PositiveSmallIntegerField(default=2)
    seed = models.BigIntegerField(default=0)
    walk_forward = models.JSONField(null=True, blank=True)
    compare_whole_period = models.BooleanField(default=True)
    use_cache = models.BooleanField(default=True)
    # Optuna study names are `<optuna_prefix>-<role>-<index>`; random, so that an id SQLite
    # hands out again after a rollback never finds an old Optuna study.
    optuna_prefix = models.CharField(max_length=40, unique=True)
    trials_total = models.PositiveIntegerField(default=0)
    trials_done = models.PositiveIntegerField(default=0)
    trials_cached = models.PositiveIntegerField(default=0)
    trials_failed = models.PositiveIntegerField(default=0)
    folds_total = models.PositiveIntegerField(default=0)
    folds_done = models.PositiveIntegerField(default=0)
    best_trial_number = models.IntegerField(null=True, blank=True)
    best_parameters = models.JSONField(null=True, blank=True)
    best_values = models.JSONField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # A watch task is due by then; another is scheduled only after it (see services.driver).
    watch_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="study_owner_recent"),
            models.Index(fields=["status"], name="study_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(end__gt=models.F("start")),
                name="study_range_ordered",
                violation_error_message="End must be after start.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values),
                name="study_status_valid",
                violation_error_message="Status is not one of the allowed choices.",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100),
                name="study_progress_range",
                violation_error_message="Progress must be between 0 and 100.",
            ),
            models.CheckConstraint(
                condition=Q(initial_capital__gt=0),
                name="study_capital_positive",
                violation_error_message="Initial capital must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=Q(n_trials__gte=1),
                name="study_trials_positive",
                violation_error_message="A study runs at least one trial.",
            ),
            models.CheckConstraint(
                condition=Q(parallelism__gte=1),
                name="study_parallelism_positive",
                violation_error_message="Parallelism must be at least 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"Study #{self.pk} {self.kind} {self.sampler} ({self.status})"


class StudyFold(models.Model):
    """One optimisation of a study: a walk-forward fold, or the whole period."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="folds")
    role = models.CharField(max_length=5, choices=FoldRole.choices)
    index = models.PositiveIntegerField(help_text="Fold number from 0; 0 for the whole period")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    optuna_study_name = models.CharField(max_length=80)
    # The window optimised on, [is_start, is_end), and the bars it holds (positions in the
    # study's candles); the out-of-sample window follows it (folds only).
    is_start = models.DateTimeField()
    is_end = models.DateTimeField()
    is_first_bar = models.PositiveIntegerField()
    is_end_bar = models.PositiveIntegerField()
    oos_start = models.DateTimeField(null=True, blank=True)
    oos_end = models.DateTimeField(null=True, blank=True)
    oos_end_bar = models.PositiveIntegerField(null=True, blank=True)
    data_version = models.CharField(max_length=16, blank=True)
    fold_key = models.CharField(max_length=64, blank=True, db_index=True)
    cache_hit = models.BooleanField(default=False)
    trials_claimed = models.PositiveIntegerField(
        default=0,
        help_text="Trials created for the fold so far (its slots claimed); with trials_done, "
        "how many are in flight",
    )
    trials_done = models.PositiveIntegerField(default=0)
    best_trial_number = models.IntegerField(null=True, blank=True)
    best_values = models.JSONField(null=True, blank=True)
    chosen_parameters = models.JSONField(null=True, blank=True)
    is_metrics = models.JSONField(default=dict, blank=True)
    oos_metrics = models.JSONField(default=dict, blank=True)
    oos_params_hash = models.CharField(max_length=64, blank=True)
    overfitting = models.JSONField(default=dict, blank=True)
    importance = models.JSONField(default=dict, blank=True)
    pareto_front = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study_id", "role", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "role", "index"],
                name="study_fold_unique",
                violation_error_message="This study already has this fold.",
            ),
            models.CheckConstraint(
                condition=Q(is_end__gt=models.F("is_start")),
                name="study_fold_window_ordered",
                violation_error_message="The in-sample window must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        if self.role == FoldRole.WHOLE:
            return f"Study #{self.study_id} whole period"
        return f"Study #{self.study_id} fold {self.index}"


class StudyTrial(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="trials")
    fold = models.ForeignKey(StudyFold, on_delete=models.CASCADE, related_name="trials")
    slot = models.PositiveIntegerField(help_text="Position in the fold's budget, from 0")
    number = models.IntegerField(
        null=True, blank=True, help_text="Optuna's trial number (the slot)"
    )
    optuna_trial_id = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=TrialState.choices, default=TrialState.ASKED)
    params = models.JSONField(default=dict, blank=True)
    # What the sampler noted on the trial when it asked for it (NSGA-II's generation): the
    # adaptive samplers read a fold's history back from these rows (services.sampling).
    sampler_attrs = models.JSONField(default=dict, blank=True)
    values = models.JSONField(null=True, blank=True, help_text="Objective values, in order")
    metrics = models.JSONField(default=dict, blank=True)
    constraint_values = models.JSONField(default=dict, blank=True)
    feasible = models.BooleanField(null=True, blank=True)
    error = models.TextField(blank=True)
    params_hash = models.CharField(max_length=64, blank=True)
    cache_hit = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True, db_index=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    engine_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="The backtest's own time in the worker; empty when none ran (cached, "
        "infeasible by the kind's rules)",
    )

    class Meta:
        ordering = ["fold_id", "slot"]
        indexes = [models.Index(fields=["study", "state"], name="study_trial_state")]
        constraints = [
            models.UniqueConstraint(
                fields=["fold", "slot"],
                name="study_trial_slot_unique",
                violation_error_message="This fold already has a trial in this slot.",
            ),
            models.CheckConstraint(
                condition=Q(state__in=TrialState.values),
                name="study_trial_state_valid",
                violation_error_message="State is not one of the allowed choices.",
            ),
        ]

    def __str__(self) -> str:
        return f"Trial {self.number} of study #{self.study_id} ({self.state})"
