"""Byte progress for long data work (downloads, decompression), on stderr.

A progress is a context manager yielding `advance(nbytes)`. The default draws
a rich bar (rich comes with typer in the base install) and falls back to
nothing when rich is absent; callers may pass their own, or `silent`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ContextManager, Protocol

Advance = Callable[[int], None]


class ByteProgress(Protocol):
    def __call__(self, description: str, total: int | None, completed: int = 0) -> ContextManager[Advance]: ...


@contextmanager
def silent(description: str, total: int | None, completed: int = 0) -> Iterator[Advance]:
    """No output."""
    yield lambda n: None


@contextmanager
def rich_bar(description: str, total: int | None, completed: int = 0) -> Iterator[Advance]:
    """A rich bar with size, speed and time left on stderr."""
    try:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
    except ImportError:
        yield lambda n: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True))
    with bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)
