"""Third-party browser assets served from installed Python packages, never from a CDN.

plotly.js ships inside the pinned `plotly` wheel (plotly/package_data/plotly.min.js). This
finder exposes that one file as the static file ``vendor/plotly.min.js``, so `collectstatic`,
WhiteNoise and the dev server treat it like our own static files; the rest of the wheel's
package data (datasets, the Jupyter widget bundle) is not collected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_DIR = Path(plotly.__file__).resolve().parent / "package_data"
VENDORED = {"vendor/plotly.min.js": PLOTLY_DIR / "plotly.min.js"}


class VendorFinder(BaseFinder):
    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found = VENDORED.get(path)
        if found is None or not found.is_file():
            return [] if find_all else None
        return [str(found)] if find_all else str(found)

    def list(self, ignore_patterns: Any) -> Any:
        storage = FileSystemStorage(location=str(PLOTLY_DIR))
        storage.prefix = "vendor"  # type: ignore[attr-defined]
        for path in VENDORED.values():
            yield path.name, storage


# --- plotly.js's stylesheet under a strict CSP -------------------------------------------
# plotly.js injects its rules (modebar, cursors, hover labels) as an inline <style>, which
# `style-src 'self'` refuses. Pages link backtests/static/lab/plotly-csp.css instead, with
# id="plotly.js-style-global" and class="no-inline-styles" so plotly.js skips the injection.
# After upgrading plotly, regenerate the file: `python -m config.vendor > <that file>`.

PLOTLY_SCOPE = {"X": ".js-plotly-plot .plotly", "Y": ".plotly-notifier"}


def plotly_css() -> str:
    """The rules object plotly.min.js carries, written out as CSS (its cloud dialog left out)."""
    import json
    import re

    source = (PLOTLY_DIR / "plotly.min.js").read_text()
    start = source.rfind("{", 0, source.index('"X,X div":'))
    depth, end = 0, start
    for end in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            break
    literal = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
    pairs = re.findall(rf"({literal}|[A-Z]):({literal})", source[start + 1 : end])
    version = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", source)
    lines = [
        f"/* plotly.js {version.group(1) if version else ''} stylesheet rules (MIT licence),",
        "   written out by `python -m config.vendor`: see config/vendor.py. */",
    ]
    for key, value in pairs:
        selector = key.strip("\"'")
        if selector[0] not in PLOTLY_SCOPE or "cloud-dialog" in selector:
            continue
        for short, scope in PLOTLY_SCOPE.items():
            selector = selector.replace(short, scope)
        rules = json.loads('"' + value[1:-1].replace('"', '\\"') + '"')
        lines.append(f"{selector} {{ {rules} }}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(plotly_css(), end="")
