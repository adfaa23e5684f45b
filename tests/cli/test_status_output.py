"""`hubble status` text output against upstream's for the same ServerStatusResponse values."""

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from hubblepy.api.observer import observer_pb2
from hubblepy.cli.status import format_status, group_thousands
from hubblepy.cli.timeparse import format_go_duration as go_duration_ns
from hubblepy.observer.service import parse_lost_counts

CASES = json.loads((Path(__file__).parent / "fixtures" / "status_upstream.json").read_text())["cases"]


def status(values):
    return json_format.ParseDict(values, observer_pb2.ServerStatusResponse())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
@pytest.mark.parametrize("output", ["compact", "dict", "table"])
def test_matches_upstream(case, output):
    assert format_status(status(case["status"]), output) == case[output]


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0"), (999, "999"), (1000, "1,000"), (8190, "8,190"), (1234567, "1,234,567")]
)
def test_grouping(n, text):
    assert group_thousands(n) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_234_567, "1.234567ms"),
        (1_000_000_000, "1s"),
        (61_000_000_000, "1m1s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (1 << 63, "9223372036854775808ns"),
    ],
)
def test_go_duration(ns, text):
    assert go_duration_ns(ns) == text


def test_a_hubblepy_node_shows_what_it_lost():
    ss = observer_pb2.ServerStatusResponse(
        num_flows=4095, max_flows=4095, seen_flows=10000, uptime_ns=10**9, flows_rate=5.0
    )
    base = format_status(ss)
    assert format_status(ss, lost={"lost_perf_events": 0}) == base
    trailer = parse_lost_counts("lost_perf_events=1234;ring_overwritten=5905;ring_readers_lost=7;bogus=1")
    assert format_status(ss, lost=trailer) == base + (
        "Lost Events (perf buffer): 1,234\nRing Overwritten: 5,905\nLost Events (slow readers): 7\n"
    )
    assert format_status(ss, "dict", lost=trailer) == format_status(ss, "dict")
