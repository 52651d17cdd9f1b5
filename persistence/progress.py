"""A tqdm progress bar that fits the `progress(done, total)` callbacks services take."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


@contextmanager
def progress_bar(
    description: str, total: int, unit: str, stream: Any
) -> Iterator[Callable[[int, int], None]]:
    with tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=stream) as bar:

        def update(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        yield update
