"""Hypothesis: random, truncated and mutated samples never raise; every sample is accounted for."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_samples import RESOLVER, VALID_SAMPLES

from hubblepy.parser import Parser

NOW = 1_700_000_000_000_000_001


def _accounted(parser: Parser, samples: list[tuple[int, bytes]]) -> list[dict]:
    before = (parser.parse_errors, parser.debug_events_decoded, parser.skipped)
    flows = parser.decode_batch(samples, NOW)
    errors = parser.parse_errors - before[0]
    debug = parser.debug_events_decoded - before[1]
    skipped = parser.skipped - before[2]
    assert len(flows) + errors + debug + skipped == len(samples)
    assert parser.error_counts["internal_error"] == 0, parser.last_error
    for flow in flows:
        orjson.dumps(flow)  # always serialisable
        assert flow["Type"] in ("L3_L4", "SOCK", "L7")
    return flows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 129, 255]),
            st.binary(max_size=220),
        ).map(lambda t: bytes([t[0]]) + t[1]),
        max_size=12,
    )
)
def test_random_bytes_never_raise(samples: list[bytes]) -> None:
    parser = Parser(RESOLVER, "n")
    _accounted(parser, [(0, s) for s in samples])
    lazy = Parser(RESOLVER, "n")
    records = lazy.capture_batch([(0, s) for s in samples], NOW)
    flows = lazy.materialize(records)
    assert len(flows) + lazy.parse_errors + lazy.debug_events_decoded + lazy.skipped == len(samples)
    assert lazy.error_counts["internal_error"] == 0, lazy.last_error


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID_SAMPLES), st.data())
def test_truncated_samples_never_raise(sample: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(sample)))
    parser = Parser(RESOLVER)
    _accounted(parser, [(0, sample[:cut])])


def test_every_prefix_of_every_layout() -> None:
    parser = Parser(RESOLVER)
    for sample in VALID_SAMPLES:
        samples = [(0, sample[:cut]) for cut in range(len(sample) + 1)]
        _accounted(parser, samples)
    assert parser.error_counts["truncated_header"] > 0
    assert parser.error_counts["empty_sample"] == len(VALID_SAMPLES)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID_SAMPLES),
    st.lists(st.tuples(st.integers(min_value=0, max_value=300), st.integers(0, 255)), max_size=6),
)
def test_mutated_samples_never_raise(sample: bytes, edits: list[tuple[int, int]]) -> None:
    buf = bytearray(sample)
    for pos, value in edits:
        if pos < len(buf):
            buf[pos] = value
    parser = Parser(RESOLVER)
    _accounted(parser, [(0, bytes(buf))])


def test_valid_samples_all_decode() -> None:
    parser = Parser(RESOLVER)
    flows = _accounted(parser, [(0, s) for s in VALID_SAMPLES])
    assert parser.parse_errors == 0
    assert len(flows) == len(VALID_SAMPLES) - 1  # the debug message is not a flow
