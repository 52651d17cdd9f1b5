"""The params-hash result cache behaves the same whichever store holds the payload."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from persistence.models import CachedResult
from persistence.selectors import cache_stats
from persistence.services import (
    cache_load,
    cache_lookup,
    cache_peek_content,
    cache_purge,
    cache_store,
    cache_store_many,
)

pytestmark = pytest.mark.django_db

HASH = "a" * 64


def _store(params_hash: str = HASH, content: bytes = b'{"sharpe": 1.2}') -> CachedResult:
    return cache_store(
        kind="backtest", params_hash=params_hash, content=content, format="json", row_count=3
    )


def test_a_stored_result_is_found_with_its_bytes(store: str) -> None:
    _store()
    entry = cache_lookup(kind="backtest", params_hash=HASH)
    assert entry is not None
    assert cache_load(entry=entry) == b'{"sharpe": 1.2}'
    assert entry.size_bytes == len(b'{"sharpe": 1.2}')
    assert entry.row_count == 3


def test_the_payload_lives_where_the_store_setting_says(store: str, settings) -> None:  # type: ignore[no-untyped-def]
    entry = _store()
    if store == "db":
        assert entry.blob is not None and entry.file_path == ""
    else:
        assert entry.blob is None
        assert (Path(settings.MEDIA_ROOT) / entry.file_path).read_bytes() == b'{"sharpe": 1.2}'


def test_a_miss_returns_none(store: str) -> None:
    assert cache_lookup(kind="backtest", params_hash=HASH) is None


def test_the_kind_is_part_of_the_key(store: str) -> None:
    _store()
    assert cache_lookup(kind="metrics", params_hash=HASH) is None


def test_hits_are_counted_with_their_time(store: str) -> None:
    _store()
    before = timezone.now()
    cache_lookup(kind="backtest", params_hash=HASH)
    cache_lookup(kind="backtest", params_hash=HASH)
    entry = CachedResult.objects.get(params_hash=HASH)
    assert entry.hit_count == 2
    assert entry.last_hit_at is not None and entry.last_hit_at >= before


def test_storing_a_hash_twice_keeps_the_first_copy(store: str) -> None:
    first = _store(content=b"first")
    second = _store(content=b"second")
    assert second.pk == first.pk
    assert CachedResult.objects.count() == 1
    assert cache_load(entry=second) == b"first"


def test_peeking_at_the_content_reads_it_without_counting_a_hit(store: str) -> None:
    _store(content=b"payload")
    assert cache_peek_content(kind="backtest", params_hash=HASH) == b"payload"
    assert cache_peek_content(kind="sweep_row", params_hash=HASH) is None
    assert cache_peek_content(kind="backtest", params_hash="f" * 64) is None
    assert CachedResult.objects.get().hit_count == 0


def test_storing_many_keeps_the_first_copy_of_a_hash_stored_before(
    store: str, settings, django_assert_max_num_queries
) -> None:
    _store(content=b"first")
    with django_assert_max_num_queries(1 if store == "db" else 2):
        cache_store_many(
            kind="backtest", contents={HASH: b"second", "e" * 64: b"new"}, format="json"
        )
    assert CachedResult.objects.count() == 2
    assert cache_load(entry=cache_lookup(kind="backtest", params_hash=HASH)) == b"first"
    assert cache_load(entry=cache_lookup(kind="backtest", params_hash="e" * 64)) == b"new"
    if store != "db":
        written = [path.read_bytes() for path in Path(settings.MEDIA_ROOT).rglob("*.json")]
        assert sorted(written) == [b"first", b"new"]


def test_purge_deletes_only_entries_unused_for_longer_than_the_age(  # type: ignore[no-untyped-def]
    store: str, settings, django_capture_on_commit_callbacks
) -> None:
    old = _store("b" * 64, b"old payload")
    recent = _store("c" * 64, b"recent")
    hit_lately = _store("d" * 64, b"hit lately")
    long_ago = timezone.now() - timedelta(days=40)
    CachedResult.objects.filter(pk__in=[old.pk, hit_lately.pk]).update(created_at=long_ago)
    CachedResult.objects.filter(pk=hit_lately.pk).update(last_hit_at=timezone.now())

    dry = cache_purge(older_than=timedelta(days=30), dry_run=True)
    assert (dry.entries, dry.size_bytes) == (1, len(b"old payload"))
    assert CachedResult.objects.count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        report = cache_purge(older_than=timedelta(days=30))
    assert report.entries == 1
    assert set(CachedResult.objects.values_list("pk", flat=True)) == {recent.pk, hit_lately.pk}
    if store == "file":
        assert not (Path(settings.MEDIA_ROOT) / old.file_path).exists()


def test_purge_command_reports_what_it_frees(store: str) -> None:
    entry = _store(content=b"x" * 2048)
    CachedResult.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(days=31))
    out = StringIO()
    call_command("purge_cache", "--older-than", "30d", "--dry-run", stdout=out)
    assert "Would free 1 cached results, 2.0 KiB" in out.getvalue()
    assert CachedResult.objects.exists()
    call_command("purge_cache", "--older-than", "30d", stdout=out)
    assert "Freed 1 cached results" in out.getvalue()
    assert not CachedResult.objects.exists()


def test_stats_report_size_and_hit_rate(store: str) -> None:
    _store("e" * 64, b"12345")
    _store("f" * 64, b"123")
    for _ in range(6):
        cache_lookup(kind="backtest", params_hash="e" * 64)
    stats = cache_stats()
    assert stats["entries"] == 2
    assert stats["size_bytes"] == 8
    assert stats["hits"] == 6
    assert stats["hit_rate"] == 0.75  # 6 hits out of 6 hits + 2 misses
    assert stats["by_kind"]["backtest"]["entries"] == 2
