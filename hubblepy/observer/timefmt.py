"""Timestamps in the canonical protobuf-JSON form (RFC 3339, UTC, 0/3/6/9 fraction digits, ``Z``).

Conversions between nanoseconds since the epoch, the canonical string and protobuf ``Timestamp``
seconds/nanos pairs. Parsing accepts any RFC 3339 offset and up to 9 fraction digits.
"""

from __future__ import annotations

import calendar
import re
import time

_NS = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def format_ns(ns: int) -> str:
    """Format nanoseconds since the epoch as the canonical timestamp string."""
    seconds, nanos = divmod(ns, _NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{base}.{nanos // 1_000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def parse_ns(text: str) -> int:
    """Parse an RFC 3339 timestamp into nanoseconds since the epoch (ValueError when malformed)."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"invalid timestamp {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return seconds * _NS + nanos


def timestamp_ns(seconds: int, nanos: int) -> int:
    """Nanoseconds since the epoch of a protobuf Timestamp's seconds/nanos pair."""
    return seconds * _NS + nanos
