"""Artifacts round-trip byte for byte in either store and refuse to load when corrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence.models import Artifact
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load, artifact_save

pytestmark = pytest.mark.django_db

CONTENT = bytes(range(256)) * 40


def test_an_artifact_round_trips_byte_for_byte(store: str) -> None:
    artifact = artifact_save(
        name="equity.parquet",
        mime_type="application/vnd.apache.parquet",
        content=CONTENT,
        params_hash="a" * 64,
    )
    loaded = Artifact.objects.get(pk=artifact.pk)
    assert artifact_load(artifact=loaded) == CONTENT
    assert loaded.size_bytes == len(CONTENT)
    assert (loaded.blob is None) == (store == "file")


def test_an_artifact_is_found_by_its_params_hash_and_name(store: str) -> None:
    saved = artifact_save(name="export.xlsx", mime_type="x", content=b"1", params_hash="b" * 64)
    assert artifact_for_hash(params_hash="b" * 64, name="export.xlsx") == saved
    assert artifact_for_hash(params_hash="b" * 64, name="equity.parquet") is None


def test_a_corrupted_artifact_is_refused(store: str, settings) -> None:  # type: ignore[no-untyped-def]
    artifact = artifact_save(
        name="a.csv", mime_type="text/csv", content=b"x,y\n", params_hash="c" * 64
    )
    if store == "db":
        Artifact.objects.filter(pk=artifact.pk).update(blob=b"x,z\n")
    else:
        (Path(settings.MEDIA_ROOT) / artifact.file_path).write_bytes(b"x,z\n")
    with pytest.raises(OSError, match="checksum"):
        artifact_load(artifact=Artifact.objects.get(pk=artifact.pk))
