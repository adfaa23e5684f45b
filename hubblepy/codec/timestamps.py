"""Timestamps: nanoseconds and (seconds, nanos) pairs <-> canonical RFC 3339 text, in one place.

The canonical form is protojson's: UTC, ``Z``, 0/3/6/9 fraction digits (``2024-02-29T23:59:50.140Z``).

- :func:`format_timestamp` / :func:`format_ns`: canonical text (the whole-second part is cached, so
  a stream of nearby times costs one dictionary hit and a fraction).
- :func:`parse_timestamp`: protojson's strict reading (``T``, ``Z`` or ``±hh:mm``, ``.`` and at most
  9 fraction digits, a real calendar date), as ``(seconds, nanos)``.
- :func:`parse_rfc3339_ns`: a lenient reading of any RFC 3339 time (also ``t``/``z`` and a ``,``
  before the fraction) into nanoseconds; ValueError when malformed.
- :func:`canonical_ns`: the hot-path reading of a canonical string (``--since``/``--until`` windows
  compare every record's time): cached whole seconds plus the fraction, 0 when absent or unreadable.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from datetime import datetime, timedelta

NS_PER_SECOND = 1_000_000_000
MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z

_EPOCH = datetime(1970, 1, 1)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_LENIENT_SPELLINGS = str.maketrans({"t": "T", "z": "Z", ",": "."})


def format_nanos(nanos: int) -> str:
    """Fraction as protojson writes it: '', .xxx, .xxxxxx or .xxxxxxxxx."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1000 == 0:
        return f".{nanos // 1000:06d}"
    return f".{nanos:09d}"


@functools.lru_cache(maxsize=4096)
def _whole_seconds_text(seconds: int) -> str:
    dt = _EPOCH + timedelta(seconds=seconds)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"


def format_timestamp(seconds: int, nanos: int) -> str:
    """Canonical RFC 3339 UTC text of a Timestamp's seconds/nanos pair."""
    return f"{_whole_seconds_text(seconds)}{format_nanos(nanos)}Z"


def format_ns(ns: int) -> str:
    """Canonical RFC 3339 UTC text of nanoseconds since the epoch."""
    seconds, nanos = divmod(ns, NS_PER_SECOND)
    return f"{_whole_seconds_text(seconds)}{format_nanos(nanos)}Z"


def parse_timestamp(text: str) -> tuple[int, int] | None:
    """(seconds, nanos) of an RFC 3339 text, None if invalid; raises OverflowError if out of range."""
    if len(text) >= 20 and text[-1] == "Z" and text[19] in "Z.":  # UTC: cached whole seconds
        fraction = text[20:-1]
        if text[19] == "Z":
            if len(text) != 20:
                return None
        elif not (fraction and len(fraction) <= 9 and fraction.isascii() and fraction.isdigit()):
            return None
        seconds = _utc_whole_seconds(text[:19])
        if seconds is None:
            return None
        return seconds, int(fraction.ljust(9, "0")) if fraction else 0
    return _parse_any_timestamp(text)


@functools.lru_cache(maxsize=4096)
def _utc_whole_seconds(whole: str) -> int | None:
    parsed = _parse_any_timestamp(whole + "Z")
    return None if parsed is None else parsed[0]


def _parse_any_timestamp(text: str) -> tuple[int, int] | None:
    found = _TIMESTAMP.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, frac, zone = found.groups()
    if frac is not None and len(frac) > 9:
        return None
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    delta = dt - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    if zone != "Z":
        off_h, off_m = int(zone[1:3]), int(zone[4:6])
        if off_h > 23 or off_m > 59:
            return None
        offset = off_h * 3600 + off_m * 60
        seconds -= offset if zone[0] == "+" else -offset
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise OverflowError(text)
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds, nanos


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of any RFC 3339 time (ValueError when malformed)."""
    try:
        parsed = parse_timestamp(text) or parse_timestamp(text.translate(_LENIENT_SPELLINGS))
    except OverflowError:
        parsed = None
    if parsed is None:
        raise ValueError(f"invalid timestamp {text!r}")
    return parsed[0] * NS_PER_SECOND + parsed[1]


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(whole: str) -> int:
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))


def canonical_ns(stamp: str | None) -> int:
    """Nanoseconds since the epoch of a canonical UTC timestamp; 0 when absent or unreadable."""
    if not stamp:
        return 0
    try:
        seconds = _epoch_seconds(stamp[:19])
    except ValueError:
        return 0
    fraction = stamp[20:-1] if len(stamp) > 20 and stamp[19] == "." else ""
    nanos = int(fraction.ljust(9, "0")[:9]) if fraction else 0
    return seconds * NS_PER_SECOND + nanos
