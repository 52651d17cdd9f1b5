"""The result cache keyed by parameter hash, stored artifacts, the event log and the local
record of its checkpoints.

`Event` is append-only: services only ever insert, and on PostgreSQL a trigger rejects
UPDATE and DELETE outright. Each event's `hash` covers its canonical form and `prev_hash`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ParamSet(models.Model):
    params_hash = models.CharField(max_length=64, primary_key=True)
    canonical_json = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.params_hash[:12]


class StorageFormat(models.TextChoices):
    JSON = "json", "JSON"
    PARQUET = "parquet", "Parquet"
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel"
    PNG = "png", "PNG"


class CachedResult(models.Model):
    kind = models.CharField(max_length=40)
    params_hash = models.CharField(max_length=64)
    format = models.CharField(max_length=8, choices=StorageFormat.choices)
    blob = models.BinaryField(null=True, blank=True)
    file_path = models.CharField(max_length=500, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    hit_count = models.PositiveIntegerField(default=0)
    last_hit_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["last_hit_at"], name="cached_result_last_hit")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "params_hash"],
                name="cached_result_unique",
                violation_error_message="A cached result for this kind and parameters exists.",
            ),
            models.CheckConstraint(
                condition=Q(blob__isnull=False) | ~Q(file_path=""),
                name="cached_result_has_payload",
                violation_error_message="A cached result needs either a blob or a file path.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.params_hash[:12]}"


class Artifact(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="artifacts",
    )
    params_hash = models.CharField(max_length=64, blank=True, db_index=True)
    run = models.ForeignKey(
        "backtests.BacktestRun",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="artifacts",
    )
    name = models.CharField(max_length=200)
    mime_type = models.CharField(max_length=100)
    blob = models.BinaryField(null=True, blank=True)
    file_path = models.CharField(max_length=500, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(params_hash="") | Q(run__isnull=False),
                name="artifact_has_owner_key",
                violation_error_message="An artifact needs a parameters hash or a run.",
            ),
            models.CheckConstraint(
                condition=Q(blob__isnull=False) | ~Q(file_path=""),
                name="artifact_has_payload",
                violation_error_message="An artifact needs either a blob or a file path.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    seq = models.BigAutoField(primary_key=True, help_text="Global sequence")
    stream = models.CharField(max_length=200)
    version = models.PositiveIntegerField(help_text="Position within the stream, from 1")
    type = models.CharField(max_length=60)
    data = models.JSONField()
    metadata = models.JSONField(default=dict, help_text="Actor, correlation id")
    prev_hash = models.CharField(max_length=64)
    # Not indexed: nothing looks an event up by its hash, and the chain (`verify_ledger`),
    # not an index, is what proves each one. Two random-key index writes per event (Django
    # adds a LIKE index to a unique CharField) were the dearest part of an append.
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "version"],
                name="event_stream_version",
                violation_error_message="This stream already has an event at this version.",
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="event_version_positive",
                violation_error_message="Event version must be 1 or more.",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.stream}@{self.version} {self.type}"


class Snapshot(models.Model):
    stream = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    state = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["stream", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "version"],
                name="snapshot_stream_version",
                violation_error_message="This stream already has a snapshot at this version.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream}@{self.version}"


class Checkpoint(models.Model):
    """A local record of a signed checkpoint of the event chain's head.

    The checkpoint that proves anything is the copy in the witnesses outside this database
    (see persistence/checkpoints.py); this row lets the admin and the metrics see when the
    last one was written without reading them.
    """

    seq = models.BigIntegerField(help_text="Sequence number of the chain's head")
    head_hash = models.CharField(max_length=64)
    event_count = models.BigIntegerField(help_text="Events up to and including the head")
    created_at = models.DateTimeField(db_index=True)
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"checkpoint of seq {self.seq} at {self.created_at:%Y-%m-%d %H:%M:%S}"
