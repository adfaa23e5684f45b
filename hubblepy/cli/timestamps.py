"""Canonical RFC 3339 timestamps (``2024-02-29T23:59:50.14Z`` style) to nanoseconds, fast.

Records are compared with ``--since``/``--until`` by their top-level ``time``. Canonical dicts hold
it as a UTC string with ``Z``; the whole-second part is converted once and cached, so a stream of
nearby timestamps costs a dictionary hit and a fraction parse.
"""

from __future__ import annotations

import calendar
import functools
import time

_NS_PER_SECOND = 1_000_000_000


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(whole: str) -> int:
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))


def timestamp_ns(stamp: str | None) -> int:
    """Nanoseconds since the epoch for a canonical UTC timestamp; 0 when absent or unreadable."""
    if not stamp:
        return 0
    try:
        seconds = _epoch_seconds(stamp[:19])
    except ValueError:
        return 0
    fraction = stamp[20:-1] if len(stamp) > 20 and stamp[19] == "." else ""
    nanos = int(fraction.ljust(9, "0")[:9]) if fraction else 0
    return seconds * _NS_PER_SECOND + nanos
