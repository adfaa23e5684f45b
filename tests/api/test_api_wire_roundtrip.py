"""Binary round trips of hubblepy.api messages, checked down to field tags on the wire,
plus a real loopback gRPC call through the generated stubs (checks the RPC paths)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2, json_format, timestamp_pb2, wrappers_pb2

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.api.peer import peer_pb2, peer_pb2_grpc
from hubblepy.api.relay import relay_pb2

WIRE_VARINT, WIRE_I64, WIRE_LEN, WIRE_I32 = 0, 1, 2, 5


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def wire_fields(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split one message level into (field number, wire type, raw payload) in wire order."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        start = pos
        if wire_type == WIRE_VARINT:
            _, pos = _read_varint(data, pos)
            payload = data[start:pos]
        elif wire_type == WIRE_I64:
            pos += 8
            payload = data[start:pos]
        elif wire_type == WIRE_I32:
            pos += 4
            payload = data[start:pos]
        elif wire_type == WIRE_LEN:
            length, pos = _read_varint(data, pos)
            payload = data[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
        out.append((number, wire_type, payload))
    assert pos == len(data)
    return out


def _sample_flow() -> flow_pb2.Flow:
    flow = flow_pb2.Flow(
        uuid="u-1",
        verdict=flow_pb2.FORWARDED,
        Summary="TCP Flags: SYN",
        node_name="n1",
        Type=flow_pb2.L3_L4,
        IP=flow_pb2.IP(source="10.0.0.1", destination="10.0.0.2", ipVersion=flow_pb2.IPv4),
        l4=flow_pb2.Layer4(TCP=flow_pb2.TCP(destination_port=80, flags=flow_pb2.TCPFlags(SYN=True))),
        event_type=flow_pb2.CiliumEventType(type=4),
        socket_cookie=12345,
    )
    flow.is_reply.CopyFrom(wrappers_pb2.BoolValue(value=False))
    flow.extensions.Pack(flow_pb2.Emitter(name="Hubble", version="test"))
    flow.time.FromNanoseconds(1_714_557_600_123_400_000)
    return flow


def test_flow_round_trip_keeps_wrapper_false_summary_and_any() -> None:
    flow = _sample_flow()
    parsed = flow_pb2.Flow.FromString(flow.SerializeToString())

    assert parsed == flow
    assert parsed.HasField("is_reply")
    assert parsed.is_reply.value is False
    assert parsed.Summary == "TCP Flags: SYN"
    assert parsed.extensions.type_url == "type.googleapis.com/flow.Emitter"
    emitter = flow_pb2.Emitter()
    assert parsed.extensions.Unpack(emitter)
    assert emitter.version == "test"
    assert parsed.l4.WhichOneof("protocol") == "TCP"


def test_flow_wire_tags_for_odd_field_numbers() -> None:
    fields = {
        number: (wire_type, payload)
        for number, wire_type, payload in wire_fields(_sample_flow().SerializeToString())
    }

    assert fields[100000] == (WIRE_LEN, b"TCP Flags: SYN")  # Summary
    assert fields[26] == (WIRE_LEN, b"")  # is_reply: present wrapper holding false
    assert fields[34] == (WIRE_LEN, b"u-1")  # uuid
    assert fields[10] == (WIRE_VARINT, bytes([flow_pb2.L3_L4]))  # Type
    ext_type, ext_payload = fields[150000]  # extensions (Any)
    assert ext_type == WIRE_LEN
    any_fields = wire_fields(ext_payload)
    assert any_fields[0] == (1, WIRE_LEN, b"type.googleapis.com/flow.Emitter")
    ip_fields = wire_fields(fields[5][1])  # IP
    assert (3, WIRE_VARINT, bytes([flow_pb2.IPv4])) in ip_fields  # ipVersion


def test_get_flows_response_node_name_and_time_numbers() -> None:
    response = observer_pb2.GetFlowsResponse(flow=_sample_flow(), node_name="n1")
    response.time.FromSeconds(1_714_557_600)
    wire = wire_fields(response.SerializeToString())

    numbers = [number for number, _, _ in wire]
    assert numbers == [1, 1000, 1001]
    assert wire[1] == (1000, WIRE_LEN, b"n1")
    assert timestamp_pb2.Timestamp.FromString(wire[2][2]).seconds == 1_714_557_600
    assert observer_pb2.GetFlowsResponse.FromString(response.SerializeToString()) == response


def test_lost_events_and_node_status_share_the_oneof() -> None:
    response = observer_pb2.GetFlowsResponse(
        node_status=relay_pb2.NodeStatusEvent(state_change=relay_pb2.NODE_ERROR, node_names=["a", "b"])
    )
    assert response.WhichOneof("response_types") == "node_status"
    response.lost_events.CopyFrom(flow_pb2.LostEvent(source=flow_pb2.HUBBLE_RING_BUFFER, num_events_lost=3))
    assert response.WhichOneof("response_types") == "lost_events"
    assert [n for n, _, _ in wire_fields(response.SerializeToString())] == [3]


def test_signed_ints_packed_enums_and_double() -> None:
    flt = flow_pb2.FlowFilter(
        verdict=[flow_pb2.DROPPED, flow_pb2.FORWARDED],
        event_type=[flow_pb2.EventTypeFilter(type=-1)],
        experimental=flow_pb2.FlowFilter.Experimental(cel_expression=["true"]),
    )
    wire = {n: (t, p) for n, t, p in wire_fields(flt.SerializeToString())}
    assert wire[5] == (WIRE_LEN, bytes([flow_pb2.DROPPED, flow_pb2.FORWARDED]))  # packed repeated enum
    event_type = wire_fields(wire[6][1])
    assert event_type[0][0:2] == (1, WIRE_VARINT)
    assert len(event_type[0][2]) == 10  # int32 -1 is sign-extended to 10 bytes
    assert 999 in wire

    status = observer_pb2.ServerStatusResponse(flows_rate=1.5, num_flows=4095)
    kinds = {n: t for n, t, _ in wire_fields(status.SerializeToString())}
    assert kinds == {1: WIRE_VARINT, 9: WIRE_I64}


def test_proto_name_json_keeps_wrapper_and_odd_names() -> None:
    doc = json_format.MessageToDict(_sample_flow(), preserving_proto_field_name=True)
    assert doc["is_reply"] is False
    assert doc["Summary"] == "TCP Flags: SYN"
    assert doc["Type"] == "L3_L4"
    assert doc["IP"]["ipVersion"] == "IPv4"
    assert doc["l4"]["TCP"]["flags"] == {"SYN": True}
    assert doc["socket_cookie"] == "12345"
    assert doc["time"] == "2024-05-01T10:00:00.123400Z"
    assert doc["extensions"] == {
        "@type": "type.googleapis.com/flow.Emitter",
        "name": "Hubble",
        "version": "test",
    }


def test_unknown_enum_number_survives_round_trip() -> None:
    flow = flow_pb2.Flow(verdict=99)
    assert flow_pb2.Flow.FromString(flow.SerializeToString()).verdict == 99


class _Observer(observer_pb2_grpc.ObserverServicer):
    def ServerStatus(self, request, context):
        return observer_pb2.ServerStatusResponse(num_flows=2, max_flows=4095, version="test")

    def GetFlows(self, request, context):
        for i in range(request.number):
            yield observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow(uuid=f"u-{i}"), node_name="n1")


class _Peer(peer_pb2_grpc.PeerServicer):
    def Notify(self, request, context):
        yield peer_pb2.ChangeNotification(name="n1", address="127.0.0.1:4244", type=peer_pb2.PEER_ADDED)


@pytest.fixture
def loopback_channel() -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    observer_pb2_grpc.add_ObserverServicer_to_server(_Observer(), server)
    peer_pb2_grpc.add_PeerServicer_to_server(_Peer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(grace=None)


def test_generated_stubs_over_loopback_grpc(loopback_channel: grpc.Channel) -> None:
    observer = observer_pb2_grpc.ObserverStub(loopback_channel)
    status = observer.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    assert (status.num_flows, status.max_flows, status.version) == (2, 4095, "test")

    flows = list(observer.GetFlows(observer_pb2.GetFlowsRequest(number=3), timeout=10))
    assert [r.flow.uuid for r in flows] == ["u-0", "u-1", "u-2"]

    notes = list(peer_pb2_grpc.PeerStub(loopback_channel).Notify(peer_pb2.NotifyRequest(), timeout=10))
    assert [(n.name, n.type) for n in notes] == [("n1", peer_pb2.PEER_ADDED)]

    # Upstream's method paths, called without the generated stub.
    raw_status = loopback_channel.unary_unary(
        "/observer.Observer/ServerStatus",
        request_serializer=observer_pb2.ServerStatusRequest.SerializeToString,
        response_deserializer=observer_pb2.ServerStatusResponse.FromString,
    )
    assert raw_status(observer_pb2.ServerStatusRequest(), timeout=10).num_flows == 2
    raw_notify = loopback_channel.unary_stream(
        "/peer.Peer/Notify",
        request_serializer=peer_pb2.NotifyRequest.SerializeToString,
        response_deserializer=peer_pb2.ChangeNotification.FromString,
    )
    assert [n.address for n in raw_notify(peer_pb2.NotifyRequest(), timeout=10)] == ["127.0.0.1:4244"]


def test_any_extensions_accept_foreign_types() -> None:
    packed = any_pb2.Any()
    packed.Pack(observer_pb2.GetFlowsRequest(number=7))
    request = observer_pb2.GetFlowsRequest(extensions=packed)
    parsed = observer_pb2.GetFlowsRequest.FromString(request.SerializeToString())
    inner = observer_pb2.GetFlowsRequest()
    assert parsed.extensions.Unpack(inner)
    assert inner.number == 7
    assert [n for n, _, _ in wire_fields(request.SerializeToString())] == [150000]
