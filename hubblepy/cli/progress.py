"""A progress bar on stderr for long `hubble observe --input-file` reads, only on a terminal.

Shown when the input is a regular file of at least ``HUBBLEPY_PROGRESS_MIN_BYTES`` (64 MiB by
default), stderr is a terminal and stdout is not (with both on one terminal the bar would tear the
printed flows apart). Never on pipes, so scripts and tests see byte-identical output. rich is only
imported when a bar is shown.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, TextIO

MIN_BYTES = 64 << 20


def _isatty(stream: Any) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def wanted(path: str, stdout: Any, stderr: Any) -> int:
    """The size of ``path`` when a bar should be shown for it, else 0."""
    if path == "-" or not _isatty(stderr) or _isatty(stdout):
        return 0
    try:
        minimum = int(os.environ.get("HUBBLEPY_PROGRESS_MIN_BYTES", MIN_BYTES))
    except ValueError:
        minimum = MIN_BYTES
    try:
        size = os.path.getsize(path) if os.path.isfile(path) else 0
    except OSError:
        return 0
    return size if size >= max(minimum, 1) else 0


class Bar:
    """A byte-count bar for one file; :meth:`advance` as bytes are read, :meth:`close` at the end.

    The bar (and rich's refresh thread) starts at the first :meth:`advance`, so that worker processes
    forked before it never inherit a running thread.
    """

    def __init__(self, name: str, size: int, stderr: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stderr),
            transient=True,
        )
        self._task = self._progress.add_task(os.path.basename(name), total=size)
        self._started = False

    def advance(self, count: int) -> None:
        if not self._started:
            self._started = True
            self._progress.start()
        self._progress.advance(self._task, count)

    def close(self) -> None:
        if self._started:
            self._progress.stop()


class CountingReader:
    """A binary stream wrapper that reports the bytes it reads to a :class:`Bar`."""

    def __init__(self, stream: BinaryIO, bar: Bar) -> None:
        self._stream = stream
        self._bar = bar
        self.name = getattr(stream, "name", "?")

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._bar.advance(len(data))
        return data

    def close(self) -> None:
        self._stream.close()
