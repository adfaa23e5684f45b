"""Warnings and debug lines on stderr in Go slog's text format, as upstream hubble writes them.

A line looks like ``time=2026-11-27T10:15:28.311Z level=WARN msg="..." key=value ...``. A value is
written bare unless it is empty or holds a space, ``"``, ``=`` or a non-printable character; then it
is quoted the way Go's ``strconv.Quote`` does.
"""

from __future__ import annotations

import time
import unicodedata
from typing import TextIO

from hubblepy.gotext import go_quote


def _printable(char: str) -> bool:
    """Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


def slog_value(text: str) -> str:
    """A value as slog's text handler writes it: bare when safe, quoted otherwise."""
    if not text or any(c in text for c in ' "=') or not all(_printable(c) for c in text):
        return go_quote(text)
    return text


def slog_line(level: str, msg: str, **attrs: object) -> str:
    """One slog text line (with its newline), stamped with the current UTC time in milliseconds."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    parts = [f"time={stamp}", f"level={level}", f"msg={slog_value(msg)}"]
    for key, value in attrs.items():
        parts.append(f"{key}={slog_value(str(value))}")
    return " ".join(parts) + "\n"


def warn(stream: TextIO, msg: str, **attrs: object) -> None:
    """Write a WARN line to ``stream``."""
    stream.write(slog_line("WARN", msg, **attrs))
