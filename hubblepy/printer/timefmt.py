"""Timestamp layouts of `hubble observe --time-format` (upstream hubble 1.19's Go time layouts).

Timestamps arrive as canonical RFC 3339 UTC strings (`2024-02-29T23:56:58.592508929Z`). They are
printed in UTC in one of Go's time layouts. Fractions are truncated, never rounded. A missing or
invalid timestamp prints `N/A`.

Formatting is on the per-flow hot path, so the part up to the seconds is cached: many flows share
the same second, and only the fraction has to be appended per flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

NOT_AVAILABLE = "N/A"

STAMP_MILLI = "StampMilli"
YEAR_MONTH_DAY = "YearMonthDay"
YEAR_MONTH_DAY_HOUR = "YearMonthDayHour"
YEAR_MONTH_DAY_HOUR_MINUTE = "YearMonthDayHourMinute"
RFC3339 = "RFC3339"
RFC3339_MILLI = "RFC3339Milli"
RFC3339_MICRO = "RFC3339Micro"
RFC3339_NANO = "RFC3339Nano"
RFC1123Z = "RFC1123Z"

TIME_FORMAT_NAMES = (
    STAMP_MILLI,
    YEAR_MONTH_DAY,
    YEAR_MONTH_DAY_HOUR,
    YEAR_MONTH_DAY_HOUR_MINUTE,
    RFC3339,
    RFC3339_MILLI,
    RFC3339_MICRO,
    RFC3339_NANO,
    RFC1123Z,
)
_BY_LOWER_NAME = {name.lower(): name for name in TIME_FORMAT_NAMES}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Any RFC 3339 timestamp, used only when the input is not in canonical `...Z` form.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)
_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_CACHE_LIMIT = 8192


def resolve_time_format(name: str | None) -> str:
    """The canonical layout name for a `--time-format` value; unknown names mean StampMilli."""
    if not name:
        return STAMP_MILLI
    return _BY_LOWER_NAME.get(name.lower(), STAMP_MILLI)


def _head_text(layout: str, moment: datetime) -> str:
    """Everything of the layout that depends on whole seconds only."""
    y, mo, d = moment.year, moment.month, moment.day
    h, mi, s = moment.hour, moment.minute, moment.second
    if layout == STAMP_MILLI:
        return f"{_MONTHS[mo - 1]} {d:>2} {h:02}:{mi:02}:{s:02}"
    if layout == YEAR_MONTH_DAY:
        return f"{y:04}-{mo:02}-{d:02}"
    if layout == YEAR_MONTH_DAY_HOUR:
        return f"{y:04}-{mo:02}-{d:02}T{h:02}Z"
    if layout == YEAR_MONTH_DAY_HOUR_MINUTE:
        return f"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}Z"
    if layout == RFC1123Z:
        return f"{_WEEKDAYS[moment.weekday()]}, {d:02} {_MONTHS[mo - 1]} {y:04} {h:02}:{mi:02}:{s:02} +0000"
    # RFC3339 family: the fraction and the `Z` are appended per timestamp.
    return f"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"


def _normalise(text: str) -> tuple[str, str] | None:
    """Split a non-canonical RFC 3339 timestamp into (UTC `YYYY-MM-DDTHH:MM:SS`, fraction digits)."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if m.group(8) is None:
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        moment = moment - offset if m.group(9) == "+" else moment + offset
    if not 1 <= moment.year <= 9999:
        return None
    seconds = f"{moment.year:04}-{moment.month:02}-{moment.day:02}T{moment.hour:02}:{moment.minute:02}:{moment.second:02}"
    return seconds, m.group(7) or ""


def make_timestamp_formatter(name: str | None) -> Callable[[object], str]:
    """Return a function that prints a canonical timestamp string in the named layout."""
    layout = resolve_time_format(name)
    heads: dict[str, str | None] = {}

    def head_of(seconds: str) -> str | None:
        head = heads.get(seconds, False)
        if head is False:
            head = None
            if _SECONDS.fullmatch(seconds) is not None:
                try:
                    moment = datetime(
                        int(seconds[0:4]),
                        int(seconds[5:7]),
                        int(seconds[8:10]),
                        int(seconds[11:13]),
                        int(seconds[14:16]),
                        int(seconds[17:19]),
                    )
                    head = _head_text(layout, moment)
                except ValueError:
                    head = None
            if len(heads) >= _CACHE_LIMIT:
                heads.clear()
            heads[seconds] = head
        return head  # type: ignore[return-value]

    def split(ts: object) -> tuple[str | None, str]:
        """(cached head text or None when invalid, fraction digits)."""
        if ts.__class__ is not str or len(ts) < 20:
            return None, ""
        text: str = ts
        if text[-1] == "Z":
            if len(text) == 20:
                return head_of(text[:19]), ""
            if text[19] == ".":
                frac = text[20:-1]
                if 0 < len(frac) <= 9 and frac.isdigit() and frac.isascii():
                    return head_of(text[:19]), frac
        parts = _normalise(text)
        if parts is None:
            return None, ""
        return head_of(parts[0]), parts[1]

    if layout == STAMP_MILLI:

        def fmt(ts: object) -> str:
            # Fast path: a canonical timestamp with a fraction, in a second already seen.
            if ts.__class__ is str and ts[19:20] == "." and ts[-1:] == "Z":
                head = heads.get(ts[:19])
                if head is not None:
                    frac: str = ts[20:-1]
                    if len(frac) <= 9 and frac.isdigit() and frac.isascii():
                        return f"{head}.{(frac + '000')[:3]}"
            head, frac = split(ts)
            if head is None:
                return NOT_AVAILABLE
            return f"{head}.{(frac + '000')[:3]}"

    elif layout in (RFC3339_MILLI, RFC3339_MICRO, RFC3339_NANO):
        digits = {RFC3339_MILLI: 3, RFC3339_MICRO: 6, RFC3339_NANO: 9}[layout]

        def fmt(ts: object) -> str:
            head, frac = split(ts)
            if head is None:
                return NOT_AVAILABLE
            frac = frac[:digits].rstrip("0")
            if frac:
                return f"{head}.{frac}Z"
            return head + "Z"

    elif layout == RFC3339:

        def fmt(ts: object) -> str:
            head, _ = split(ts)
            if head is None:
                return NOT_AVAILABLE
            return head + "Z"

    else:

        def fmt(ts: object) -> str:
            head, _ = split(ts)
            if head is None:
                return NOT_AVAILABLE
            return head

    return fmt
