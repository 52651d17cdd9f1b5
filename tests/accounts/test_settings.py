"""Sign-up and email settings as each settings module reads them from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import importlib, json, sys; s = importlib.import_module(sys.argv[1]); print(json.dumps("
    "{k: getattr(s, k, None) for k in ('REGISTRATION_OPEN', 'EMAIL_BACKEND', 'EMAIL_HOST',"
    " 'EMAIL_PORT', 'EMAIL_HOST_USER', 'EMAIL_USE_TLS', 'DEFAULT_FROM_EMAIL')}))"
)


def read_settings(module: str, tmp_path: Path, **env: str) -> dict[str, object]:
    """The settings `module` computes in a fresh interpreter with only `env` set."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EMAIL_", "REGISTRATION_", "DEFAULT_FROM_EMAIL", "DJANGO_"))
    }
    clean |= {"SECRET_KEY": "probe", "TRADELAB_VAR_DIR": str(tmp_path), **env}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("config.settings.base", False),
        ("config.settings.production", False),
        ("config.settings.local", True),  # what `make run` uses
    ],
)
def test_registration_is_open_only_for_make_run_by_default(module, expected, tmp_path):
    assert read_settings(module, tmp_path)["REGISTRATION_OPEN"] is expected


def test_the_environment_opens_and_closes_registration(tmp_path):
    assert read_settings("config.settings.production", tmp_path, REGISTRATION_OPEN="1")[
        "REGISTRATION_OPEN"
    ]
    assert not read_settings("config.settings.local", tmp_path, REGISTRATION_OPEN="0")[
        "REGISTRATION_OPEN"
    ]


def test_mail_goes_to_the_console_until_an_smtp_host_is_set(tmp_path):
    console = read_settings("config.settings.production", tmp_path)
    assert console["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"

    smtp = read_settings(
        "config.settings.production",
        tmp_path,
        EMAIL_HOST="smtp.example.com",
        EMAIL_HOST_USER="mailer",
        DEFAULT_FROM_EMAIL="ops@example.com",
    )
    assert smtp["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (smtp["EMAIL_HOST"], smtp["EMAIL_PORT"], smtp["EMAIL_USE_TLS"]) == (
        "smtp.example.com",
        587,
        True,
    )
    assert (smtp["EMAIL_HOST_USER"], smtp["DEFAULT_FROM_EMAIL"]) == ("mailer", "ops@example.com")
