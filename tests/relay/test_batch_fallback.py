"""The relay talks batched GetFlows to our nodes and plain GetFlows to nodes without the extension."""

import threading
from concurrent import futures

import grpc
from liveprocs import FLOWS

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.observer.core import Observer
from hubblepy.observer.service import OBSERVER_SERVICE, NodeServices, _length_prefixed
from hubblepy.observer.sources import ReplaySource
from relay.wire import split_batch


def test_batch_framing_round_trip():
    wires = [b"", b"x", b"y" * 200, b"z" * 70000]
    assert split_batch(b"".join(_length_prefixed(w) for w in wires)) == wires


def test_relay_falls_back_to_plain_getflows_for_nodes_without_the_extension(procs):
    observer = Observer("plain-node")
    ReplaySource(str(FLOWS), "plain-node", verbatim=True, rate=0).run(observer, threading.Event())
    services = NodeServices(observer, {"name": "plain-node", "address": ""}, [], threading.Event())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    # Only observer.Observer, like an upstream Cilium agent: no hubblepy.Batch service.
    server.add_generic_rpc_handlers([h for h in services.handlers() if _service_name(h) == OBSERVER_SERVICE])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        relay = procs.relay("--peers", f"plain-node=127.0.0.1:{port}")
        stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
        got = [
            r.flow.uuid for r in stub.GetFlows(observer_pb2.GetFlowsRequest(number=10)) if r.HasField("flow")
        ]
        assert len(got) == 10
    finally:
        server.stop(0)


def _service_name(handler) -> str:
    return handler.service_name()
