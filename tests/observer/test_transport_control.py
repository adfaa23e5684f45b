"""Window updates and pings a reader sends, handled by the h2 transport's own parser, on loopback.

A raw HTTP/2 client (h2's client side on a socket) reads a long stream with its flow-control
windows kept small, acknowledging data in WINDOW_UPDATE frames coalesced with PINGs: every message
arrives, every PING is acknowledged with its own bytes, as when h2 parses every frame. Frames the fast path must not judge itself
(a zero increment, a window overflow) end the connection as h2 does, with GOAWAY and the error code.
"""

from __future__ import annotations

import socket
import struct

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from hubblepy.observer import transport
from hubblepy.observer.transport import GrpcServer

COUNT, SIZE = 2000, 500  # 1 MB: sixteen times the client's window


def _stream(request: bytes, context):
    for i in range(COUNT):
        yield i.to_bytes(4, "big") + b"m" * (SIZE - 4)


@pytest.fixture
def port():
    server = GrpcServer(max_workers=4)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.Control", {"S": grpc.unary_stream_rpc_method_handler(_stream)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0).wait(10)


def _ping(data: bytes) -> bytes:
    return struct.pack(">IBI", 8 << 8 | 6, 0, 0) + data


def _window_update(stream_id: int, increment: int) -> bytes:
    return struct.pack(">IBII", 4 << 8 | 8, 0, stream_id, increment)


def _connect(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    return sock, client


def _request(client: h2.connection.H2Connection) -> int:
    stream_id = client.get_next_available_stream_id()
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/t.Control/S"),
        (b":authority", b"test"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    client.send_headers(stream_id, headers)
    client.send_data(stream_id, b"\x00\x00\x00\x00\x00", end_stream=True)
    return stream_id


@pytest.mark.parametrize("own_parser", [True, False], ids=["transport", "h2"])
def test_coalesced_window_updates_and_pings(port, monkeypatch, own_parser):
    monkeypatch.setattr(transport, "_H2_BUFFER_KNOWN", own_parser)  # False: every frame goes to h2
    sock, client = _connect(port)
    _request(client)
    sock.sendall(client.data_to_send())
    body = bytearray()
    pings_sent: list[bytes] = []
    acks: list[bytes] = []
    trailers: dict[bytes, bytes] = {}
    ended = False
    while not ended:
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.PingAckReceived):
                acks.append(event.ping_data)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        out = client.data_to_send()
        if out:  # window updates, with a ping in the same write
            ping = len(pings_sent).to_bytes(8, "big")
            pings_sent.append(ping)
            sock.sendall(out + _ping(ping))
    while len(acks) < len(pings_sent):  # the last pings' answers may still be on their way
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        acks += [e.ping_data for e in client.receive_data(data) if isinstance(e, h2.events.PingAckReceived)]
    sock.close()
    assert trailers[b"grpc-status"] == b"0"
    assert len(body) == COUNT * (SIZE + 5)
    numbers = [int.from_bytes(body[i + 5 : i + 9], "big") for i in range(0, len(body), SIZE + 5)]
    assert numbers == list(range(COUNT))
    assert len(pings_sent) > 10  # the stream needed many window updates
    assert acks == pings_sent


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_window_update(0, 0), ErrorCodes.PROTOCOL_ERROR),  # a zero increment
        (_window_update(0, (1 << 31) - 1), ErrorCodes.FLOW_CONTROL_ERROR),  # past 2^31 - 1
    ],
)
def test_bad_window_update_ends_the_connection_as_h2_does(port, frame, code):
    sock, client = _connect(port)
    sock.sendall(frame)
    terminated = None
    while terminated is None:
        data = sock.recv(65536)
        assert data, "closed without GOAWAY"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.ConnectionTerminated):
                terminated = event
    assert terminated.error_code == code
    sock.settimeout(10)
    while sock.recv(65536):  # then the server closes
        pass
    sock.close()
