"""Line reader for `hubble observe --input-file`: big chunked reads, upstream's line rules.

Upstream reads input with a Go ``bufio.Scanner``: lines end at ``\\n``, one ``\\r`` right before it
is removed, the last line needs no newline, and a line of 65,536 bytes or more (counting a trailing
``\\r``, not the ``\\n``) stops the whole read with ``bufio.Scanner: token too long``. This module
yields the same lines, in batches, reading the file in large chunks so that the per-line cost is
one slice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

MAX_LINE_BYTES = 65535
CHUNK_BYTES = 256 << 10  # a chunk and its lines stay in the CPU's caches
TOKEN_TOO_LONG = "bufio.Scanner: token too long"


class InputError(Exception):
    """A fatal input problem, with upstream's one-line message as its text."""


def open_input(path: str, stdin: BinaryIO) -> BinaryIO:
    """Open ``path`` for reading (``-`` is standard input), with upstream's error texts."""
    if path == "-":
        return stdin
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise InputError(f"read {path}: is a directory") from None
    except PermissionError:
        raise InputError(f"open {path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"open {path}: {os.strerror(exc.errno or 0).lower()}") from None


def iter_line_batches(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[list[bytes]]:
    """Yield lists of lines (without ``\\n`` and without a final ``\\r``), in input order.

    Raises :class:`InputError` (``bufio.Scanner: token too long``) when a line is too long, after
    every earlier line has been yielded.
    """
    pending = b""
    while True:
        try:
            chunk = stream.read(chunk_bytes)
        except IsADirectoryError:
            name = getattr(stream, "name", "?")
            raise InputError(f"read {name}: is a directory") from None
        if not chunk:
            break
        lines = chunk.split(b"\n")
        has_cr = b"\r" in chunk
        if pending:  # the start of the first line came with an earlier chunk
            has_cr = has_cr or pending.endswith(b"\r")
            lines[0] = pending + lines[0]
        pending = lines.pop()  # the text after the last newline: the start of a later line
        if lines:
            yield from _whole_lines(lines, has_cr)
        if len(pending) > MAX_LINE_BYTES:
            raise InputError(TOKEN_TOO_LONG)
    if pending:
        yield from _whole_lines([pending], b"\r" in pending)


def _whole_lines(lines: list[bytes], has_cr: bool) -> Iterator[list[bytes]]:
    lines, too_long = clean_lines(lines, has_cr)
    if lines:
        yield lines
    if too_long:
        raise InputError(TOKEN_TOO_LONG)


def split_lines(block: bytes) -> tuple[list[bytes], bool]:
    """Split whole lines at ``\\n``, stop before the first one that is too long (a trailing CR
    counts), and strip one CR per line. Returns the lines and whether a too-long line cut them short."""
    return clean_lines(block.split(b"\n"), b"\r" in block)


def clean_lines(lines: list[bytes], has_cr: bool) -> tuple[list[bytes], bool]:
    """:func:`split_lines` of a block already split at ``\\n`` (``has_cr``: whether it holds a CR)."""
    too_long = max(map(len, lines)) > MAX_LINE_BYTES
    if too_long:
        lines = lines[: next(i for i, line in enumerate(lines) if len(line) > MAX_LINE_BYTES)]
    if has_cr:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines, too_long
