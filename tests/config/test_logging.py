"""The logging configuration (config.settings.base LOGGING): quiet by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, config.settings.base as s; "
    "print(json.dumps([s.LOGGING['root']['level'], "
    "s.LOGGING['loggers']['celery.app.trace']['level']]))"
)


def _levels(**env: str) -> list[str]:
    """The root and Celery task-trace levels the settings compute in a fresh interpreter."""
    environ = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, cwd=ROOT, capture_output=True, check=True
    )
    return json.loads(out.stdout)


def test_the_root_logger_is_at_warning_unless_log_level_is_set() -> None:
    assert _levels()[0] == "WARNING"
    assert _levels(LOG_LEVEL="")[0] == "WARNING"
    assert _levels(LOG_LEVEL="info")[0] == "INFO"


def test_celery_never_logs_task_results_at_info() -> None:
    # A succeeded task's line carries its whole return value: kept out even at LOG_LEVEL=INFO.
    assert _levels(LOG_LEVEL="INFO")[1] == "WARNING"
