"""A progress bar with bytes and rate on stderr, for large transfers."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

THRESHOLD = 64 * 1024 * 1024
"""Below this many bytes no bar is drawn (unless ``SENTENIALX_PROGRESS=1``)."""


@contextmanager
def byte_progress(description: str, total: int, *, enabled: bool | None = None
                  ) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback that advances a rich bar on stderr, or None when not worth drawing."""
    if enabled is None:
        enabled = total >= THRESHOLD or os.environ.get("SENTENIALX_PROGRESS") == "1"
    if os.environ.get("SENTENIALX_PROGRESS") == "0":
        enabled = False
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        # Threads call this; rich's Progress.advance is thread-safe.
        yield lambda n: bar.advance(task, n)
