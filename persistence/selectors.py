"""Reads of the result cache and the artifact store."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from persistence.models import Artifact, CachedResult


def artifact_for_hash(*, params_hash: str, name: str) -> Artifact | None:
    """The newest artifact called `name` shared by every run with `params_hash`. Its bytes
    are read when asked for (`blob` is deferred): many callers only want to know it exists,
    and a stored curve can be tens of megabytes."""
    if not params_hash:
        return None
    found = Artifact.objects.filter(params_hash=params_hash, name=name).defer("blob")
    return found.order_by("-id").first()


def cache_stats() -> dict[str, Any]:
    """Entries, stored bytes and hit rate, overall and per kind.

    Every entry was stored after one miss, so the misses the cache has answered are its
    entry count, and hit rate = hits / (hits + entries). Purged entries leave the sums.
    """
    per_kind: dict[str, Any] = {}
    rows = (
        CachedResult.objects.values("kind")
        .annotate(
            entries=Count("id"),
            size_bytes=Coalesce(Sum("size_bytes"), 0),
            hits=Coalesce(Sum("hit_count"), 0),
        )
        .order_by("kind")
    )
    total = {"entries": 0, "size_bytes": 0, "hits": 0}
    for row in rows:
        entries, size, hits = int(row["entries"]), int(row["size_bytes"]), int(row["hits"])
        per_kind[row["kind"]] = {
            "entries": entries,
            "size_bytes": size,
            "hits": hits,
            "hit_rate": _rate(hits, entries),
        }
        total["entries"] += entries
        total["size_bytes"] += size
        total["hits"] += hits
    artifacts = Artifact.objects.aggregate(count=Count("id"), size=Coalesce(Sum("size_bytes"), 0))
    return {
        **total,
        "hit_rate": _rate(total["hits"], total["entries"]),
        "by_kind": per_kind,
        "artifacts": {"count": artifacts["count"], "size_bytes": int(artifacts["size"])},
    }


def _rate(hits: int, entries: int) -> float | None:
    lookups = hits + entries
    return round(hits / lookups, 4) if lookups else None
