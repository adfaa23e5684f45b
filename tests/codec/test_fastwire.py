"""The constructor-based wire encoder gives exactly the bytes of the field-by-field one.

Over every flow of the fixture corpus (the recorded upstream flows, the shipped sample capture and
the flow generator's mix), over random responses that set every kind of field (64-bit integers,
bytes, wrappers, Any, timestamps, floats, unknown enum numbers), and for input the constructor
refuses (camelCase keys, other time spellings, unknown keys, bad values).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from codec.test_codec_hypothesis import _draw_response
from hypothesis import given, settings
from hypothesis import strategies as st

from hubblepy.api.observer import observer_pb2
from hubblepy.codec import DecodeError, dict_to_message, message_to_dict
from hubblepy.codec.fastwire import WireEncoder
from hubblepy.sample.flowgen import mixed_flows, payments_story

REPO = Path(__file__).resolve().parents[2]
CORPUS = [REPO / "tests" / "fixtures" / "flows.jsonl", REPO / "hubblepy" / "sample" / "payments-sample.jsonl"]
RESPONSE = observer_pb2.GetFlowsResponse
ENCODER = WireEncoder(RESPONSE)


def _slow(d: dict) -> bytes:
    return dict_to_message(d, RESPONSE, lenient=True).SerializeToString()


def _corpus() -> list[dict]:
    records = [
        orjson.loads(line) for path in CORPUS for line in path.read_bytes().splitlines() if line.strip()
    ]
    records += list(payments_story())
    records += list(mixed_flows(3000))
    return records


def test_every_corpus_flow_is_byte_identical():
    records = _corpus()
    assert len(records) > 3000
    for record in records:
        before = orjson.dumps(record)
        assert ENCODER.encode(record) == _slow(record), record
        assert orjson.dumps(record) == before  # the ring's dict is left as it was


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_responses_with_every_field_kind_are_byte_identical(data):
    msg = _draw_response(data)
    d = message_to_dict(msg)
    assert ENCODER.encode(d) == _slow(d) == msg.SerializeToString()


@pytest.mark.parametrize(
    "record",
    [
        {"flow": {"time": "2024-02-29t23:56:58,5z", "verdict": "DROPPED"}},  # lenient time spelling
        {"flow": {"time": "2024-02-29T23:56:58.5+02:00"}},
        {"flow": {"sourceNames": ["a"], "is_reply": True}},  # camelCase key
        {"flow": {"cgroup_id": 7, "socket_cookie": "18446744073709551615"}},
        {"flow": {"verdict": 2, "Type": "L7", "l7": {"latency_ns": "12", "http": {"code": 200}}}},
        {"flow": {"not_a_field": 1, "verdict": "FORWARDED"}, "node_name": "n"},  # skipped leniently
        {"flow": {"source": {"labels": ["a"], "ID": 3}}, "time": "1970-01-01T00:00:00Z"},
        {"flow": {"verdict": None, "uuid": "u"}},
    ],
)
def test_input_the_constructor_refuses_takes_the_slow_path(record):
    assert ENCODER.encode(record) == _slow(record)


@pytest.mark.parametrize(
    "record",
    [
        {"flow": {"verdict": "NOT_A_VERDICT"}},
        {"flow": {"time": "yesterday"}},
        {"flow": {"cgroup_id": "x"}},
        {"flow": {"source": {"ID": "3"}}},
    ],
)
def test_bad_values_raise_the_slow_paths_error(record):
    with pytest.raises(DecodeError) as slow:
        _slow(record)
    with pytest.raises(DecodeError) as fast:
        ENCODER.encode(record)
    assert str(fast.value) == str(slow.value)
