"""One server-streaming gRPC call on a connection of its own, read straight into message buffers.

The relay reads a node's indexed batches (``hubblepy.Batch/GetFlowsIndexed``, up to a megabyte each)
with this instead of grpcio, whose channel copies a received message more than once on its way to
a Python ``bytes`` and hands it over between threads (reading a node's 65,535-flow ring, 33 MB, cost
0.32-0.46 µs of CPU a flow there against 0.20 µs here); here each DATA frame's payload goes from the
socket into the buffer of the message it belongs to (``recv_into``), once, in the reading thread.
A relay forwards views of those buffers to its clients.

What it speaks: HTTP/2 over plaintext TCP (nodes whose connection from the relay has no TLS), one
stream per connection, the request sent whole; flow control towards the server (window updates as
payload is read, a large window and frame size offered up front), the server's SETTINGS and PINGs
answered (by h2, which sees every frame but the stream's DATA frames and GOAWAY), TCP keepalive
(a node that vanishes without a word is noticed within about a minute), response headers, trailers
and Trailers-Only; a GOAWAY that covers the stream lets it finish (a server's graceful stop). gRPC
status, RST_STREAM, other GOAWAYs and connection failures end the call with a
:class:`CallError` (a ``grpc.RpcError`` with ``code()`` and ``details()``, as grpcio's), so callers
treat both alike: UNIMPLEMENTED from a node without the method, UNAVAILABLE when the connection
fails, CANCELLED after :meth:`StreamCall.cancel`.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from urllib.parse import unquote

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

_HEADER = struct.Struct(">IBI")  # HTTP/2 frame header: length << 8 | type, flags, stream
_DATA, _GOAWAY, _WINDOW_UPDATE = 0, 7, 8
_END_STREAM, _PADDED = 0x1, 0x8
WINDOW = 16 << 20  # the stream's and the connection's receive window offered to the server
MAX_FRAME = (1 << 24) - 1  # the largest DATA frame we accept (the server picks its size)
# first probe after 30 s idle (as the nodes' grpcio channels' keepalive), then every 10 s, 3 unanswered
_KEEPALIVE = [
    (getattr(socket, name), value)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
]
MAX_MESSAGE = 64 << 20  # as the relay's grpcio channels' grpc.max_receive_message_length
_RESET_CODES: dict[int, grpc.StatusCode] = {
    h2.errors.ErrorCodes.CANCEL: grpc.StatusCode.CANCELLED,
    h2.errors.ErrorCodes.REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    h2.errors.ErrorCodes.ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    h2.errors.ErrorCodes.INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CallError(grpc.RpcError):
    """The call ended with a gRPC status other than OK (or could not run)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def tcp_target(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a node address the relay dials over TCP (``host:port``, ``[v6]:port``,
    ``dns:///host:port``), or None for other targets (unix sockets, name lists...)."""
    target = address.removeprefix("dns:///")
    if "://" in target or target.startswith("unix:"):
        return None
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host, int(port)) if host else None


class StreamCall:
    """A unary-request, streaming-response call; iterate it for the response messages (bytearrays,
    each the message without its gRPC prefix). :meth:`start` sends the request ahead (else the
    first iteration does): a caller that hands the reading to another thread need not wait for it."""

    def __init__(
        self, target: tuple[str, int], path: str, request: bytes, connect_timeout: float = 5.0
    ) -> None:
        self.target = target
        self.path = path
        self.request = request
        self.connect_timeout = connect_timeout
        self.cancelled = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conn: h2.connection.H2Connection | None = None
        self._stream_id = 0
        self._failed: BaseException | None = None  # what start() ran into, raised by the iteration

    def start(self) -> None:
        """Connect and send the request now (once); a failure is raised by the iteration."""
        if self._conn is not None or self._failed is not None:
            return
        try:
            self._open()
        except (OSError, CallError, h2.exceptions.ProtocolError) as exc:
            self._failed = exc

    def cancel(self) -> None:
        """End the call from another thread: the reader gets CANCELLED."""
        self.cancelled.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __iter__(self) -> Iterator[bytearray]:
        try:
            yield from self._messages()
        except (OSError, EOFError) as exc:
            if self.cancelled.is_set():
                raise CallError(grpc.StatusCode.CANCELLED, "Cancelled") from None
            raise CallError(grpc.StatusCode.UNAVAILABLE, _socket_error_text(exc)) from None
        except h2.exceptions.ProtocolError as exc:
            raise CallError(grpc.StatusCode.INTERNAL, f"HTTP/2 protocol error: {exc}") from None
        finally:
            with self._lock:
                sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()

    def _connect(self) -> socket.socket:
        if self.cancelled.is_set():
            raise CallError(grpc.StatusCode.CANCELLED, "Cancelled")
        sock = socket.create_connection(self.target, timeout=self.connect_timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in _KEEPALIVE:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        with self._lock:
            self._sock = sock
        if self.cancelled.is_set():  # cancelled while connecting
            raise CallError(grpc.StatusCode.CANCELLED, "Cancelled")
        return sock

    def _open(self) -> None:
        sock = self._connect()
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(WINDOW - 65535)
        stream_id = conn.get_next_available_stream_id()
        host, port = self.target
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", self.path),
                (":authority", authority),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(stream_id, struct.pack(">BI", 0, len(self.request)) + self.request, end_stream=True)
        sock.sendall(conn.data_to_send())
        self._conn, self._stream_id = conn, stream_id

    def _messages(self) -> Iterator[bytearray]:
        self.start()
        if self._failed is not None:
            raise self._failed
        conn, stream_id, sock = self._conn, self._stream_id, self._sock
        assert conn is not None
        if sock is None:  # cancelled since
            raise CallError(grpc.StatusCode.CANCELLED, "Cancelled")

        header = bytearray(9)
        header_view = memoryview(header)
        prefix = bytearray(5)
        message: bytearray | None = None  # the message being filled, after its prefix was read
        filled = prefixed = 0
        unacked = 0  # DATA payload read since the last window update
        status: str | None = None
        message_text = ""
        read_into = _reader(sock)
        while True:
            read_into(header_view)
            word, flags, frame_stream = _HEADER.unpack(header)
            kind, length = word & 0xFF, word >> 8
            if kind == _DATA and frame_stream == stream_id:
                left = length
                pad = 0
                if flags & _PADDED:
                    read_into(memoryview(prefix)[:1])  # the pad length (prefix is free here)
                    pad = prefix[0]
                    left -= 1 + pad
                    if left < 0:
                        raise CallError(grpc.StatusCode.INTERNAL, "malformed padded DATA frame")
                while left:
                    if message is None:
                        take = min(5 - prefixed, left)
                        read_into(memoryview(prefix)[prefixed : prefixed + take])
                        prefixed += take
                        left -= take
                        if prefixed == 5:
                            prefixed = 0
                            if prefix[0]:
                                raise CallError(
                                    grpc.StatusCode.INTERNAL, "compressed message (not asked for)"
                                )
                            size = int.from_bytes(prefix[1:5], "big")
                            if size > MAX_MESSAGE:
                                raise CallError(
                                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"Received message larger than max ({size} vs. {MAX_MESSAGE})",
                                )
                            message, filled = bytearray(size), 0
                            if not size:
                                yield message
                                message = None
                        continue
                    take = min(len(message) - filled, left)
                    read_into(memoryview(message)[filled : filled + take])
                    filled += take
                    left -= take
                    if filled == len(message):
                        done, message = message, None
                        yield done
                if pad:
                    read_into(memoryview(bytearray(pad)))
                unacked += length
                if unacked >= WINDOW // 4:  # give the server room again (stream and connection)
                    increment = unacked.to_bytes(4, "big")
                    sock.sendall(
                        _HEADER.pack(4 << 8 | _WINDOW_UPDATE, 0, stream_id)
                        + increment
                        + _HEADER.pack(4 << 8 | _WINDOW_UPDATE, 0, 0)
                        + increment
                    )
                    unacked = 0
                if flags & _END_STREAM:
                    raise CallError(grpc.StatusCode.INTERNAL, "stream ended without trailers")
                continue
            frame = bytearray(9 + length)
            frame[:9] = header
            if length:
                read_into(memoryview(frame)[9:])
            if kind == _GOAWAY and length >= 8 and not frame_stream:
                # read here: h2 takes no frame after a GOAWAY, but streams up to its last one go on
                last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
                if int.from_bytes(frame[13:17], "big") or last < stream_id:
                    raise CallError(grpc.StatusCode.UNAVAILABLE, "the server closed the connection")
                continue
            for event in conn.receive_data(bytes(frame)):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    if event.stream_id != stream_id:
                        continue
                    fields = {
                        bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in event.headers
                    }
                    if fields.get(":status", "200") != "200":
                        raise CallError(
                            grpc.StatusCode.UNAVAILABLE, f"unexpected HTTP status {fields[':status']}"
                        )
                    if "grpc-status" in fields:
                        status = fields["grpc-status"]
                        message_text = unquote(fields.get("grpc-message", ""), errors="replace")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    if message is not None or prefixed:
                        raise CallError(grpc.StatusCode.INTERNAL, "stream ended inside a message")
                    if status is None:
                        raise CallError(grpc.StatusCode.INTERNAL, "stream ended without a gRPC status")
                    if status != "0":
                        code = _STATUS_CODES.get(
                            int(status) if status.isdigit() else -1, grpc.StatusCode.UNKNOWN
                        )
                        raise CallError(code, message_text)
                    return
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    code = _RESET_CODES.get(int(event.error_code or 0), grpc.StatusCode.INTERNAL)
                    raise CallError(code, f"Stream reset by the server (error code {int(event.error_code)})")
                elif isinstance(event, h2.events.ConnectionTerminated):  # a malformed GOAWAY
                    raise CallError(grpc.StatusCode.UNAVAILABLE, "the server closed the connection")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)


# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # message buffers below this come from the heap, not fresh mappings
TRIM_THRESHOLD = 64 << 20  # free memory the heap keeps before returning it to the system


def keep_freed_memory() -> bool:
    """Let the process reuse the memory of freed message buffers instead of mapping fresh pages.

    A message buffer (up to a megabyte, a node's indexed batch) is a ``bytearray`` from glibc's
    malloc, which maps large blocks anew (a thread's own arena too) and returns freed memory to the
    system, so that the next buffer's pages are faulted in (and zeroed) again: about a third of the
    pages a relay received, 670 to 970 faults on a 16,404-flow read, 0.07 to 0.1 µs of its CPU a flow.
    With blocks up to MMAP_THRESHOLD taken from the heap and up to TRIM_THRESHOLD of free memory
    kept (per arena: the process keeps what its busiest moment needed, within those bounds), the
    pages are reused. The relay calls it once at startup; False where the C library has no
    ``mallopt`` (or refuses): nothing changes then."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _reader(sock: socket.socket) -> Callable[[memoryview], None]:
    """A function filling a view from ``sock`` (EOFError when the connection ends first)."""
    recv_into = sock.recv_into

    def read_into(view: memoryview) -> None:
        while len(view):
            got = recv_into(view)
            if not got:
                raise EOFError("the server closed the connection")
            view = view[got:]

    return read_into


def _socket_error_text(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "failed to connect to all addresses; last error: Connection refused"
    if isinstance(exc, EOFError):
        return "Socket closed"
    return f"connection to the node failed: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
