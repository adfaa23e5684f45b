"""The relay's own reader of a node's indexed stream (relay.h2stream) against real servers on loopback.

It reads what grpcio's channel reads, message for message, from a node on grpcio and from one on our
h2 transport (messages far larger than a frame or a window, split across frames); a status, an
unknown method, a refused connection, a cancelled call and a server that goes away end the call
with the gRPC code grpcio would give.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.observer.transport import GrpcServer
from relay.h2stream import CallError, StreamCall, tcp_target

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_indexed import GET_FLOWS_INDEXED, _raw_observer, _serve  # noqa: E402

SERVICE = "t.Test"


def _grpcio_read(address: str, path: str, request: bytes) -> list[bytes]:
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
    try:
        return list(channel.unary_stream(path, request_serializer=None, response_deserializer=None)(request))
    finally:
        channel.close()


@pytest.mark.parametrize("h2", [False, True], ids=["grpcio", "h2"])
@pytest.mark.parametrize("verdict", [None, "DROPPED"])
def test_reads_what_grpcio_reads_from_a_node(h2: bool, verdict: str | None) -> None:
    observer = _raw_observer(copies=200)
    server, address = _serve(observer, indexed=True, h2=h2)
    try:
        request = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
        if verdict:
            request.whitelist.add().verdict.append(verdict)
        wire = request.SerializeToString()
        target = tcp_target(address)
        assert target is not None
        _grpcio_read(address, GET_FLOWS_INDEXED, wire)  # the first read makes templates (other batches)
        got = [bytes(m) for m in StreamCall(target, GET_FLOWS_INDEXED, wire)]
        assert got == _grpcio_read(address, GET_FLOWS_INDEXED, wire)
        assert sum(map(len, got)) > 1 << 20  # far more than a frame, or the first window
    finally:
        server.stop(0)


class _Handlers:
    def __init__(self) -> None:
        self.started = threading.Event()

    def sized(self, request: bytes, context: Any) -> Any:
        """``count,size``: that many messages of that size (0 too), each made of its own index."""
        count, size = (int(x) for x in request.split(b","))
        for i in range(count):
            yield bytes([i % 251]) * size

    def fail(self, request: bytes, context: Any) -> Any:
        yield b"one"
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "no: 100% ünicode")

    def slow(self, request: bytes, context: Any) -> Any:
        """``count``: that many numbered messages, 20 ms apart."""
        self.started.set()
        for i in range(int(request)):
            yield b"%d" % i
            time.sleep(0.02)

    def endless(self, request: bytes, context: Any) -> Any:
        self.started.set()
        while context.is_active():
            yield b"x" * 1000
            time.sleep(0.001)

    def generic(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                name: grpc.unary_stream_rpc_method_handler(getattr(self, name))
                for name in ("sized", "fail", "slow", "endless")
            },
        )


@pytest.fixture(params=["grpcio", "h2"])
def served(request: Any) -> Any:
    handlers = _Handlers()
    server: Any
    if request.param == "h2":
        server = GrpcServer(max_workers=4)
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([handlers.generic()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield handlers, ("127.0.0.1", port), server
    server.stop(0)


def test_messages_of_every_size_arrive_whole(served: Any) -> None:
    _, target, _ = served
    for count, size in ((3, 0), (200, 70_000), (1, 5 << 20), (2000, 3)):
        got = list(StreamCall(target, f"/{SERVICE}/sized", b"%d,%d" % (count, size)))
        assert [bytes(m) for m in got] == [bytes([i % 251]) * size for i in range(count)]


def test_a_status_ends_the_call_with_its_code_and_message(served: Any) -> None:
    _, target, _ = served
    call = iter(StreamCall(target, f"/{SERVICE}/fail", b""))
    assert bytes(next(call)) == b"one"
    with pytest.raises(CallError) as caught:
        next(call)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "no: 100% ünicode"
    assert isinstance(caught.value, grpc.RpcError)


def test_an_unknown_method_is_unimplemented(served: Any) -> None:
    _, target, _ = served
    with pytest.raises(CallError) as caught:
        list(StreamCall(target, f"/{SERVICE}/nothing", b""))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cancel_from_another_thread(served: Any) -> None:
    handlers, target, _ = served
    call = StreamCall(target, f"/{SERVICE}/endless", b"")
    messages = iter(call)
    next(messages)
    assert handlers.started.wait(5)
    threading.Timer(0.2, call.cancel).start()
    with pytest.raises(CallError) as caught:
        for _ in messages:
            pass
    assert caught.value.code() == grpc.StatusCode.CANCELLED


def test_a_graceful_stop_lets_the_call_finish(served: Any) -> None:
    """The server's GOAWAY covers the running stream: it ends normally."""
    handlers, target, server = served
    messages = iter(StreamCall(target, f"/{SERVICE}/slow", b"40"))
    assert next(messages) == b"0"
    stopped = server.stop(5)
    assert [bytes(m) for m in messages] == [b"%d" % i for i in range(1, 40)]
    stopped.wait(5)


