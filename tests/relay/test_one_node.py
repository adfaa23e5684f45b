"""The relay's GetFlows with one node and a stream that ends, read without a reader thread.

A non-follow request to a relay with one connected node is read in the handler's own thread (the
merge takes the node's batches as they arrive); more nodes, or follow mode, keep a reader thread per
node. Both must send the node's bytes unchanged and in time order: one node's relayed stream is its
own GetFlows stream, the same as a relay merging it with an empty node, and several nodes with
interleaving times come out merged by time. A node that fails mid-stream gives the flows it sent and
a NODE_ERROR, and a client that cancels ends the node's stream, with real nodes (grpcio and our h2
transport) and a real relay process.
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.api.relay import relay_pb2
from hubblepy.observer.core import Observer
from hubblepy.observer.indexed import parse_indexed, scan_response
from hubblepy.observer.service import BATCH_SERVICE, NodeServices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_indexed import NOW, _raw_observer, _request, _serve  # noqa: E402

GET_FLOWS = "/observer.Observer/GetFlows"
GET_FLOWS_INDEXED = "/hubblepy.Batch/GetFlowsIndexed"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]
EVERYTHING = (1 << 64) - 1


def _read(address: str, request: Any) -> list[bytes]:
    channel = grpc.insecure_channel(address, options=OPTIONS)
    call = channel.unary_stream(GET_FLOWS, observer_pb2.GetFlowsRequest.SerializeToString, None)
    try:
        return list(call(request, timeout=60))
    finally:
        channel.close()


def _flows(wires: list[bytes]) -> list[bytes]:
    """The responses that are not node status events."""
    return [w for w in wires if scan_response(w)[1] != 2]


def _statuses(wires: list[bytes]) -> list[Any]:
    return [
        observer_pb2.GetFlowsResponse.FromString(w).node_status for w in wires if scan_response(w)[1] == 2
    ]


def _times(wires: list[bytes]) -> list[int]:
    return [scan_response(w)[0] for w in wires]


@pytest.mark.parametrize("h2", [False, True], ids=["grpcio-node", "h2-node"])
def test_one_node_is_relayed_as_its_own_stream_and_as_merged_with_another(procs: Any, h2: bool) -> None:
    node, address = _serve(_raw_observer("one", copies=60), indexed=True, h2=h2)
    empty, empty_address = _serve(Observer("empty"), indexed=True, h2=h2)
    late, late_address = _serve(_raw_observer("late", copies=60, start=NOW + 500_001), indexed=True, h2=h2)
    try:
        alone = procs.relay("--peers", f"one={address}")
        merged = procs.relay(
            "--peers", f"one={address},empty={empty_address}", "--sort-buffer-len-max", "1000000"
        )
        both = procs.relay(
            "--peers", f"one={address},late={late_address}", "--sort-buffer-len-max", "1000000"
        )
        for request in (
            _request(number=EVERYTHING),
            _request("DROPPED", number=EVERYTHING),
            _request(number=50),
            _request(number=EVERYTHING, first=True),
        ):
            direct = _read(address, request)
            assert len(direct) > 40
            relayed = _read(alone.address, request)
            assert [s.state_change for s in _statuses(relayed)] == [relay_pb2.NODE_CONNECTED]
            assert _flows(relayed) == direct  # the node's bytes, unchanged, in its order
            assert _times(direct) == sorted(_times(direct))
            assert _flows(_read(merged.address, request)) == direct  # the threaded merge agrees
            # two nodes whose times interleave: merged by time (no two flows share a time)
            interleaved = _flows(_read(both.address, request))
            expected = sorted(direct + _read(late_address, request), key=lambda w: scan_response(w)[0])
            if request.number == EVERYTHING:
                assert interleaved == expected
            else:  # --last / --first N per node
                assert sorted(interleaved) == sorted(expected)
                assert _times(interleaved) == sorted(_times(interleaved))
    finally:
        for server in (node, empty, late):
            server.stop(0)


class _Failing:
    """A real node whose indexed stream sends its first ``keep`` batches, then fails (``fail``) or
    holds the stream open until the caller goes away (``hold``, recording that it went)."""

    def __init__(self, observer: Observer, keep: int, mode: str) -> None:
        self.services = NodeServices(
            observer, {"name": observer.node_name, "address": ""}, [], threading.Event()
        )
        self.keep = keep
        self.mode = mode
        self.sent: list[bytes] = []
        self.calls = 0
        self.gone = threading.Event()

    def get_flows_indexed(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.mode == "hold" and self.calls > 1:  # later calls: the whole stream
            yield from self.services.get_flows_indexed(request, context)
            return
        for i, message in enumerate(self.services.get_flows_indexed(request, context)):
            if i == self.keep:
                break
            self.sent.append(message)
            yield message
        if self.mode == "fail":
            context.abort(grpc.StatusCode.INTERNAL, "the node broke")
        for _ in range(3000):  # hold: until the relay cancels the stream (bounded: 30 s)
            if not context.is_active():
                self.gone.set()
                return
            threading.Event().wait(0.01)

    def serve(self) -> tuple[Any, str]:
        handlers = [h for h in self.services.handlers() if h.service_name() != BATCH_SERVICE]
        handlers.append(
            grpc.method_handlers_generic_handler(
                BATCH_SERVICE,
                {
                    "GetFlowsIndexed": grpc.unary_stream_rpc_method_handler(
                        self.get_flows_indexed, request_deserializer=observer_pb2.GetFlowsRequest.FromString
                    )
                },
            )
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("others", [0, 1], ids=["one-node", "with-another-node"])
def test_a_node_that_fails_mid_stream(procs: Any, others: int) -> None:
    failing = _Failing(_raw_observer("bad", copies=200), keep=1, mode="fail")
    server, address = failing.serve()
    servers = [server]
    peers = [f"bad={address}"]
    other: list[bytes] = []
    if others:
        good, good_address = _serve(_raw_observer("good", copies=20, start=NOW + 500_001), indexed=True)
        servers.append(good)
        peers.append(f"good={good_address}")
        other = _read(good_address, _request(number=EVERYTHING))
    try:
        relay = procs.relay("--peers", ",".join(peers), "--sort-buffer-len-max", "1000000")
        got = _read(relay.address, _request(number=EVERYTHING))  # ends with OK
        sent = [w for message in failing.sent for w in parse_indexed(message).wires()]
        assert len(failing.sent) == 1 and sent
        assert _flows(got) == sorted(sent + other, key=lambda w: scan_response(w)[0])
        errors = [s for s in _statuses(got) if s.state_change == relay_pb2.NODE_ERROR]
        assert len(errors) == 1 and list(errors[0].node_names) == ["bad"]
        assert "the node broke" in errors[0].message
    finally:
        for one in servers:
            one.stop(0)


def test_a_client_that_cancels_ends_the_nodes_stream(procs: Any) -> None:
    holding = _Failing(_raw_observer("held", copies=200), keep=1, mode="hold")
    server, address = holding.serve()
    try:
        relay = procs.relay("--peers", f"held={address}")
        channel = grpc.insecure_channel(relay.address, options=OPTIONS)
        call = channel.unary_stream(GET_FLOWS, observer_pb2.GetFlowsRequest.SerializeToString, None)
        stream = call(_request(number=EVERYTHING), timeout=60)
        first = [w for w, _ in zip(stream, range(3), strict=False)]
        assert len(_flows(first)) >= 1
        stream.cancel()
        assert holding.gone.wait(30)  # the relay cancelled the node's stream
        # the relay serves the next call (the node answers it whole)
        again = _flows(list(call(_request(number=50), timeout=60)))
        assert again == _read(address, _request(number=50))
        channel.close()
    finally:
        server.stop(0)
