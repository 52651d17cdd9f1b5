"""`make screenshots`: the README's screenshots, taken from a freshly seeded demo.

It builds a throwaway SQLite database in a temporary directory (TRADELAB_VAR_DIR; any
DATABASE_URL or REDIS_URL in the environment is ignored), migrates it, runs seed_demo,
seed_research and seed_study, serves it with `python -m config.serve` on a free port as
`make run` does, logs in as the demo user in Debian's chromium (the browser the tests
drive) and saves a PNG per page to docs/screenshots/. It stops the server it started, and only that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

BASE_DIR = Path(__file__).resolve().parent.parent
OUT_DIR = BASE_DIR / "docs" / "screenshots"
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1400, 900
# Every chart container in the lab and the admin. A chart is drawn once plotly has marked
# it (`js-plotly-plot`) or, for pages not yet converted to plotly, once it holds an svg.
CHART_SELECTOR = ".chart, .run-equity-chart"
CHARTS_DRAWN = """selector => [...document.querySelectorAll(selector)].every(
    chart => chart.classList.contains("js-plotly-plot")
        || chart.querySelector(".js-plotly-plot, svg, canvas") !== null)"""
CHART_TIMEOUT_MS = 20_000
# Full-page shots stop here: past it a long page (a run's admin page lists every metric and
# trade) only makes the file heavier.
MAX_HEIGHT = 3200


@dataclass(frozen=True)
class Shot:
    name: str  # docs/screenshots/<name>.png
    path: str
    full_page: bool = True
    ready: str | None = None  # a selector that shows the page is drawn, besides its charts


def _env(var_dir: Path, port: int) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "MIGRATION_DATABASE_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "TRADELAB_VAR_DIR": str(var_dir),
            "MEDIA_ROOT": str(var_dir / "media"),
            "LEDGER_CHECKPOINT_PATH": str(var_dir / "ledger-checkpoints.jsonl"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "CELERY_CONCURRENCY": "1",
            "CELERY_EMBED_BEAT": "0",
        }
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603  (this interpreter and the repository's manage.py)
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True
    )


def _wait_healthy(root: str, server: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the server did not answer {root}/health within {timeout:.0f} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to config.serve, which stops its own children (redis, worker, web); whatever
    of its process group is still there after that is killed."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)


def _ready(page: Any, ready: str | None) -> None:
    """Wait for the page's data requests, its charts, and `ready` (a selector) if given;
    on a timeout take the page as it is, and say so."""
    try:
        page.wait_for_load_state("networkidle", timeout=CHART_TIMEOUT_MS)
        page.wait_for_function(CHARTS_DRAWN, arg=CHART_SELECTOR, timeout=CHART_TIMEOUT_MS)
        if ready is not None:
            page.wait_for_selector(ready, timeout=CHART_TIMEOUT_MS)
    except PlaywrightTimeout:
        print(f"    not all drawn after {CHART_TIMEOUT_MS // 1000} s; shot anyway")
    # Plotly and Swagger lay out after their first paint; let them settle.
    page.wait_for_timeout(600)


def _shoot(page: Any, root: str, shot: Shot) -> Path | None:
    print(f"  {shot.name}: {shot.path}", flush=True)
    response = page.goto(f"{root}{shot.path}", wait_until="load")
    status = response.status if response is not None else 0
    if status != 200:
        print(f"    answered {status}; skipped")
        return None
    _ready(page, shot.ready)
    target = OUT_DIR / f"{shot.name}.png"
    if shot.full_page:
        width, height = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        clip = {"x": 0, "y": 0, "width": width, "height": min(height, MAX_HEIGHT)}
        page.screenshot(path=str(target), full_page=True, clip=clip)
    else:
        page.screenshot(path=str(target))
    return target


def _results(page: Any, root: str, path: str) -> list[dict[str, Any]]:
    response = page.request.get(f"{root}{path}")
    if not response.ok:
        raise RuntimeError(f"{path} answered {response.status}")
    return list(response.json()["results"])


def _take(root: str, chromium: str, username: str, password: str) -> list[Path]:
    from tests.browser import CHROMIUM_FLAGS

    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(
                viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
                device_scale_factor=1,
            )
            page.set_default_timeout(30_000)
            # A page that draws nothing usually says why in its console: pass that on.
            page.on("pageerror", lambda exc: print(f"    page error: {exc}"))
            page.on(
                "console",
                lambda message: (
                    print(f"    console: {message.text}") if message.type == "error" else None
                ),
            )
            page.goto(f"{root}/accounts/login/?next=/lab/")
            page.fill("#id_username", username)
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{root}/lab/")

            runs = _results(page, root, "/api/v1/backtests/")
            by_kind = {(run["kind"], run["symbol"]): run["id"] for run in runs}
            sma = by_kind[("sma_cross", "BTCUSDT")]
            donchian = by_kind[("donchian_breakout", "BTCUSDT")]
            sweep = _results(page, root, "/api/v1/sweeps/")[0]["id"]
            study = _results(page, root, "/api/v1/studies/")[0]["id"]

            shots = [
                Shot("lab-home", "/lab/"),
                Shot("run", f"/lab/runs/{sma}/"),
                Shot("sweep", f"/lab/sweeps/{sweep}/"),
                Shot("study", f"/lab/studies/{study}/", ready="#chart-equity.js-plotly-plot"),
                Shot("compare", f"/lab/compare/?runs={sma}&runs={donchian}"),
                Shot("strategies", "/lab/strategies/"),
                Shot("admin-index", "/admin/"),
                Shot("admin-run", f"/admin/backtests/backtestrun/{sma}/change/"),
                # Swagger's page is one long list; its first screen says what it is.
                Shot("api-docs", "/api/docs/", full_page=False, ready=".swagger-ui .opblock"),
            ]
            for shot in shots:
                target = _shoot(page, root, shot)
                if target is not None:
                    written.append(target)
        finally:
            browser.close()
    return written


def main() -> int:
    sys.path.insert(0, str(BASE_DIR))
    from config.serve import free_port
    from tests.browser import chromium_path

    chromium = chromium_path()
    if chromium is None:
        print("chromium is not installed (.ci/run installs Debian's); no screenshots taken.")
        return 1
    started = time.monotonic()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tradelab-screenshots-"))
    port = free_port()
    env = _env(workdir / "var", port)
    root = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    server_log = (workdir / "serve.log").open("wb")
    try:
        print(f"Seeding a throwaway database in {workdir} ...", flush=True)
        _manage(env, "migrate", "--no-input", "-v0")
        _manage(env, "seed_demo")
        _manage(env, "seed_research")
        _manage(env, "seed_study")
        _manage(env, "collectstatic", "--no-input", "-v0")
        print(f"Serving it at {root} ...", flush=True)
        server = subprocess.Popen(
            [sys.executable, "-m", "config.serve"],
            cwd=BASE_DIR,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_healthy(root, server)
        written = _take(
            root,
            chromium,
            env.get("DEMO_USERNAME", "demo"),
            env.get("DEMO_PASSWORD", "tradelab-demo"),
        )
    except subprocess.CalledProcessError as exc:
        print(f"`{' '.join(exc.cmd[1:])}` failed (exit {exc.returncode}); no screenshots taken.")
        return 1
    except RuntimeError as exc:
        server_log.flush()
        tail = (workdir / "serve.log").read_text(errors="replace").splitlines()[-30:]
        print("\n".join(["The server's last lines:", *tail, f"{exc}; no screenshots taken."]))
        return 1
    finally:
        if server is not None:
            _stop(server)
        server_log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    for path in written:
        print(f"  wrote {path.relative_to(BASE_DIR)} ({path.stat().st_size // 1024} KB)")
    print(f"{len(written)} screenshots in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
