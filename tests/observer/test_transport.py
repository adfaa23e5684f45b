"""The h2 gRPC server transport against grpcio's own client, on loopback.

Each test runs a real :class:`GrpcServer` with small handlers and talks to it with a real grpcio
channel: statuses and metadata, flow control and back-pressure, deadlines, cancellation, bidi
streams, the concurrency limit and shutdown with GOAWAY.
"""

from __future__ import annotations

import random
import struct
import threading
import time

import grpc
import pytest

from hubblepy.observer.transport import HIGH_WATER, Frames, FrameViews, GrpcServer, parse_timeout

SERVICE = "t.Test"


class Handlers:
    """Handlers that record what the server side saw."""

    def __init__(self) -> None:
        self.produced = 0
        self.callback_ran = threading.Event()
        self.saw_inactive = threading.Event()
        self.release = threading.Event()
        self.metadata: dict[str, object] = {}
        self.entered = 0
        self.lock = threading.Lock()

    def echo(self, request: bytes, context) -> bytes:
        self.metadata = dict(context.invocation_metadata())
        context.send_initial_metadata((("x-initial", "yes"), ("x-raw-bin", b"\x00\xff")))
        context.set_trailing_metadata((("x-trailing", "done"),))
        return b"echo:" + request

    def fail(self, request: bytes, context) -> bytes:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.decode())
        return b""

    def stream(self, request: bytes, context):
        count, size = (int(x) for x in request.split(b","))
        for i in range(count):
            yield i.to_bytes(4, "big") + b"x" * (size - 4)

    def endless(self, request: bytes, context):
        context.add_callback(self.callback_ran.set)
        payload = b"y" * 1000
        try:
            while True:
                if not context.is_active():
                    return
                self.produced += 1
                yield payload
        finally:  # ends when it sees the call inactive, or is closed while waiting to send
            self.saw_inactive.set()

    def block(self, request: bytes, context) -> bytes:
        with self.lock:
            self.entered += 1
        while context.is_active() and not self.release.wait(0.02):
            pass
        if not context.is_active():
            self.saw_inactive.set()
        return b"late"

    def views(self, request: bytes, context):
        """The Stream messages as FrameViews: gRPC-framed bytes cut at random points (inside
        prefixes too) into bytes and memoryviews, with Frames and plain messages in between."""
        count, size, seed = (int(x) for x in request.split(b","))
        rng = random.Random(seed)
        messages = [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4) for i in range(count)]
        i = 0
        while i < len(messages):
            take = rng.randrange(1, 40)
            framed = b"".join(struct.pack(">BI", 0, len(m)) + m for m in messages[i : i + take])
            i += take
            kind = rng.randrange(4)
            if kind == 0:
                yield Frames(framed)
            elif kind == 1:
                yield messages[i - take]  # and the rest of the run as views
                framed = b"".join(struct.pack(">BI", 0, len(m)) + m for m in messages[i - take + 1 : i])
            if kind != 0 and framed:
                cuts = sorted(rng.sample(range(1, len(framed)), min(len(framed) - 1, rng.randrange(6))))
                view = memoryview(framed)
                parts = [view[a:b] for a, b in zip([0, *cuts], [*cuts, len(framed)], strict=True)]
                yield FrameViews(p if rng.random() < 0.5 else bytes(p) for p in parts)

    def chat(self, requests, context):
        for request in requests:
            yield b"re:" + request

    def generic(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
                "Fail": grpc.unary_unary_rpc_method_handler(self.fail),
                "Stream": grpc.unary_stream_rpc_method_handler(self.stream),
                "Views": grpc.unary_stream_rpc_method_handler(self.views),
                "Endless": grpc.unary_stream_rpc_method_handler(self.endless),
                "Block": grpc.unary_unary_rpc_method_handler(self.block),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            },
        )


