"""message_to_dict / dict_to_message against protobuf's json_format, on every fixture flow."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import json_format

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2
from hubblepy.codec import DecodeError, dict_to_message, encode_response, message_to_dict


def _fixture_lines(fixtures_dir):
    return (fixtures_dir / "flows.jsonl").read_bytes().splitlines()


def test_message_to_dict_equals_fixture_lines(fixtures_dir):
    for line in _fixture_lines(fixtures_dir):
        msg = json_format.Parse(line, observer_pb2.GetFlowsResponse())
        record = message_to_dict(msg)
        assert encode_response(record) == line  # same keys, values and declaration order
        assert record == json_format.MessageToDict(msg, preserving_proto_field_name=True)


def test_dict_to_message_equals_json_format(fixtures_dir):
    for line in _fixture_lines(fixtures_dir):
        expected = json_format.Parse(line, observer_pb2.GetFlowsResponse())
        built = dict_to_message(orjson.loads(line), observer_pb2.GetFlowsResponse)
        assert built == expected
        assert built.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
        flow_only = dict_to_message(orjson.loads(line)["flow"], flow_pb2.Flow())
        assert flow_only == expected.flow


def test_round_trip_of_special_values():
    msg = observer_pb2.GetFlowsResponse()
    msg.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    msg.lost_events.num_events_lost = 2**64 - 1
    msg.lost_events.cpu.value = 0  # a wrapper holding zero stays present
    msg.time.seconds, msg.time.nanos = -62135596800, 1000
    record = message_to_dict(msg)
    assert record == {
        "lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": "18446744073709551615", "cpu": 0},
        "time": "0001-01-01T00:00:00.000001Z",
    }
    assert dict_to_message(record, observer_pb2.GetFlowsResponse) == msg

    flow = flow_pb2.Flow(verdict=77, uuid="u")
    flow.l4.TCP.SetInParent()
    flow.extensions.Pack(flow_pb2.Emitter(name="e"))
    record = message_to_dict(flow)
    assert record == {
        "uuid": "u",
        "verdict": 77,
        "l4": {"TCP": {}},
        "extensions": {"@type": "type.googleapis.com/flow.Emitter", "name": "e"},
    }
    assert dict_to_message(record, flow_pb2.Flow) == flow


def test_status_response_double_and_wrappers():
    status = observer_pb2.ServerStatusResponse(num_flows=4095, max_flows=4095, flows_rate=1.0, version="v")
    status.num_connected_nodes.value = 0
    record = message_to_dict(status)
    assert record == {
        "num_flows": "4095",
        "max_flows": "4095",
        "num_connected_nodes": 0,
        "version": "v",
        "flows_rate": 1,
    }
    assert dict_to_message(record, observer_pb2.ServerStatusResponse) == status


def test_dict_to_message_rejects_unknown_fields():
    with pytest.raises(DecodeError, match="unknown field"):
        dict_to_message({"bogus": 1}, flow_pb2.FlowFilter)
    with pytest.raises(DecodeError, match="invalid value"):
        dict_to_message({"verdict": "NOPE"}, flow_pb2.Flow)


def test_lenient_fill_skips_unknown_keys_and_reads_any_rfc3339_time(fixtures_dir):
    for line in _fixture_lines(fixtures_dir):
        strict = dict_to_message(orjson.loads(line), observer_pb2.GetFlowsResponse)
        assert dict_to_message(orjson.loads(line), observer_pb2.GetFlowsResponse(), lenient=True) == strict
    record = {"time": "2024-02-29t23:59:50,14+01:00", "future_field": 1, "flow": {"uuid": "u", "new": {}}}
    with pytest.raises(DecodeError, match='unknown field "future_field"'):
        dict_to_message({"future_field": 1}, observer_pb2.GetFlowsResponse)
    built = dict_to_message(record, observer_pb2.GetFlowsResponse, lenient=True)
    assert message_to_dict(built) == {"flow": {"uuid": "u"}, "time": "2024-02-29T22:59:50.140Z"}
    with pytest.raises(DecodeError, match=r"invalid value for field observer.GetFlowsResponse.time"):
        dict_to_message({"time": "2024-02-29t23:59:50Z"}, observer_pb2.GetFlowsResponse)
    with pytest.raises(DecodeError, match=r"invalid value for field flow.Flow.uuid"):
        dict_to_message({"flow": {"uuid": 5}}, observer_pb2.GetFlowsResponse, lenient=True)
