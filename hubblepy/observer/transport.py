"""A gRPC server transport on the ``h2`` HTTP/2 state machine and asyncio, hosting grpcio handlers.

Why: grpcio's synchronous server costs about 180 µs of Python per streamed message here, so a
``GetFlows`` stream of one ``GetFlowsResponse`` per message (what upstream clients read) tops out
near 6k flows/s. This transport packs every message a handler produced since the last write into
the same HTTP/2 DATA frames, so the per-message cost is a 5-byte prefix and a list append.

What it hosts: the same ``grpc.GenericRpcHandler`` objects and ``grpc.RpcMethodHandler`` values a
``grpc.server`` takes (unary and streaming in both directions), so health, reflection and our
services register unchanged. A streaming handler may yield :class:`Frames` (many length-prefixed
messages at once, see :func:`framed_stream`) to skip the per-message handoff, or :class:`FrameViews`
(the same in several buffers, views included, sent without being joined or copied). Handlers run in worker threads with a ``ServicerContext`` that offers
what grpcio's does for them: ``abort``, ``is_active``, ``add_callback``, ``invocation_metadata``,
``send_initial_metadata``, ``set_trailing_metadata``, ``set_code``/``set_details``,
``time_remaining``, ``peer``.

Wire behaviour: HTTP/2 flow control both ways, responses with initial headers, length-prefixed
messages and trailers (``grpc-status``, percent-encoded ``grpc-message``), Trailers-Only for calls
that fail before any message, ``grpc-timeout`` deadlines (DEADLINE_EXCEEDED), client cancellation
by RST_STREAM (the call becomes inactive and its callbacks run), GOAWAY on shutdown with a grace
period. TLS via :mod:`ssl` with ALPN ``h2``; client certificates are required when client CAs are
given (mTLS). Compressed requests are refused with UNIMPLEMENTED; responses are never compressed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import queue
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
from h2.connection import ConnectionState
from hyperframe.frame import GoAwayFrame

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # bytes a call may hold unsent before its handler thread waits
LOW_WATER = 256 << 10
MAX_REQUEST_BYTES = 4 << 20  # as grpcio's default max receive message length
INBOUND_WINDOW = 1 << 20
WRITE_BURST = 256 << 10  # bytes of DATA frames handed to the socket in one write
_PREFIX = struct.Struct(">BI")
_DATA_HEADER = struct.Struct(">IBI")  # HTTP/2 frame header: length << 8 | type DATA (0), flags, stream
_MAX_WINDOW = (1 << 31) - 1
_WINDOW_UPDATE, _PING = 8, 6
_PING_ACK = _DATA_HEADER.pack(8 << 8 | _PING, 1, 0)  # header of a PING frame with ACK, stream 0
_CONTROL_STATES = (ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN)
# The fast path reads h2's input buffer to know it holds no partial frame; with another h2 layout
# every frame goes to h2 as before.
_H2_BUFFER_KNOWN = all(
    hasattr(h2.frame_buffer.FrameBuffer(server=True), name)
    for name in ("_data", "_preamble_len", "_headers_buffer")
)
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_RESERVED_HEADERS = {"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"}


class Frames(bytes):
    """Complete gRPC messages, each with its 5-byte prefix, that a streaming handler yields so that
    they are sent as they are (one handoff for many messages). Only :class:`GrpcServer` knows it.

    ``messages``: how many there are, when the producer says so (the node's template scans do;
    0 = not told)."""

    messages = 0


class FrameViews(tuple):
    """Complete gRPC messages, each with its 5-byte prefix, in consecutive buffers (``bytes`` or
    memoryviews of bytes: the concatenation is the messages) that a streaming handler yields so that
    they are sent as they are, without a copy of their own: a relay forwards slices of a node's
    bytes this way. Only :class:`GrpcServer` knows it; the buffers must not change afterwards."""

    def size(self) -> int:
        """The bytes of all the buffers."""
        return sum(map(len, self))


FRAMES_FLUSH_BYTES = 64 << 10


def framed_stream(
    items: Iterable[bytes | FrameViews], flush_bytes: int = FRAMES_FLUSH_BYTES
) -> Iterator[Frames | FrameViews]:
    """Group serialized messages into :class:`Frames`; ``b""`` items mark moments the producer is
    about to wait, and flush what is held (so a caught-up follower gets each message at once).
    :class:`Frames` and :class:`FrameViews` items (framed already) go on as they are."""
    parts: list[bytes] = []
    size = 0
    pack = _PREFIX.pack
    for item in items:
        if isinstance(item, FrameViews) or type(item) is Frames:  # already framed upstream: pass it on
            if parts:
                yield Frames(b"".join(parts))
                parts.clear()
                size = 0
            yield item
            continue
        if item:
            parts.append(pack(0, len(item)))
            parts.append(item)
            size += len(item) + 5
            if size < flush_bytes:
                continue
        if parts:
            yield Frames(b"".join(parts))
            parts.clear()
            size = 0
    if parts:
        yield Frames(b"".join(parts))


@dataclass
class TLSConfig:
    """PEM bytes of the server's certificate and key; ``client_ca`` set means client certs are required."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: a private temporary directory, removed right away.
        with tempfile.TemporaryDirectory(prefix="hubblepy-tls-") as tmp:
            cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for path, data in ((cert_path, self.cert), (key_path, self.key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except ssl.SSLError as exc:
                raise ValueError(f"invalid TLS certificate or key: {exc.reason or exc}") from None
        if self.client_ca is not None:
            try:
                ctx.load_verify_locations(cadata=self.client_ca.decode("ascii", "replace"))
            except ssl.SSLError as exc:
                raise ValueError(f"invalid TLS client CA: {exc.reason or exc}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["h2"])
        return ctx


class _Abort(Exception):
    """Raised by ``context.abort`` to end the handler with a status."""


class _Cancelled(Exception):
    """The call is no longer active: the handler's response stream is abandoned."""


@dataclass(frozen=True)
class _CallDetails:
    method: str
    invocation_metadata: tuple[tuple[str, Any], ...]


def _status_name_value(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def _encode_message(details: str) -> str:
    """``grpc-message`` is percent-encoded (RFC 3986 unreserved chars and printable ASCII stay)."""
    return quote(details, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def parse_timeout(value: str) -> float | None:
    """Seconds of a ``grpc-timeout`` header (``100m``, ``5S``), or None when malformed."""
    if len(value) < 2 or len(value) > 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


class ServicerContext:
    """What a handler sees of its call (the subset of ``grpc.ServicerContext`` our handlers use)."""

    def __init__(self, call: _Call) -> None:
        self._call = call

    def is_active(self) -> bool:
        return self._call.active

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._call.add_callback(callback)

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._call.metadata

    def send_initial_metadata(self, metadata: Iterable[tuple[str, Any]]) -> None:
        self._call.set_initial_metadata(metadata)

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, Any]]) -> None:
        self._call.trailing_metadata = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._call.code = code

    def set_details(self, details: str) -> None:
        self._call.details = details

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if code == grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN  # as grpcio: abort never ends a call successfully
        self._call.code = code
        self._call.details = details
        raise _Abort(details)

    def time_remaining(self) -> float | None:
        if self._call.deadline is None:
            return None
        return max(0.0, self._call.deadline - time.monotonic())

    def peer(self) -> str:
        return self._call.conn.peer

    def cancel(self) -> None:
        self._call.conn.loop.call_soon_threadsafe(self._call.conn.cancel_call, self._call, True)


class _Call:
    """One RPC on one HTTP/2 stream. The handler thread produces, the event loop sends."""

    def __init__(
        self, conn: _Connection, stream_id: int, method: Any, metadata: tuple, deadline: float | None
    ):
        self.conn = conn
        self.stream_id = stream_id
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.active = True
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailing_metadata: tuple[tuple[str, Any], ...] = ()
        self.initial_metadata: tuple[tuple[str, Any], ...] = ()
        self.headers_sent = False
        self.finished = False  # the handler is done (trailers go out after the data)
        self.closed = False  # the stream is over on our side (trailers sent or reset)
        self.callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()
        # handler thread -> loop: framed messages; only the handler writes pushed, only the loop sent
        self.outbox: collections.deque[bytes] = collections.deque()
        self.pushed = 0
        self.sent = 0
        self.scheduled = False
        self.room = threading.Event()
        self.room.set()
        # loop side: what was taken from the outbox and not yet sent, as views of the handler's
        # bytes (a shared answer's bytes go to every reader's socket without copies of their own)
        self.pending: collections.deque[memoryview] = collections.deque()
        self.pending_bytes = 0
        self.request_body = bytearray()
        self.requests: queue.SimpleQueue[Any] | None = None  # streaming requests
        self.timer: asyncio.TimerHandle | None = None
        self.request: Any = None  # the request of a unary-request call

    # -- handler thread side -----------------------------------------------------------------
    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self.lock:
            if self.active:
                self.callbacks.append(callback)
                return True
        return False

    def set_initial_metadata(self, metadata: Iterable[tuple[str, Any]]) -> None:
        self.initial_metadata = tuple(metadata)
        self.conn.loop.call_soon_threadsafe(self.conn.send_headers_early, self)

    def push(self, message: bytes) -> None:
        """Queue one serialized message for sending; waits while too much is unsent."""
        self.push_frames(_PREFIX.pack(0, len(message)) + message)

    def push_frames(self, data: bytes) -> None:
        """Queue length-prefixed messages for sending; waits while too much is unsent."""
        if not self.active:
            raise _Cancelled
        self.outbox.append(data)
        self.pushed += len(data)
        self._handed_over()

    def push_views(self, views: FrameViews) -> None:
        """Queue length-prefixed messages held in several buffers, in order, without joining them."""
        if not self.active:
            raise _Cancelled
        self.outbox.extend(views)
        self.pushed += views.size()
        self._handed_over()

    def _handed_over(self) -> None:
        """Wake the loop for what was queued; wait while too much is unsent."""
        if not self.scheduled:
            self.scheduled = True
            self.conn.loop.call_soon_threadsafe(self.conn.take, self)
        if self.pushed - self.sent > HIGH_WATER:
            self.room.clear()
            while self.pushed - self.sent > HIGH_WATER:
                if not self.active:
                    raise _Cancelled
                self.room.wait(0.25)

    def finish(self) -> None:
        self.conn.loop.call_soon_threadsafe(self.conn.finish_call, self)

    def request_iterator(self) -> Iterator[Any]:
        assert self.requests is not None
        while True:
            item = self.requests.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 framing on the loop, calls dispatched to worker threads."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.loop = server.loop
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=True)
        )
        self.transport: asyncio.Transport | None = None
        self.calls: dict[int, _Call] = {}
        self.writable = True
        self.peer = ""
        self.going_away = False
        self.control_out: list[bytes] = []  # PING ACKs written with the next write

    # -- asyncio protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            host = peername[0]
            self.peer = f"ipv6:[{host}]:{peername[1]}" if ":" in host else f"ipv4:{host}:{peername[1]}"
        else:
            self.peer = f"unix:{peername or ''}"
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
            transport.close()  # gRPC needs h2 over TLS; a client without ALPN is not one
            return
        self.h2.initiate_connection()
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INBOUND_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16 << 10,
            }
        )
        self.h2.increment_flow_control_window(INBOUND_WINDOW)
        self.flush()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for call in list(self.calls.values()):
            self.cancel_call(call, send_reset=False)
        self.calls.clear()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        for call in list(self.calls.values()):
            self.send_pending(call)
        self.flush()

    def control_frames(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Apply the WINDOW_UPDATE and PING frames at ``data[pos:]`` without h2.

        A reader of a long stream sends little else (grpc-go: a window update every quarter window
        and a BDP ping now and then), and h2 costs ~40 µs a frame. Done here only while h2 holds no
        partial input and the connection is open; frames h2 must judge (zero or overflowing
        increments, streams that are not open, anything else) are left to it.
        Returns the position of the first frame not handled and whether a window grew; PINGs are
        acknowledged (with the next write: a socket write costs more than the frames it carries).
        """
        conn = self.h2
        end, moved = len(data), False
        acks: list[bytes] = []
        unpack = _DATA_HEADER.unpack_from
        while end - pos >= 9:
            word, flags, stream_id = unpack(data, pos)
            kind, length = word & 0xFF, word >> 8
            if kind == _WINDOW_UPDATE and length == 4 and end - pos >= 13:
                increment = int.from_bytes(data[pos + 9 : pos + 13], "big") & 0x7FFFFFFF
                if not increment:
                    break
                target: Any = conn if stream_id == 0 else conn.streams.get(stream_id & 0x7FFFFFFF)
                if target is None or (target is not conn and not target.open):
                    break
                window = target.outbound_flow_control_window + increment
                if window > _MAX_WINDOW:
                    break
                target.outbound_flow_control_window = window
                moved = True
            elif kind == _PING and length == 8 and stream_id == 0 and end - pos >= 17:
                if not flags & 1:  # a ping, not an ACK of ours: answer with the same 8 bytes
                    acks.append(_PING_ACK + data[pos + 9 : pos + 17])
            else:
                break
            pos += 9 + length
        if acks:  # sent with the next write (the data this read lets out, or the flush ending it)
            self.control_out += acks
        return pos, moved

    def _h2_idle(self) -> bool:
        """h2 holds no partial frame or header block and the connection is open."""
        buf = self.h2.incoming_buffer
        return (
            _H2_BUFFER_KNOWN
            and not buf._data
            and not buf._preamble_len
            and not buf._headers_buffer
            and self.h2.state_machine.state in _CONTROL_STATES
        )

    def data_received(self, data: bytes) -> None:
        window_moved = False
        events: list[Any] = []
        pos, end = 0, len(data)
        try:
            while pos < end:
                if self._h2_idle():
                    pos, moved = self.control_frames(data, pos)
                    window_moved = window_moved or moved
                    if pos >= end:
                        break
                    # h2 takes the next frame (or all that is left when its header is incomplete)
                    upto = (
                        end
                        if end - pos < 9
                        else min(end, pos + 9 + int.from_bytes(data[pos : pos + 3], "big"))
                    )
                else:
                    upto = end
                events.extend(self.h2.receive_data(data[pos:upto] if pos or upto < end else data))
                pos = upto
        except h2.exceptions.ProtocolError:
            self.flush()
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.on_request(event.stream_id, event.headers, event.stream_ended is not None)
            elif isinstance(event, h2.events.DataReceived):
                self.on_data(event)
            elif isinstance(event, h2.events.StreamEnded):
                call = self.calls.get(event.stream_id)
                if call is not None:
                    self.on_request_end(call)
            elif isinstance(event, h2.events.StreamReset):
                call = self.calls.get(event.stream_id)
                if call is not None:
                    self.cancel_call(call, send_reset=False)
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                window_moved = True  # one send per read, however many updates it carried
            elif isinstance(event, h2.events.ConnectionTerminated):
                for call in list(self.calls.values()):
                    self.cancel_call(call, send_reset=False)
                self.flush()
                self.close()
                return
        if window_moved:
            for call in list(self.calls.values()):
                self.send_pending(call)
        self.flush()

    # -- loop helpers ------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if self.control_out:
            data = b"".join(self.control_out) + data
            self.control_out.clear()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def go_away(self) -> None:
        """Tell the client no new streams will be accepted; running calls go on."""
        if self.going_away or self.transport is None or self.transport.is_closing():
            return
        self.going_away = True
        last = max(self.calls, default=self.h2.highest_inbound_stream_id or 0)
        frame = GoAwayFrame(0, last_stream_id=last, error_code=0)
        self.flush()
        self.transport.write(frame.serialize())

    def reset(self, stream_id: int, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.CANCEL) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self.h2.reset_stream(stream_id, code)

    def respond_status(self, stream_id: int, code: grpc.StatusCode, details: str) -> None:
        """A Trailers-Only response: the call ends before any message."""
        headers = [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(_status_name_value(code)).encode()),
        ]
        if details:
            headers.append((b"grpc-message", _encode_message(details).encode()))
        with contextlib.suppress(h2.exceptions.H2Error):
            self.h2.send_headers(stream_id, headers, end_stream=True)

    def on_request(self, stream_id: int, raw_headers: list, ended: bool) -> None:
        headers: dict[str, str] = {}
        metadata: list[tuple[str, Any]] = []
        for name_b, value_b in raw_headers:
            name = name_b.decode("latin-1") if isinstance(name_b, bytes) else name_b
            value = value_b.decode("latin-1") if isinstance(value_b, bytes) else value_b
            headers.setdefault(name, value)
            if name.startswith(":") or name in _RESERVED_HEADERS:
                continue
            if name.endswith("-bin"):
                try:
                    metadata.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
                except ValueError:
                    continue
            else:
                metadata.append((name, value))
        if headers.get(":method") != "POST" or not headers.get("content-type", "").startswith(
            "application/grpc"
        ):
            with contextlib.suppress(h2.exceptions.H2Error):
                self.h2.send_headers(stream_id, [(b":status", b"415")], end_stream=True)
            return
        if self.going_away:
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        path = headers.get(":path", "")
        method = self.server.lookup(path, tuple(metadata))
        if method is None:
            self.respond_status(stream_id, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        deadline = None
        if "grpc-timeout" in headers:
            seconds = parse_timeout(headers["grpc-timeout"])
            if seconds is None:
                self.respond_status(stream_id, grpc.StatusCode.INTERNAL, "malformed grpc-timeout")
                return
            deadline = time.monotonic() + seconds
        call = _Call(self, stream_id, method, tuple(metadata), deadline)
        self.calls[stream_id] = call
        if deadline is not None:
            call.timer = self.loop.call_at(
                self.loop.time() + (deadline - time.monotonic()), self.expire_call, call
            )
        if method.request_streaming:
            call.requests = queue.SimpleQueue()
            self.server.dispatch(call)
        if ended:
            self.on_request_end(call)

    def on_data(self, event: h2.events.DataReceived) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        call = self.calls.get(event.stream_id)
        if call is None or call.closed:
            return
        call.request_body += event.data
        if len(call.request_body) > MAX_REQUEST_BYTES + 5:
            self.fail_call(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "request message larger than max")
            return
        if call.requests is not None:
            for message in self.take_messages(call):
                call.requests.put(message)

    def take_messages(self, call: _Call) -> list[Any]:
        """Complete length-prefixed messages at the head of the request body, deserialized."""
        out = []
        body = call.request_body
        while len(body) >= 5:
            flag, size = _PREFIX.unpack_from(body)
            if len(body) < 5 + size:
                break
            payload = bytes(body[5 : 5 + size])
            del body[: 5 + size]
            if flag:
                self.fail_call(call, grpc.StatusCode.UNIMPLEMENTED, "compressed requests are not supported")
                return []
            out.append(self.deserialize(call, payload))
            if call.closed:
                return []
        return out

    def deserialize(self, call: _Call, payload: bytes) -> Any:
        deserializer = call.method.request_deserializer
        if deserializer is None:
            return payload
        try:
            return deserializer(payload)
        except Exception:
            self.fail_call(call, grpc.StatusCode.INTERNAL, "Exception deserializing request!")
            return None

    def on_request_end(self, call: _Call) -> None:
        if call.closed:
            return
        if call.requests is not None:
            if call.request_body:
                self.fail_call(call, grpc.StatusCode.INTERNAL, "truncated request message")
                return
            call.requests.put(None)
            return
        messages = self.take_messages(call)
        if call.closed:
            return
        if len(messages) != 1 or call.request_body:
            self.fail_call(call, grpc.StatusCode.INTERNAL, "expected exactly one request message")
            return
        call.request = messages[0]
        self.server.dispatch(call)

    def fail_call(self, call: _Call, code: grpc.StatusCode, details: str) -> None:
        """End a call from the loop (bad request, deadline): status to the client, handler cancelled."""
        if call.closed:
            return
        call.code, call.details = code, details
        self.deactivate(call)
        call.pending.clear()
        call.pending_bytes = 0
        call.outbox.clear()
        self.send_trailers(call)

    def expire_call(self, call: _Call) -> None:
        self.fail_call(call, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self.flush()

    def deactivate(self, call: _Call) -> None:
        with call.lock:
            was_active = call.active
            call.active = False
            callbacks, call.callbacks = call.callbacks, []
        call.room.set()
        if call.requests is not None:
            call.requests.put(_Cancelled())
        if call.timer is not None:
            call.timer.cancel()
        if was_active:
            for callback in callbacks:
                self.server.run_callback(callback)

    def cancel_call(self, call: _Call, send_reset: bool) -> None:
        """The client went away or reset the stream: the handler sees an inactive call."""
        self.deactivate(call)
        if send_reset and not call.closed:
            self.reset(call.stream_id)
        call.closed = True
        self.calls.pop(call.stream_id, None)

    def send_headers_early(self, call: _Call) -> None:
        if not call.closed and not call.headers_sent:
            self.send_headers(call)
            self.flush()

    def send_headers(self, call: _Call) -> None:
        headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        headers += _metadata_headers(call.initial_metadata)
        call.headers_sent = True
        self.h2.send_headers(call.stream_id, headers)

    def take(self, call: _Call) -> None:
        """Move what the handler queued into the call's pending views and send what fits."""
        call.scheduled = False
        outbox = call.outbox
        while outbox:
            chunk = outbox.popleft()
            if call.closed:
                call.sent += len(chunk)
            elif chunk:
                call.pending.append(memoryview(chunk))
                call.pending_bytes += len(chunk)
        self.send_pending(call)
        self.flush()

    def send_pending(self, call: _Call) -> None:
        if call.closed:
            return
        try:
            if call.pending_bytes and not call.headers_sent:
                self.send_headers(call)
            conn, stream_id = self.h2, call.stream_id
            while call.pending_bytes and self.writable:
                burst = min(conn.local_flow_control_window(stream_id), call.pending_bytes, WRITE_BURST)
                if burst <= 0:
                    break
                stream = conn.streams.get(stream_id)
                if stream is None or not stream.open:
                    raise h2.exceptions.StreamClosedError(stream_id)
                # DATA frames are built here, not by h2 (which costs ~30 us a frame): h2 has checked
                # the stream is open, and its windows are reduced by what the frames carry. Whatever
                # h2 has queued (headers) goes first.
                out: list[bytes | memoryview] = [*self.control_out, conn.data_to_send()]
                self.control_out.clear()
                _data_frames(call, burst, conn.max_outbound_frame_size, out)
                stream.outbound_flow_control_window -= burst
                conn.outbound_flow_control_window -= burst
                call.sent += burst
                if self.transport is not None and not self.transport.is_closing():
                    # one vectored write of the frames' headers and views of the messages, not a
                    # joined copy (may pause writing: the buffer is full)
                    self.transport.writelines(out)
        except h2.exceptions.StreamClosedError:
            self.cancel_call(call, send_reset=False)
            return
        if call.pushed - call.sent < LOW_WATER and not call.room.is_set():
            call.room.set()
        if call.finished and not call.pending_bytes and not call.outbox:
            self.send_trailers(call)

    def finish_call(self, call: _Call) -> None:
        call.finished = True
        if call.closed:
            return
        self.take(call)

    def send_trailers(self, call: _Call) -> None:
        if call.closed:
            return
        call.closed = True
        self.calls.pop(call.stream_id, None)
        if call.timer is not None:
            call.timer.cancel()
        try:
            if not call.headers_sent:
                headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
                headers += _metadata_headers(call.initial_metadata)
            else:
                headers = []
            headers.append((b"grpc-status", str(_status_name_value(call.code)).encode()))
            if call.details:
                headers.append((b"grpc-message", _encode_message(call.details).encode()))
            headers += _metadata_headers(call.trailing_metadata)
            self.h2.send_headers(call.stream_id, headers, end_stream=True)
        except h2.exceptions.H2Error:
            pass
        with call.lock:
            call.active = False
            call.callbacks = []


def _data_frames(call: _Call, size: int, frame_max: int, out: list[bytes | memoryview]) -> None:
    """Append DATA frames carrying the next ``size`` pending bytes of ``call`` to ``out`` (views)."""
    pending = call.pending
    call.pending_bytes -= size
    pack, stream_id = _DATA_HEADER.pack, call.stream_id
    while size:
        frame = min(frame_max, size)
        size -= frame
        out.append(pack(frame << 8, 0, stream_id))
        while frame:
            head = pending[0]
            if len(head) <= frame:
                pending.popleft()
                out.append(head)
                frame -= len(head)
            else:
                out.append(head[:frame])
                pending[0] = head[frame:]
                frame = 0


def _metadata_headers(metadata: Iterable[tuple[str, Any]]) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in metadata:
        name = key.lower()
        if name.endswith("-bin"):
            raw = value if isinstance(value, bytes) else str(value).encode()
            out.append((name.encode(), base64.b64encode(raw).rstrip(b"=")))
        else:
            out.append((name.encode(), value.encode() if isinstance(value, str) else bytes(value)))
    return out


class GrpcServer:
    """A ``grpc.Server`` look-alike for our handlers: ports, start, and ``stop(grace).wait()``."""

    def __init__(
        self,
        max_workers: int = 64,
        maximum_concurrent_rpcs: int | None = None,
        thread_name_prefix: str = "hubble-grpc",
    ) -> None:
        self.executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix=thread_name_prefix)
        self.callback_pool = futures.ThreadPoolExecutor(2, thread_name_prefix=f"{thread_name_prefix}-cb")
        self.maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self.generic_handlers: list[grpc.GenericRpcHandler] = []
        self.registered: dict[str, grpc.RpcMethodHandler] = {}
        self.connections: set[_Connection] = set()
        self.loop = _new_loop()
        self.sockets: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.thread: threading.Thread | None = None
        self.running = 0
        self.running_lock = threading.Lock()
        self.idle = threading.Condition(self.running_lock)
        self.stopped = threading.Event()

    # -- grpc.Server-like registration --------------------------------------------------------
    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.generic_handlers.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self.registered[f"/{service}/{name}"] = handler

    def add_insecure_port(self, target: str) -> int:
        return self._bind(target, None)

    def add_secure_port(self, target: str, tls: TLSConfig) -> int:
        return self._bind(target, tls.ssl_context())

    def _bind(self, target: str, ctx: ssl.SSLContext | None) -> int:
        if target.startswith("unix:"):
            path = target[5:]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except OSError:
                sock.close()
                raise
            port = 0
        else:
            sock = _tcp_socket(target)
            port = sock.getsockname()[1]
        sock.listen(512)
        sock.setblocking(False)
        self.sockets.append((sock, ctx))
        return port

    def lookup(self, path: str, metadata: tuple) -> Any:
        handler = self.registered.get(path)
        if handler is not None:
            return handler
        details = _CallDetails(path, metadata)
        for generic in self.generic_handlers:
            found = generic.service(details)
            if found is not None:
                return found
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc-h2-loop", daemon=True)
        self.thread.start()

        async def serve() -> None:
            for sock, ctx in self.sockets:
                server = await self.loop.create_server(
                    lambda: _Connection(self), sock=sock, ssl=ctx, ssl_handshake_timeout=10.0 if ctx else None
                )
                self.servers.append(server)

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)

    def stop(self, grace: float | None) -> threading.Event:
        """Stop listening, send GOAWAY, let running calls finish for ``grace`` seconds, then cancel them."""
        if self.thread is None or self.stopped.is_set():
            for sock, _ in self.sockets:
                sock.close()
            self.stopped.set()
            return self.stopped

        def begin() -> None:
            for server in self.servers:
                server.close()
            for conn in list(self.connections):
                conn.go_away()

        self.loop.call_soon_threadsafe(begin)
        threading.Thread(target=self._finish_stop, args=(grace or 0.0,), daemon=True).start()
        return self.stopped

    def _finish_stop(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        with self.idle:
            while self.running and time.monotonic() < deadline:
                self.idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))

        def end() -> None:
            for conn in list(self.connections):
                for call in list(conn.calls.values()):
                    conn.fail_call(call, grpc.StatusCode.UNAVAILABLE, "server shutting down")
                conn.flush()
                conn.close()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(_call_async(end), self.loop).result(5)
            time.sleep(0.05)  # let the closing transports write their last bytes
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(5)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.callback_pool.shutdown(wait=False)
        self.stopped.set()

    # -- calls -----------------------------------------------------------------------------------
    def admit(self) -> bool:
        with self.running_lock:
            if self.maximum_concurrent_rpcs is not None and self.running >= self.maximum_concurrent_rpcs:
                return False
            self.running += 1
            return True

    def release(self) -> None:
        with self.running_lock:
            self.running -= 1
            self.idle.notify_all()

    def dispatch(self, call: _Call) -> None:
        """Loop side: hand a call whose request is there (or streams in) to a worker thread."""
        if not self.admit():
            call.conn.fail_call(call, grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!")
            return
        try:
            self.executor.submit(_run_call, call)
        except RuntimeError:  # shutting down
            self.release()
            call.conn.fail_call(call, grpc.StatusCode.UNAVAILABLE, "server shutting down")

    def run_callback(self, callback: Callable[[], None]) -> None:
        try:
            self.callback_pool.submit(_safe_callback, callback)
        except RuntimeError:
            _safe_callback(callback)


async def _call_async(func: Callable[[], None]) -> None:
    func()


def _safe_callback(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("RPC termination callback failed")


def _run_call(call: _Call) -> None:
    """Worker thread: run the handler, push its responses, set the final status."""
    method = call.method
    context = ServicerContext(call)
    serialize = method.response_serializer
    try:
        if method.request_streaming:
            request: Any = call.request_iterator()
        else:
            request = call.request
        if method.response_streaming:
            behavior = method.unary_stream if not method.request_streaming else method.stream_stream
            push, push_frames, push_views = call.push, call.push_frames, call.push_views
            responses = behavior(request, context)
            try:
                for response in responses:
                    if type(response) is Frames:
                        push_frames(response)
                    elif type(response) is FrameViews:
                        push_views(response)
                    else:
                        push(serialize(response) if serialize is not None else response)
            finally:
                close = getattr(responses, "close", None)
                if close is not None:
                    close()  # a generator's cleanup runs now, not when it is collected
        else:
            behavior = method.unary_unary if not method.request_streaming else method.stream_unary
            response = behavior(request, context)
            if call.code == grpc.StatusCode.OK:  # a handler that set an error code sends no message
                call.push(serialize(response) if serialize is not None else response)
    except (_Abort, _Cancelled):
        pass
    except Exception as exc:
        if call.active:
            kind = "iterating responses" if method.response_streaming else "calling application"
            log.exception("Exception %s", kind)
            call.code = grpc.StatusCode.UNKNOWN
            call.details = f"Exception {kind}: {exc}"
    finally:
        call.finish()
        call.conn.server.release()


def _tcp_socket(target: str) -> socket.socket:
    """A bound TCP socket for ``host:port`` / ``[v6]:port``; ``[::]`` listens on IPv4 too."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise OSError(f"invalid listen address {target}")
    port = int(port_text)
    host = host.strip("[]")
    if host in ("::", ""):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            return sock
        except OSError:
            sock.close()
            host = "0.0.0.0"
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    err: OSError | None = None
    for family, socktype, proto, _, addr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            err = exc
    raise err or OSError(f"cannot listen on {target}")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
