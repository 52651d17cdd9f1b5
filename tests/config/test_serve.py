"""`make run`'s supervisor (config/serve.py): what it prints and how it starts its children."""

from __future__ import annotations

from config.serve import banner, serve_env, worker_log_level


def test_the_banner_lists_the_lab_the_admin_the_api_docs_and_the_demo_login() -> None:
    text = banner(host="127.0.0.1", port=8000, env={"REDIS_URL": "redis://127.0.0.1:6389/0"})
    assert "http://127.0.0.1:8000/lab/" in text
    assert "http://127.0.0.1:8000/admin/" in text
    assert "http://127.0.0.1:8000/api/docs/" in text
    assert "demo / tradelab-demo" in text
    assert "redis://127.0.0.1:6389/0" in text


def test_the_banner_shows_the_demo_login_the_environment_sets() -> None:
    text = banner(
        host="localhost", port=9000, env={"DEMO_USERNAME": "ann", "DEMO_PASSWORD": "s3cret"}
    )
    assert "ann / s3cret" in text
    assert "http://localhost:9000/lab/" in text


def test_the_worker_logs_warnings_unless_log_level_says_otherwise() -> None:
    assert worker_log_level({}) == "WARNING"
    assert worker_log_level({"LOG_LEVEL": ""}) == "WARNING"
    assert worker_log_level({"LOG_LEVEL": "INFO"}) == "INFO"


def test_make_run_serves_with_debug_off_unless_debug_is_set() -> None:
    env = serve_env({"PATH": "/usr/bin"})
    assert env["DEBUG"] == "0"
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.local"
    assert env["PATH"] == "/usr/bin"
    assert serve_env({"DEBUG": "1"})["DEBUG"] == "1"
