"""--since/--until values: Go durations and the date/time layouts upstream accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hubblepy.cli.timeparse import (
    DurationError,
    TimeParseError,
    go_quote,
    parse_go_duration,
    parse_rfc3339_ns,
    parse_time_bound,
)

NOW = datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC)
NOW_NS = 1709251200 * 10**9
S = 10**9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", NOW_NS - 90 * S),
        ("5m", NOW_NS - 300 * S),
        ("1h30m", NOW_NS - 5400 * S),
        ("-1h", NOW_NS + 3600 * S),
        ("1.5ms", NOW_NS - 1_500_000),
        ("2us", NOW_NS - 2000),
        ("2\u00b5s", NOW_NS - 2000),
        ("0", NOW_NS),
        ("2024-03-01", 1709251200 * S),
        ("2024-03-01T00Z", 1709251200 * S),
        ("2024-07-04T14+02:00", 1720094400 * S),
        ("2024-07-04T4Z", 1720065600 * S),  # Go accepts a one-digit hour
        ("2024-02-29T23:59Z", 1709251140 * S),
        ("2024-02-29T23:59:50Z", 1709251190 * S),
        ("2024-02-29T23:59:50.14Z", 1709251190 * S + 140_000_000),
        ("2024-02-29T23:59:50.140881309+00:00", 1709251190 * S + 140_881_309),
        ("2024-02-29T23:59:50,5Z", 1709251190 * S + 500_000_000),
        ("2024-02-29T23:59:50.1234567891234Z", 1709251190 * S + 123_456_789),
        ("2024-03-01T01:00:00+01:00", 1709251200 * S),
        ("Thu, 29 Feb 2024 23:57:10 +0000", 1709251030 * S),
        ("Mon, 29 Feb 2024 23:57:10 +0000", 1709251030 * S),  # weekday not checked
        ("Thu, 29 Feb 2024 23:57:10 -0130", 1709251030 * S + 5400 * S),
    ],
)
def test_accepted_values(value: str, expected: int) -> None:
    assert parse_time_bound(value, NOW) == expected
    assert parse_time_bound(value, NOW_NS) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Feb 29 23:59:00.000",  # StampMilli is listed by --help but not accepted
        "2024-07-04T12:30:00",  # no zone
        "2024-07-04 12:30:00Z",  # space instead of T
        "2024-3-01",  # single-digit month
        "2024-02-30",  # day out of range
        "2023-02-29",
        "2024-13-01",
        "2024-03-01T24Z",
        "2024-03-01T10:60Z",
        "2024-03-01T10:00:00z",
        "2024-03-01T10:00:00+0100",
        "last tuesday",
        "1d",
        "",
        "2024-03-01 ",
    ],
)
def test_rejected_values(value: str) -> None:
    with pytest.raises(TimeParseError) as info:
        parse_time_bound(value, NOW)
    assert str(info.value) == f"failed to convert {value} to time"


def test_zone_of_the_machine_does_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    assert parse_time_bound("2024-03-01", NOW) == 1709251200 * S


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        ("1h30m", 5400 * S),
        ("+5m", 300 * S),
        ("-1.5h", -5400 * S),
        (".5s", S // 2),
        ("1h1m1s1ms1us1ns", 3661 * S + 1_001_001),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
    ],
)
def test_go_durations(value: str, ns: int) -> None:
    assert parse_go_duration(value) == ns


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x", 'time: invalid duration "x"'),
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1h.", 'time: invalid duration "1h."'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ],
)
def test_go_duration_errors(value: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_go_duration(value)
    assert str(info.value) == message


def test_rfc3339_helper() -> None:
    assert parse_rfc3339_ns("2024-07-04T14:00:00.123+02:00") == 1720094400 * S + 123_000_000
    assert parse_rfc3339_ns("1970-01-01T00:00:00Z") == 0
    with pytest.raises(TimeParseError):
        parse_rfc3339_ns("2024-07-04")


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("\n\t\x1b\x7f") == '"\\n\\t\\x1b\\x7f"'
    assert go_quote("é") == '"é"'
