"""Time values of `hubble observe --since/--until`, parsed the way upstream (Go) parses them.

A bound is tried, in order, as a Go duration (``90s``, ``1h30m``, ``-1h``: the bound is *now minus
the duration*), then as each of the date/time layouts upstream accepts: ``2006-01-02``,
``2006-01-02T15Z07:00``, ``2006-01-02T15:04Z07:00``, RFC 3339 (fraction optional, up to 9 digits
used, ``.`` or ``,``), and RFC 1123 with a numeric zone. The first form that parses wins; otherwise
the error text is ``failed to convert <value> to time``.

Everything works in integer nanoseconds since the Unix epoch (UTC), without ``datetime`` range
limits, and follows Go's ``time.Parse`` rules: fixed two-digit months, days, minutes and seconds,
one- or two-digit hours, day-of-month checked against the month, a run of spaces in a layout
matching one or more spaces, and weekday names accepted but not checked against the date.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hubblepy.gotext import go_quote

NS_PER_SECOND = 1_000_000_000
_MAX_INT64 = (1 << 63) - 1

# Go's time.ParseDuration units.
_DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3600 * NS_PER_SECOND,
}

_SHORT_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SHORT_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

# Layouts as token lists. Tokens: YEAR (4 digits), MONTH (2 digits), MONTHNAME, DAY (2 digits),
# WEEKDAY, HOUR (1-2 digits), MINUTE (2 digits), SECOND (2 digits, optional fraction follows),
# ZCOLON (``Z`` or ``±hh:mm``), NUMTZ (``±hhmm``); anything else is a literal.
_LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("YEAR", "-", "MONTH", "-", "DAY"),
    ("YEAR", "-", "MONTH", "-", "DAY", "T", "HOUR", "ZCOLON"),
    ("YEAR", "-", "MONTH", "-", "DAY", "T", "HOUR", ":", "MINUTE", "ZCOLON"),
    ("YEAR", "-", "MONTH", "-", "DAY", "T", "HOUR", ":", "MINUTE", ":", "SECOND", "ZCOLON"),
    (
        "WEEKDAY",
        ", ",
        "DAY",
        " ",
        "MONTHNAME",
        " ",
        "YEAR",
        " ",
        "HOUR",
        ":",
        "MINUTE",
        ":",
        "SECOND",
        " ",
        "NUMTZ",
    ),
)


class TimeParseError(ValueError):
    """A value that is neither a Go duration nor an accepted date/time layout."""


class DurationError(ValueError):
    """A malformed Go duration; the text is Go's own error message."""


def parse_go_duration(text: str) -> int:
    """Parse a Go duration (``1h30m``, ``-90s``, ``1.5ms``, ``0``) into integer nanoseconds.

    Raises :class:`DurationError` with Go's message (``time: invalid duration "x"``,
    ``time: missing unit in duration "1"``, ``time: unknown unit "d" in duration "1d"``).
    """
    invalid = DurationError("time: invalid duration " + go_quote(text))
    rest = text
    negative = False
    if rest and rest[0] in "+-":
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise invalid
        # whole part
        i = 0
        whole = 0
        while i < len(rest) and "0" <= rest[i] <= "9":
            whole = whole * 10 + ord(rest[i]) - 48
            if whole > 1 << 63:
                raise invalid
            i += 1
        had_whole = i > 0
        rest = rest[i:]
        frac = 0
        scale = 1
        had_frac = False
        if rest.startswith("."):
            rest = rest[1:]
            i = 0
            overflow = False
            while i < len(rest) and "0" <= rest[i] <= "9":
                if not overflow:
                    if frac > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        candidate = frac * 10 + ord(rest[i]) - 48
                        if candidate > 1 << 63:
                            overflow = True
                        else:
                            frac = candidate
                            scale *= 10
                i += 1
            had_frac = i > 0
            rest = rest[i:]
        if not had_whole and not had_frac:
            raise invalid
        i = 0
        while i < len(rest) and not (rest[i] == "." or "0" <= rest[i] <= "9"):
            i += 1
        if i == 0:
            raise DurationError("time: missing unit in duration " + go_quote(text))
        unit_name = rest[:i]
        rest = rest[i:]
        unit = _DURATION_UNITS.get(unit_name)
        if unit is None:
            raise DurationError(
                "time: unknown unit " + go_quote(unit_name) + " in duration " + go_quote(text)
            )
        if whole > (1 << 63) // unit:
            raise invalid
        value = whole * unit
        if frac > 0:
            value += int(float(frac) * (float(unit) / float(scale)))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > _MAX_INT64:
        raise invalid
    return total


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (any year)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _two_digits(value: str, pos: int, fixed: bool) -> tuple[int, int] | None:
    """Go's getnum: one or two digits (exactly two when ``fixed``)."""
    if pos >= len(value) or not value[pos].isascii() or not value[pos].isdigit():
        return None
    if pos + 1 >= len(value) or not value[pos + 1].isascii() or not value[pos + 1].isdigit():
        if fixed:
            return None
        return int(value[pos]), pos + 1
    return int(value[pos : pos + 2]), pos + 2


def _is_digit(value: str, pos: int) -> bool:
    return pos < len(value) and "0" <= value[pos] <= "9"


