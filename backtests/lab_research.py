"""The lab's research pages beyond one run's chart: comparisons and analyses.

Its urlpatterns sit under /lab/ next to the lab's own (config/urls.py).
"""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
