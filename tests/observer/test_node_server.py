"""The node's gRPC services against a real `hubble agent` process on loopback."""

import os
import stat
import time

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from liveprocs import FLOWS

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.api.peer import peer_pb2, peer_pb2_grpc
from hubblepy.codec.timestamps import parse_rfc3339_ns

FILE_UUIDS = [orjson.loads(line)["flow"]["uuid"] for line in FLOWS.read_bytes().splitlines()]


@pytest.fixture
def verbatim_node(procs):
    node = procs.agent("n1", "--replay", str(FLOWS), "--replay-verbatim", "--rate", "0")
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(node.address))
    deadline = time.monotonic() + 20
    while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < len(FILE_UUIDS):
        assert time.monotonic() < deadline, "replay did not finish"
        time.sleep(0.05)
    return node, stub


def uuids(stream):
    return [r.flow.uuid for r in stream if r.HasField("flow")]


def test_number_first_since_until_follow_semantics(verbatim_node):
    _, stub = verbatim_node
    assert uuids(stub.GetFlows(observer_pb2.GetFlowsRequest(number=5))) == FILE_UUIDS[-5:]
    assert uuids(stub.GetFlows(observer_pb2.GetFlowsRequest(number=5, first=True))) == FILE_UUIDS[:5]
    assert uuids(stub.GetFlows(observer_pb2.GetFlowsRequest())) == FILE_UUIDS
    req = observer_pb2.GetFlowsRequest()
    req.since.FromNanoseconds(parse_rfc3339_ns("2024-02-29T23:59:50.14Z"))
    req.until.FromNanoseconds(parse_rfc3339_ns("2024-03-01T00:00:06.828926466Z"))
    lines = [orjson.loads(line)["flow"] for line in FLOWS.read_bytes().splitlines()]
    expected = [
        f["uuid"]
        for f in lines
        if req.since.ToNanoseconds() <= parse_rfc3339_ns(f["time"]) <= req.until.ToNanoseconds()
    ]
    assert expected and uuids(stub.GetFlows(req)) == expected


def test_filters_run_on_the_node_and_responses_carry_node_name_and_time(verbatim_node):
    _, stub = verbatim_node
    req = observer_pb2.GetFlowsRequest(number=1000)
    req.whitelist.add().verdict.append(flow_pb2.DROPPED)
    got = list(stub.GetFlows(req))
    assert len(got) == 28  # DROPPED flows in the fixture
    assert all(r.flow.verdict == flow_pb2.DROPPED and r.node_name and r.HasField("time") for r in got)


def test_invalid_regex_is_invalid_argument_with_message(verbatim_node):
    _, stub = verbatim_node
    req = observer_pb2.GetFlowsRequest(number=10)
    req.whitelist.add().http_path.append("(")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GetFlows(req))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid http path filter" in info.value.details()


def test_first_with_follow_is_rejected(verbatim_node):
    _, stub = verbatim_node
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GetFlows(observer_pb2.GetFlowsRequest(first=True, follow=True)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_reflection_status_peer_and_namespaces(verbatim_node):
    node, stub = verbatim_node
    channel = grpc.insecure_channel(node.address)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="hubble.server.Observer")
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(
        iter(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"observer.Observer", "peer.Peer", "grpc.health.v1.Health"} <= names
    status = stub.ServerStatus(observer_pb2.ServerStatusRequest())
    assert (status.num_flows, status.max_flows, status.seen_flows) == (230, 4095, 230)
    assert status.uptime_ns > 0 and status.version
    namespaces = {
        (n.cluster, n.namespace) for n in stub.GetNamespaces(observer_pb2.GetNamespacesRequest()).namespaces
    }
    assert ("default", "payments") in namespaces
    notes = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest(), timeout=2)
    first = next(iter(notes))
    assert (first.name, first.address, first.type) == ("n1", node.address, peer_pb2.PEER_ADDED)
    notes.cancel()


def test_unix_socket_mode_0660(procs, tmp_path):
    sock = tmp_path / "hubble.sock"
    procs.agent("u1", "--socket-path", str(sock), listen="")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(f"unix://{sock}"))
    assert stub.ServerStatus(observer_pb2.ServerStatusRequest()).max_flows == 4095


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_gets_lost_events_and_node_memory_stays_bounded(procs):
    node = procs.agent("slow", "--replay", str(FLOWS), "--rate", "4000", "--event-buffer-capacity", "255")
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(node.address))
    stream = stub.GetFlows(observer_pb2.GetFlowsRequest(follow=True))
    lost = 0
    flows = 0
    rss_samples = []
    for resp in stream:
        if resp.HasField("lost_events"):
            assert resp.lost_events.source == flow_pb2.HUBBLE_RING_BUFFER
            lost += resp.lost_events.num_events_lost
        else:
            flows += 1
        if flows % 50 == 0:
            time.sleep(0.05)  # a slow client
            rss_samples.append(_rss_kib(node.popen.pid))
        if lost > 20_000:
            break
    stream.cancel()
    assert lost > 20_000
    # Once warmed up, reading slowly must not make the node grow: compare the later samples.
    settled = rss_samples[len(rss_samples) // 4 :]
    assert max(settled) - min(settled) < 30 * 1024, rss_samples


def test_status_trailer_counts_ring_overwrites(procs):
    import io

    from hubblepy.cli.status import status_main

    node = procs.agent("n1", "--replay", str(FLOWS), "--rate", "0", "--event-buffer-capacity", "15")
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(node.address))
    deadline = time.monotonic() + 20
    while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < 100:
        assert time.monotonic() < deadline, "replay did not start"
        time.sleep(0.05)
    _, call = stub.ServerStatus.with_call(observer_pb2.ServerStatusRequest())
    trailer = dict(call.trailing_metadata())["hubblepy-lost-events"]
    counts = dict(part.split("=") for part in trailer.split(";"))
    assert int(counts["ring_overwritten"]) >= 100 - 15 and counts["lost_perf_events"] == "0"
    out, err = io.StringIO(), io.StringIO()
    assert status_main(["--server", node.address], dict(os.environ), out, err) == 0, err.getvalue()
    assert "\nRing Overwritten: " in out.getvalue()
