"""The shared timestamp conversions: canonical text <-> nanoseconds, strict and lenient parsing."""

from __future__ import annotations

import random

import orjson
import pytest

from hubblepy.codec.timestamps import (
    NS_PER_SECOND,
    _parse_any_timestamp,
    canonical_ns,
    format_ns,
    format_timestamp,
    parse_rfc3339_ns,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_709_251_190_140_000_000, "2024-02-29T23:59:50.140Z"),
        (1_709_251_206_828_926_466, "2024-03-01T00:00:06.828926466Z"),
        (1_000, "1970-01-01T00:00:00.000001Z"),
        (-62135596800 * NS_PER_SECOND, "0001-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_and_parse_round_trip(ns, text):
    assert format_ns(ns) == text
    assert format_timestamp(*divmod(ns, NS_PER_SECOND)) == text
    assert parse_timestamp(text) == divmod(ns, NS_PER_SECOND)
    assert parse_rfc3339_ns(text) == ns
    assert canonical_ns(text) == ns


def test_every_fixture_time_reads_the_same_on_all_paths(fixtures_dir):
    for line in (fixtures_dir / "flows.jsonl").read_bytes().splitlines():
        stamp = orjson.loads(line)["time"]
        ns = canonical_ns(stamp)
        assert parse_rfc3339_ns(stamp) == ns
        assert format_ns(ns) == stamp


def test_strict_parse_rejects_what_protojson_rejects():
    assert parse_timestamp("2024-02-30T00:00:00Z") is None  # no such day
    assert parse_timestamp("2024-01-01t00:00:00z") is None
    assert parse_timestamp("2024-01-01T00:00:00,5Z") is None
    assert parse_timestamp("2024-01-01T00:00:00.1234567891Z") is None  # 10 fraction digits
    assert parse_timestamp("2024-01-01T00:00:00+24:00") is None
    assert parse_timestamp("2024-01-01T02:00:00.5+02:00") == (1704067200, 500_000_000)
    with pytest.raises(OverflowError):
        parse_timestamp("0001-01-01T00:00:00+01:00")


def test_lenient_parse_accepts_other_rfc3339_spellings():
    assert parse_rfc3339_ns("2024-01-01t00:00:00,5z") == 1704067200 * NS_PER_SECOND + 500_000_000
    assert parse_rfc3339_ns("2024-07-04T14:00:00.123+02:00") == 1720094400 * NS_PER_SECOND + 123_000_000
    for bad in ("2024-07-04", "2024-02-30T00:00:00Z", "", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError, match="invalid timestamp"):
            parse_rfc3339_ns(bad)


def test_canonical_fast_path_is_zero_for_absent_or_unreadable():
    assert canonical_ns(None) == 0
    assert canonical_ns("") == 0
    assert canonical_ns("yesterday") == 0


def test_utc_fast_path_agrees_with_the_general_parse():
    """parse_timestamp's cached path for ``...Z`` texts gives what the full regex parse gives."""
    rng = random.Random(7)
    seeds = [
        "2024-02-29T23:59:50.140Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2023-02-29T00:00:00Z",
        "1970-01-01T00:00:00+01:00",
    ]
    alphabet = "0123456789.ZzT:+-,\u0663 "
    accepted = 0
    for _ in range(20000):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(chars))
            roll = rng.random()
            if roll < 0.4:
                chars[at] = rng.choice(alphabet)
            elif roll < 0.7:
                chars.insert(at, rng.choice(alphabet))
            else:
                del chars[at]
        text = "".join(chars)
        assert _outcome(parse_timestamp, text) == _outcome(_parse_any_timestamp, text), text
        accepted += _outcome(parse_timestamp, text) not in (None, "out of range")
    assert accepted > 1000  # the mutations leave plenty of valid texts


def _outcome(parse, text):
    try:
        return parse(text)
    except OverflowError:
        return "out of range"
