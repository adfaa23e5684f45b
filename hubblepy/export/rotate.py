"""A size-rotated append-only file of whole lines (the exporter's file), lumberjack-style.

When the next line would take the file past ``max_bytes``, the file is renamed to
``NAME-<UTC time>.EXT`` (``events-2026-12-06T22-10-00.123.log``, optionally gzipped to
``.log.gz``), a new file is started, and the oldest backups beyond ``max_backups`` are removed
(0 keeps them all). A line longer than ``max_bytes`` gets a file of its own. A write that fails
(ENOSPC, EIO) is truncated back to the previous whole line and raises ``OSError``; nothing after
it is half-written. Special files (``/dev/stdout``, pipes) are written but never rotated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import shutil
import stat
import time
from collections.abc import Sequence
from pathlib import Path


class RotatingFile:
    """Whole-line writer with size rotation (one writer thread)."""

    def __init__(self, path: str, max_bytes: int, max_backups: int = 5, compress: bool = False) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self.compress = compress
        self.rotations = 0
        self.lines_written = 0
        self._last_ms = 0
        self._fd = -1
        self._size = 0
        self._regular = True
        self._open()

    def _open(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(self._fd)
        self._regular = stat.S_ISREG(st.st_mode)
        self._size = st.st_size if self._regular else 0

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append lines (each ending in ``\\n``), rotating between lines as needed."""
        chunk: list[bytes] = []
        size = self._size
        for line in lines:
            if self._regular and size > 0 and size + len(line) > self.max_bytes:
                if chunk:
                    self._write(b"".join(chunk))
                    self.lines_written += len(chunk)
                    chunk = []
                self.rotate()
                size = 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))
            self.lines_written += len(chunk)

    def _write(self, data: bytes) -> None:
        start = self._size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            if self._regular:  # never leave a partial line behind
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
            raise
        self._size = start + len(data)

    def _backup_name(self) -> Path:
        """``NAME-<UTC ms time>.EXT``, strictly later than the previous backup so names sort in order."""
        ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        while True:
            stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
            candidate = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")
            if not (candidate.exists() or candidate.with_name(candidate.name + ".gz").exists()):
                self._last_ms = ms
                return candidate
            ms += 1

    def rotate(self) -> None:
        """Close the current file, keep it as a backup, start an empty one."""
        if not self._regular:
            return
        os.close(self._fd)
        self._fd = -1
        backup = self._backup_name()
        os.rename(self.path, backup)
        self._open()  # the new file first: a failed compression must not stop the export
        self.rotations += 1
        if self.compress:
            with contextlib.suppress(OSError):
                with open(backup, "rb") as src, gzip.open(f"{backup}.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                backup.unlink()
        self._prune()

    def backups(self) -> list[Path]:
        """Existing backups, oldest first."""
        prefix, ext = f"{self.path.stem}-", self.path.suffix
        found = [
            p
            for p in self.path.parent.iterdir()
            if p.name.startswith(prefix)
            and (p.name.endswith(ext) or p.name.endswith(ext + ".gz"))
            and p != self.path
        ]
        return sorted(found, key=lambda p: p.name)

    def _prune(self) -> None:
        if self.max_backups <= 0:
            return
        old = self.backups()
        for path in old[: max(0, len(old) - self.max_backups)]:
            with contextlib.suppress(OSError):
                path.unlink()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
