"""Every dict the parser builds is already canonical: the codec's normaliser changes nothing.

``hubblepy.codec.decoder.normalize`` rebuilds a dict in canonical form from the flow.proto
descriptors (declaration order, defaults dropped, enum names, 64-bit strings, ...). Comparing the
JSON bytes before and after checks values and key order at every level.
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from parser_samples import RESOLVER, VALID_SAMPLES

from hubblepy.codec.decoder import normalize
from hubblepy.parser import Parser
from hubblepy.parser import encode as enc

NOW = 1_709_251_018_592_000_000


def assert_canonical(obj: dict, full_name: str) -> None:
    assert orjson.dumps(normalize(obj, full_name)) == orjson.dumps(obj)


def test_flows_of_every_layout_are_canonical() -> None:
    parser = Parser(RESOLVER, "node-a", node_labels=["zone=a"], emitter_version="1.19.4")
    flows = parser.decode_batch([(0, s) for s in VALID_SAMPLES], NOW)
    assert len(flows) == len(VALID_SAMPLES) - 1
    for flow in flows:
        assert_canonical(flow, "flow.Flow")
    assert_canonical(parser.debug_events[0], "flow.DebugEvent")


def test_unknown_enum_numbers_stay_numbers_and_are_canonical() -> None:
    parser = Parser(RESOLVER)
    flow = parser.decode(0, enc.drop_event(b"", reason=159), NOW)  # DropReason 159 has no name
    assert flow["drop_reason_desc"] == 159
    assert_canonical(flow, "flow.Flow")
    trace = parser.decode(0, enc.trace_event(b"", obs_point=14, reason=9), NOW)
    assert (trace["trace_observation_point"], trace["trace_reason"]) == (14, 9)
    assert_canonical(trace, "flow.Flow")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(VALID_SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0, max_value=120), st.integers(0, 255)), max_size=4),
)
def test_flows_of_mutated_samples_are_canonical(sample: bytes, edits: list[tuple[int, int]]) -> None:
    buf = bytearray(sample)
    for pos, value in edits:
        if pos < len(buf):
            buf[pos] = value
    parser = Parser(RESOLVER, "n")
    for flow in parser.decode_batch([(0, bytes(buf))], NOW):
        assert_canonical(flow, "flow.Flow")
    for event in parser.debug_events:
        assert_canonical(event, "flow.DebugEvent")