def _parse_layout(layout: tuple[str, ...], value: str) -> int | None:
    """Parse ``value`` with one layout; return ns since the epoch (UTC) or None."""
    pos = 0
    year = 0
    month = 1
    day = 1
    hour = minute = second = 0
    nanos = 0
    offset = 0
    for token in layout:
        if token == "YEAR":
            if not all(_is_digit(value, pos + k) for k in range(4)):
                return None
            year = int(value[pos : pos + 4])
            pos += 4
        elif token in ("MONTH", "DAY", "MINUTE", "SECOND"):
            got = _two_digits(value, pos, fixed=True)
            if got is None:
                return None
            number, pos = got
            if token == "MONTH":
                month = number
                if not 1 <= month <= 12:
                    return None
            elif token == "DAY":
                day = number
            elif token == "MINUTE":
                minute = number
                if minute >= 60:
                    return None
            else:
                second = number
                if second >= 60:
                    return None
                # A fraction may follow even though the layout has none (Go accepts it).
                if pos + 1 < len(value) and value[pos] in ".," and _is_digit(value, pos + 1):
                    end = pos + 1
                    while _is_digit(value, end):
                        end += 1
                    digits = value[pos + 1 : end][:9]
                    nanos = int(digits) * 10 ** (9 - len(digits))
                    pos = end
        elif token == "HOUR":
            got = _two_digits(value, pos, fixed=False)
            if got is None:
                return None
            hour, pos = got
            if hour >= 24:
                return None
        elif token == "MONTHNAME":
            name = value[pos : pos + 3].lower()
            if name not in _SHORT_MONTH_NAMES:
                return None
            month = _SHORT_MONTH_NAMES.index(name) + 1
            pos += 3
        elif token == "WEEKDAY":
            if value[pos : pos + 3].lower() not in _SHORT_DAY_NAMES:
                return None
            pos += 3
        elif token == "ZCOLON":
            if pos < len(value) and value[pos] == "Z":
                pos += 1
                offset = 0
            else:
                zone = value[pos : pos + 6]
                if len(zone) < 6 or zone[0] not in "+-" or zone[3] != ":":
                    return None
                hours = _two_digits(zone, 1, fixed=True)
                mins = _two_digits(zone, 4, fixed=True)
                if hours is None or mins is None or hours[0] > 24 or mins[0] > 60:
                    return None
                offset = hours[0] * 3600 + mins[0] * 60
                if zone[0] == "-":
                    offset = -offset
                pos += 6
        elif token == "NUMTZ":
            zone = value[pos : pos + 5]
            if len(zone) < 5 or zone[0] not in "+-":
                return None
            hours = _two_digits(zone, 1, fixed=True)
            mins = _two_digits(zone, 3, fixed=True)
            if hours is None or mins is None or hours[0] > 24 or mins[0] > 60:
                return None
            offset = hours[0] * 3600 + mins[0] * 60
            if zone[0] == "-":
                offset = -offset
            pos += 5
        else:
            pos = _skip_literal(token, value, pos)
            if pos < 0:
                return None
    if pos != len(value):
        return None
    if day < 1 or day > _days_in_month(year, month):
        return None
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * NS_PER_SECOND + nanos


def _skip_literal(literal: str, value: str, pos: int) -> int:
    """Match a layout literal; a space in the layout matches one or more spaces (Go's skip)."""
    i = 0
    while i < len(literal):
        if literal[i] == " ":
            if pos < len(value) and value[pos] != " ":
                return -1
            while i < len(literal) and literal[i] == " ":
                i += 1
            while pos < len(value) and value[pos] == " ":
                pos += 1
            continue
        if pos >= len(value) or value[pos] != literal[i]:
            return -1
        i += 1
        pos += 1
    return pos


def datetime_to_ns(moment: datetime) -> int:
    """Integer nanoseconds since the epoch for an aware (or UTC-naive) datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def parse_time_bound(value: str, now: datetime | int) -> int:
    """Parse a ``--since``/``--until`` value into ns since the epoch (UTC).

    ``now`` (a datetime, or ns since the epoch) anchors relative durations. Raises
    :class:`TimeParseError` with upstream's text ``failed to convert <value> to time``.
    """
    try:
        duration = parse_go_duration(value)
    except DurationError:
        pass
    else:
        now_ns = now if isinstance(now, int) else datetime_to_ns(now)
        return now_ns - duration
    for layout in _LAYOUTS:
        parsed = _parse_layout(layout, value)
        if parsed is not None:
            return parsed
    raise TimeParseError(f"failed to convert {value} to time")


def parse_rfc3339_ns(text: str) -> int:
    """ns since the epoch of an RFC 3339 timestamp (the codec's reading); :class:`TimeParseError` if not one."""
    from hubblepy.codec.timestamps import parse_rfc3339_ns as parse

    try:
        return parse(text)
    except ValueError:
        raise TimeParseError(f"failed to convert {text} to time") from None


def _trim_fraction(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration(ns).String()``; values beyond int64 are printed as ``<n>ns``."""
    if ns > (1 << 63) - 1:
        return f"{ns}ns"
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        for unit, scale in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if u < scale * 1000:
                whole, frac = divmod(u, scale)
                digits = len(str(scale)) - 1
                text = f"{whole}.{frac:0{digits}d}" if digits else str(whole)
                return sign + _trim_fraction(text) + unit
    seconds, frac = divmod(u, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = _trim_fraction(f"{secs}.{frac:09d}") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{sign}{minutes}m{sec_text}"
    return sign + sec_text
