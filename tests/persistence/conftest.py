"""Every cache and artifact test runs once per store: blob in the database, and file."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["db", "file"])
def store(request, settings, tmp_path) -> str:  # type: ignore[no-untyped-def]
    settings.ARTIFACT_STORE = request.param
    settings.MEDIA_ROOT = tmp_path / "media"
    return str(request.param)
