"""capture_batch/materialize: undecoded RawFlow records give the same flows as decode_batch."""

from __future__ import annotations

import re

from hubblepy.parser import EndpointInfo, Parser, RawFlow, StaticResolver, format_uuid4
from hubblepy.parser import encode as enc

NOW = 1_709_251_018_592_508_929


def make_parser() -> Parser:
    r = StaticResolver()
    r.add_endpoint(EndpointInfo(id=3, identity=777, pod_name="a", ips=("10.0.0.3",)))
    return Parser(r, "n")


def tcp_trace() -> bytes:
    return enc.trace_event(
        enc.ethernet(enc.ipv4("10.0.0.3", "10.0.0.4", 6, enc.tcp(1, 80, enc.TCP_SYN))), source=3
    )


def test_materialize_matches_decode_batch_and_keeps_uuid() -> None:
    samples = [(0, tcp_trace()), (1, enc.drop_event(b"", reason=181)), (0, enc.policy_verdict_event(b""))]
    eager = make_parser().decode_batch(samples, NOW)
    parser = make_parser()
    records = parser.capture_batch(samples, NOW)
    assert [type(r) for r in records] == [RawFlow] * 3
    lazy = parser.materialize(records)
    again = parser.materialize(records)
    assert [f["uuid"] for f in lazy] == [f["uuid"] for f in again]  # fixed at capture time
    for a, b in zip(eager, lazy, strict=True):
        assert {k: v for k, v in a.items() if k != "uuid"} == {k: v for k, v in b.items() if k != "uuid"}
        assert list(a) == list(b)
    assert parser.flows_decoded == 6


def test_capture_routes_debug_and_counts_bad_samples_materialize_counts_malformed() -> None:
    parser = make_parser()
    records = parser.capture_batch(
        [(0, b""), (0, b"\x09abc"), (2, enc.debug_event(3, source=3)), (0, tcp_trace()[:40])], NOW
    )
    assert len(records) == 1  # only the (truncated) trace is kept
    assert parser.error_counts == {"empty_sample": 1, "invalid_type": 1}
    assert parser.debug_events[0]["type"] == "DBG_ENCAP" and parser.debug_events[0]["cpu"] == 2
    assert parser.materialize(records) == []
    assert parser.error_counts["truncated_header"] == 1
    assert parser.parse_errors == 3


def test_format_uuid4_forces_version_and_variant() -> None:
    text = format_uuid4(b"\xff" * 16)
    assert text == "ffffffff-ffff-4fff-bfff-ffffffffffff"
    assert re.match(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", format_uuid4(bytes(16))
    )