@pytest.fixture
def served():
    handlers = Handlers()
    server = GrpcServer(max_workers=8, maximum_concurrent_rpcs=4)
    server.add_generic_rpc_handlers([handlers.generic()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield handlers, channel, server, port
    channel.close()
    handlers.release.set()
    server.stop(0).wait(10)


def test_unary_with_metadata_both_ways(served):
    handlers, channel, _, _ = served
    call = channel.unary_unary(f"/{SERVICE}/Echo")
    response, info = call.with_call(
        b"hi", metadata=(("x-client", "c1"), ("x-blob-bin", b"\x01\x02")), timeout=10
    )
    assert response == b"echo:hi"
    assert handlers.metadata["x-client"] == "c1"
    assert handlers.metadata["x-blob-bin"] == b"\x01\x02"
    initial = dict(info.initial_metadata())
    assert initial["x-initial"] == "yes"
    assert initial["x-raw-bin"] == b"\x00\xff"
    assert dict(info.trailing_metadata())["x-trailing"] == "done"
    assert info.code() == grpc.StatusCode.OK


def test_abort_status_and_non_ascii_details(served):
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(f"/{SERVICE}/Fail")("bad filter: ünïcode 100%".encode(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "bad filter: ünïcode 100%"


def test_unknown_method_is_unimplemented(served):
    _, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(f"/{SERVICE}/Nope")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_large_stream_in_order_through_flow_control(served):
    _, channel, _, _ = served
    count, size = 20000, 700  # 14 MB: far more than any HTTP/2 window
    got = list(channel.unary_stream(f"/{SERVICE}/Stream")(f"{count},{size}".encode(), timeout=60))
    assert len(got) == count
    assert all(len(m) == size for m in got)
    assert [int.from_bytes(m[:4], "big") for m in got] == list(range(count))


def test_empty_and_big_messages(served):
    _, channel, _, _ = served
    got = list(channel.unary_stream(f"/{SERVICE}/Stream")(b"3,4", timeout=10))
    assert got == [i.to_bytes(4, "big") for i in range(3)]
    big = list(channel.unary_stream(f"/{SERVICE}/Stream")(b"2,3000000", timeout=30))
    assert [len(m) for m in big] == [3000000, 3000000]


def test_frame_views_are_sent_as_the_messages_they_hold(served):
    """A handler's FrameViews (buffers that together hold framed messages, cut anywhere) reach the
    client as those messages, in order, between Frames and plain messages."""
    _, channel, _, _ = served
    for seed, (count, size) in enumerate(((3000, 300), (200, 70000), (50, 5))):
        got = list(channel.unary_stream(f"/{SERVICE}/Views")(f"{count},{size},{seed}".encode(), timeout=60))
        assert got == [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4) for i in range(count)]


def test_slow_reader_holds_back_the_handler(served):
    handlers, channel, _, _ = served
    responses = channel.unary_stream(f"/{SERVICE}/Endless")(b"", timeout=30)
    for _ in range(10):
        next(responses)
    time.sleep(1.0)  # the reader stops: windows fill, then the handler must wait
    first = handlers.produced
    time.sleep(0.5)
    assert handlers.produced == first, "the handler kept producing for a reader that stopped"
    # what it produced is bounded by the call's buffer plus the HTTP/2 windows (grpcio's grow with
    # its bandwidth probe) and the socket buffers
    assert first * 1005 < HIGH_WATER + (64 << 20)
    responses.cancel()
    assert handlers.saw_inactive.wait(10)


def test_client_cancel_runs_callbacks_and_ends_handler(served):
    handlers, channel, _, _ = served
    responses = channel.unary_stream(f"/{SERVICE}/Endless")(b"", timeout=30)
    next(responses)
    responses.cancel()
    assert handlers.callback_ran.wait(10)
    assert handlers.saw_inactive.wait(10)


def test_deadline_exceeded(served):
    handlers, channel, _, _ = served
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(f"/{SERVICE}/Block")(b"", timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert handlers.saw_inactive.wait(10)


def test_bidi_stream(served):
    _, channel, _, _ = served
    got = list(channel.stream_stream(f"/{SERVICE}/Chat")(iter([b"a", b"b", b"c"]), timeout=10))
    assert got == [b"re:a", b"re:b", b"re:c"]


def test_concurrency_limit_is_resource_exhausted(served):
    handlers, channel, _, _ = served
    block = channel.unary_unary(f"/{SERVICE}/Block")
    pending = [block.future(b"", timeout=30) for _ in range(4)]
    deadline = time.monotonic() + 10
    while handlers.entered < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handlers.entered == 4
    with pytest.raises(grpc.RpcError) as err:
        block(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    handlers.release.set()
    assert [f.result() for f in pending] == [b"late"] * 4


def test_stop_sends_goaway_and_ends_running_calls(served):
    handlers, channel, server, port = served
    responses = channel.unary_stream(f"/{SERVICE}/Endless")(b"", timeout=30)
    next(responses)
    server.stop(0.2).wait(10)
    with pytest.raises(grpc.RpcError) as err:
        for _ in responses:
            pass
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert handlers.saw_inactive.wait(10)
    fresh = grpc.insecure_channel(f"127.0.0.1:{port}")
    with pytest.raises(grpc.RpcError) as err2:
        fresh.unary_unary(f"/{SERVICE}/Echo")(b"x", timeout=2)
    assert err2.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    fresh.close()


def test_parse_timeout():
    assert parse_timeout("5S") == 5.0
    assert parse_timeout("100m") == pytest.approx(0.1)
    assert parse_timeout("2H") == 7200.0
    assert parse_timeout("12") is None
    assert parse_timeout("x5S") is None
    assert parse_timeout("1234567890S") is None


def test_bad_listen_address_is_an_error():
    server = GrpcServer(max_workers=1)
    with pytest.raises(OSError):
        server.add_insecure_port("127.0.0.1:99999")
    server.stop(0).wait(5)
