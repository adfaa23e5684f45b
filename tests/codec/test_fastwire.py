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
from hubblepy.codec.fastwire import WireEncoder, _Fallback
from hubblepy.sample.flowgen import mixed_flows, payments_story

REPO = Path(__file__).resolve().parents[2]
CORPUS = [
    REPO / "tests" / "fixtures" / "flows.jsonl",
    REPO / "hubblepy" / "sample" / "payments-sample.jsonl",
    REPO / "hubblepy" / "sample" / "pci-cde-sample.jsonl",
]
RESPONSE = observer_pb2.GetFlowsResponse
ENCODER = WireEncoder(RESPONSE)


def _slow(d: dict) -> bytes:
    return dict_to_message(d, RESPONSE, lenient=True).SerializeToString()


def _direct(d: dict) -> bytes | None:
    """The direct writer's bytes of ``d`` (None when it hands ``d`` to the constructor path)."""
    try:
        return ENCODER.level.write(d)
    except (_Fallback, KeyError, TypeError, ValueError):
        return None


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
        slow = _slow(record)
        assert ENCODER.encode(record) == slow, record
        assert _direct(record) in (None, slow), record
        assert orjson.dumps(record) == before  # the ring's dict is left as it was


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_responses_with_every_field_kind_are_byte_identical(data):
    msg = _draw_response(data)
    d = message_to_dict(msg)
    assert ENCODER.encode(d) == _slow(d) == msg.SerializeToString()
    assert _direct(d) in (None, msg.SerializeToString())


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
    assert _direct(record) in (None, _slow(record))


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


def _parser_responses() -> list[dict]:
    """Responses of flows decoded by the node's parser, whose flows share their sub-dicts."""
    from hubblepy.parser import EndpointInfo, Parser, StaticResolver
    from hubblepy.parser import encode as enc

    resolver = StaticResolver()
    for i in range(4):
        resolver.add_endpoint(
            EndpointInfo(
                id=100 + i,
                identity=10000 + i,
                namespace="ns",
                pod_name=f"pod-{i}",
                labels=(f"k8s:app=pod-{i}", "k8s:io.kubernetes.pod.namespace=ns"),
                workloads=((f"pod-{i}", "Deployment"),),
                ips=(f"10.0.0.{i + 1}",),
            )
        )
        resolver.set_interface(1000 + i, f"lxc{i}")
    parser = Parser(resolver, "node-1", node_labels=("zone=a",))
    samples = []
    for i in range(600):
        src, dst = f"10.0.0.{i % 4 + 1}", f"10.0.0.{(i + 1) % 4 + 1}"
        tcp = enc.tcp(30000 + i, 8080, (enc.TCP_SYN, enc.TCP_ACK, enc.TCP_PSH | enc.TCP_ACK)[i % 3])
        packet = enc.ethernet(enc.ipv4(src, dst, 6, tcp))
        ep = 100 + i % 4
        if i % 3 == 0:
            data = enc.trace_event(
                packet, obs_point=5, source=ep, src_label=10000 + i % 4, ifindex=1000 + i % 4
            )
        elif i % 3 == 1:
            data = enc.drop_event(packet, reason=133, source=ep, src_label=10000 + i % 4, line=12, file=2)
        else:
            data = enc.policy_verdict_event(
                packet,
                source=ep,
                remote_label=10000 + (i + 1) % 4,
                dst_port=8080,
                flags=enc.policy_verdict_flags(2),
            )
        samples.append((0, data))
    flows = parser.decode_batch(samples, 1_700_000_000_123_456_789)
    return [{"flow": f, "node_name": "node-1", "time": f["time"]} for f in flows]


def test_parser_flows_with_shared_sub_dicts_are_byte_identical():
    responses = _parser_responses()
    assert responses[0]["flow"]["source"] is responses[4]["flow"]["source"]  # kept bytes are used
    encoder = WireEncoder(RESPONSE)
    for _ in range(2):
        for response in responses:
            assert encoder.encode(response) == _slow(response)
    assert encoder.plain_left == 0  # shared sub-dicts: the direct writer was used throughout


def test_one_dict_in_different_fields_gets_each_fields_tag():
    records = [r for r in _corpus()[:400] if "source" in r.get("flow", {})]
    pool = [records[i]["flow"]["source"] for i in range(3)]
    for i, record in enumerate(records):
        flow = dict(
            record["flow"], source=pool[i % 3], destination=pool[(i + 1) % 3], node_labels=pool[0]["labels"]
        )
        response = dict(record, flow=flow)
        assert ENCODER.level.write(response) == _slow(response)
