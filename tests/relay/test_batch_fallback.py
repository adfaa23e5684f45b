"""The hubblepy.Batch extension (batched protobuf and JSON lines) and the fallbacks to plain GetFlows."""

import subprocess
import threading
from concurrent import futures

import grpc
import pytest
from liveprocs import FLOWS, clean_env, hubble_cli

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.observer.core import Observer
from hubblepy.observer.service import OBSERVER_SERVICE, NodeServices, _length_prefixed
from hubblepy.observer.sources import ReplaySource
from relay.wire import json_line_info, split_batch


def test_batch_framing_round_trip():
    wires = [b"", b"x", b"y" * 200, b"z" * 70000]
    assert split_batch(b"".join(_length_prefixed(w) for w in wires)) == wires


def test_json_line_info_reads_the_top_level_time():
    line = FLOWS.read_bytes().splitlines()[0]
    assert json_line_info(line) == (1_709_251_018_592_508_929, 1)
    assert json_line_info(
        b'{"lost_events":{"source":"HUBBLE_RING_BUFFER"},"time":"2024-03-01T00:00:01Z"}'
    ) == (
        1_709_251_201_000_000_000,
        3,
    )


@pytest.fixture
def plain_node():
    """An in-process node serving only observer.Observer, like an upstream Cilium agent."""
    observer = Observer("plain-node")
    ReplaySource(str(FLOWS), "plain-node", verbatim=True, rate=0).run(observer, threading.Event())
    services = NodeServices(observer, {"name": "plain-node", "address": ""}, [], threading.Event())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([h for h in services.handlers() if h.service_name() == OBSERVER_SERVICE])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def observe(server: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*hubble_cli(), "observe", "--server", server, *args],
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )


def test_relay_falls_back_to_plain_getflows_for_nodes_without_the_extension(procs, plain_node):
    relay = procs.relay("--peers", f"plain-node={plain_node}")
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
    got = [r.flow.uuid for r in stub.GetFlows(observer_pb2.GetFlowsRequest(number=10)) if r.HasField("flow")]
    assert len(got) == 10
    # our CLI through the relay: the relay turns the plain node's protobuf into JSON lines
    out = observe(relay.address, "--all", "-o", "json")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == FLOWS.read_bytes()


def test_cli_reads_a_server_without_the_extension_with_plain_getflows(plain_node):
    live = observe(plain_node, "--all", "-o", "json")
    assert live.returncode == 0, live.stderr.decode()
    assert live.stdout == FLOWS.read_bytes()
    compact = observe(plain_node, "--last", "1")
    assert compact.stdout.startswith(b"Mar  1 00:02:14.357: default/frontend-canary-5e4d3c2b1-ppqrs")