def test_a_server_that_goes_away_is_unavailable(served: Any) -> None:
    handlers, target, server = served
    messages = iter(StreamCall(target, f"/{SERVICE}/endless", b""))
    next(messages)
    server.stop(0)
    with pytest.raises(CallError) as caught:
        for _ in messages:
            pass
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(CallError) as caught:
            list(StreamCall(("127.0.0.1", port), f"/{SERVICE}/sized", b"1,1"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tcp_targets() -> None:
    assert tcp_target("127.0.0.1:4244") == ("127.0.0.1", 4244)
    assert tcp_target("dns:///node-1.example:4244") == ("node-1.example", 4244)
    assert tcp_target("[::1]:4244") == ("::1", 4244)
    assert tcp_target("unix:///var/run/cilium/hubble.sock") is None
    assert tcp_target("node-1") is None


def test_the_relay_reads_plaintext_nodes_with_it() -> None:
    """A node the relay dials without TLS: its indexed stream is read with StreamCall, with TLS by
    the node's grpcio channel; both give the same runs."""
    from relay.peers import ClientTLS, DialOptions, PeerManager
    from relay.wire import Run

    observer = _raw_observer()
    server, address = _serve(observer, indexed=True, h2=True)
    plain, tls = PeerManager(DialOptions()), PeerManager(DialOptions(tls=ClientTLS()))
    try:
        node = plain.add("node-1", address)
        assert node.direct_target == tcp_target(address)
        assert tls.add("node-1", address).direct_target is None
        request = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
        calls: dict[str, Any] = {}
        runs = list(node.stream_runs(request, calls))
        assert isinstance(calls[address], StreamCall)
        assert runs and all(isinstance(run, Run) for run in runs) and node.supports_indexed
        wires = [w for run in runs for w in run.wires()]  # type: ignore[union-attr]
        channel = grpc.insecure_channel(address)
        call = channel.unary_stream(
            "/observer.Observer/GetFlows", observer_pb2.GetFlowsRequest.SerializeToString
        )
        assert wires == list(call(request))
        channel.close()
        started = node.start_indexed(request)  # the request sent ahead, read later (by another thread)
        assert isinstance(started, StreamCall)
        again = list(node.stream_runs(request, calls, started))
        assert calls[address] is started
        assert [w for run in again for w in run.wires()] == wires  # type: ignore[union-attr]
        assert tls.add("node-1", address).start_indexed(request) is None
    finally:
        plain.close()
        tls.close()
        server.stop(0)


_CHURN = r"""
import resource, sys, threading
if sys.argv[1] == "keep":
    from relay.h2stream import keep_freed_memory
    assert keep_freed_memory()
def churn():  # message buffers as a reader thread fills them: 256 KiB to 1 MiB, written whole
    for i in range(200):
        size = (256 << 10) * (1 + i % 4) + i
        buf = bytearray(size)
        buf[:] = b"\x01" * size
        del buf
thread = threading.Thread(target=churn)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread.start()
thread.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_message_buffers_are_reused_not_faulted_in_again() -> None:
    """keep_freed_memory (the relay calls it at startup): a thread's large buffers reuse freed pages."""
    import subprocess

    root = str(Path(__file__).resolve().parents[2])
    faults = {
        mode: int(subprocess.run([sys.executable, "-c", _CHURN, mode], cwd=root, capture_output=True,
                                 text=True, check=True).stdout)
        for mode in ("keep", "plain")
    }  # fmt: skip
    # 200 buffers of 160 MB in all: 39,000 pages, faulted in each time without it
    assert faults["keep"] < 8000 < faults["plain"]
