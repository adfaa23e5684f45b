"""The node's HTTP/1.1 L7 policy proxy: transparent, asyncio on uvloop, requests parsed by httptools (llhttp).

``python -m hubblepy.proxy http --listen 0.0.0.0:15001 --transparent --state FILE --access-log SOCK``

* **Transparent** (the lab, :mod:`.sockets`): the listening socket has IP_TRANSPARENT, so connections
  the datapath steers to it keep their original destination: ``getsockname()`` is the server the
  client dialled, ``getpeername()`` the client. The upstream connection binds the client's address
  (IP_TRANSPARENT) and carries the from-proxy mark, so the server sees the real client and the
  datapath does not redirect it again. ``--upstream HOST:PORT`` (tests only) sends every connection to
  one server and judges it as if it were addressed there.
* **Policy** (:mod:`.state`, :mod:`hubblepy.policy.l7`): per request, the source's egress rules and the
  destination's ingress rules for the peer's identity and the port; a request passes only if every
  rule set on its path allows it. Refused: ``403 Forbidden``, body ``Access denied\\r\\n`` (Envoy's
  answer), and the connection stays usable. No state, or no rule set for the connection: refused too
  (fail closed).
* **HTTP/1.1**: keep-alive and pipelining (requests answered in order, one upstream exchange at a
  time on one upstream connection per client connection), bodies streamed in both directions with
  bounded buffers (chunked re-encoded, Content-Length passed through), origin- and absolute-form
  targets (absolute-form is rewritten to origin-form, its authority becomes ``Host``), ``Expect:
  100-continue`` passed to the server (refused requests get their 403 without reading the body, then
  the connection closes), ``Upgrade`` refused with 403 unless ``--allow-upgrade`` names it (then the
  101 turns the connection into a tunnel), ``CONNECT`` refused. An ``X-Request-Id`` is added when
  missing (access-log latency pairs request and response by it).
* **Errors**: upstream unreachable or reset before a response: ``503``; malformed request: ``400`` and
  close; headers not complete within ``--header-timeout``: ``408`` and close; no request for
  ``--idle-timeout``: close. One connection's failure never affects another.
* **Access log** (:mod:`.accesslog`): one ``Request`` and one ``Response`` record per exchange, with both
  endpoints, the verdict and the policy attribution (extension key ``hubblepy``).

SIGHUP reloads the state file; SIGTERM/SIGINT stop the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
import time
import uuid
from collections import deque
from typing import Any, cast

import httptools
import orjson

from hubblepy import native
from hubblepy.parser.seven import Correlator
from hubblepy.policy.l7 import Decision, Request
from hubblepy.policy.model import EGRESS
from hubblepy.proxy import accesslog
from hubblepy.proxy.sockets import listening_socket, upstream_socket
from hubblepy.proxy.state import EndpointInfo, ProxyState, StateError, load_state, write_state

DENIED_BODY = b"Access denied\r\n"
# request headers the proxy itself looks at
_SPECIAL_HEADERS = {
    b"host": 1,
    b"transfer-encoding": 2,
    b"expect": 3,
    b"x-request-id": 4,
    b"upgrade": 5,
    b"traceparent": 6,
}
HIGH_WATER = 256 * 1024  # bytes a transport or a queue may hold before the other side pauses
MAX_QUEUED = 32  # pipelined requests waiting behind the current one
LOG_WAIT = 2.0  # seconds clients may wait at most for the node to catch up with the access log
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    503: "Service Unavailable",
}
_HEX3 = [f"{n:03x}" for n in range(4096)]
_UPSTREAM_FAILED = (
    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)


def _response(code: int, body: bytes, close: bool, request_id: str = "") -> bytes:
    head = [
        f"HTTP/1.1 {code} {_REASONS[code]}",
        f"content-length: {len(body)}",
        "content-type: text/plain",
        "date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
        "server: hubblepy-proxy",
    ]
    if request_id:
        head.append(f"x-request-id: {request_id}")
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _BadRequest(Exception):
    """Raised inside a parser callback: llhttp stops and the request gets 400."""


class Options:
    def __init__(
        self,
        header_timeout: float = 30.0,
        idle_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        allow_upgrade: frozenset[str] = frozenset(),
        transparent: bool = False,
        mark: int = 0,
        upstream: tuple[str, int] | None = None,
        proxy_port: int = 0,
    ) -> None:
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.allow_upgrade = allow_upgrade
        self.transparent = transparent
        self.mark = mark
        self.upstream = upstream
        self.proxy_port = proxy_port


class ProxyServer:
    """Shared by every connection: options, the current state, the access log and counters."""

    def __init__(self, options: Options, state: ProxyState | None, log: accesslog.AccessLogWriter | None):
        self.options = options
        self.state = state or ProxyState()
        self.log = log
        self.stats = {"connections": 0, "requests": 0, "denied": 0, "errors": 0, "bad": 0}
        self.connections: set[ClientConnection] = set()
        self.log_congested = False  # clients are not read while the node catches up with the log
        self._log_wait: asyncio.TimerHandle | None = None
        if log is not None:
            log.on_congestion = self.congestion
        self.attribution_cache: dict[Any, Any] = {}
        self.correlator = Correlator()  # the X-Request-Id table, for the records' correlation
        self._outbox: list[tuple[asyncio.Transport, bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # request ids: version-4 UUIDs from a random per-process prefix and a counter (cheaper than uuid4)
        prefix = uuid.uuid4().hex
        self._id_prefix = f"{prefix[:8]}-{prefix[8:12]}-4{prefix[13:16]}-a{prefix[17:20]}-{prefix[20:24]}"
        self._id_counter = 0
        self._id_high = ""  # the prefix and the counter's first five hex digits (see request_id)

    def send_soon(self, transport: asyncio.Transport, data: bytes) -> None:
        """Writes ``data`` when this pass of the event loop has handled its other ready sockets.

        A write to a pod wakes its reader, which tends to preempt the proxy right there; one burst
        of writes per pass keeps the proxy's work of the pass together (in ``nox -s bench -- l7``,
        0.4 preemptions per request instead of 0.7-1.0, and 17-30% less CPU). Any other write or close
        calls :meth:`flush` first, so every connection's bytes keep their order."""
        if not self._outbox:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self.flush)
        self._outbox.append((transport, data))

    def flush(self) -> None:
        """Sends the writes :meth:`send_soon` queued (a transport closed since lost them anyway)."""
        outbox = self._outbox
        if outbox:
            self._outbox = []
            for transport, data in outbox:
                if not transport.is_closing():
                    transport.write(data)

    def request_id(self) -> str:
        """The next of this process's ids: its prefix and a 32-bit counter in 8 hex digits (the
        last three from a table: formatting the counter was 5% of a request's cost)."""
        counter = self._id_counter = (self._id_counter + 1) & 0xFFFFFFFF
        low = counter & 0xFFF
        if not low or not self._id_high:
            self._id_high = f"{self._id_prefix}{counter >> 12:05x}"
        return self._id_high + _HEX3[low]

    def congestion(self, congested: bool) -> None:
        """The access log's backlog crossed its high (True) or low (False) mark: stop reading clients'
        requests until the node has caught up (records are not dropped for a burst), for at most
        ``LOG_WAIT`` seconds at a time (a stuck node then loses records, counted, not traffic)."""
        if self._log_wait is not None:
            self._log_wait.cancel()
            self._log_wait = None
        if congested == self.log_congested:
            return
        self.log_congested = congested
        for conn in list(self.connections):
            if congested:
                conn.pause("log")
            else:
                conn.resume("log")
        if congested:
            self._log_wait = asyncio.get_running_loop().call_later(LOG_WAIT, self.congestion, False)

    async def sweep(self) -> None:
        """Header and idle timeouts of every connection, checked a few times per timeout."""
        period = max(0.05, min(1.0, self.options.header_timeout / 4, self.options.idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for conn in list(self.connections):
                conn.check_timers(now)


class Exchange:
    """One request and its response.

    The immutable defaults are class attributes: a request sets only what differs (an exchange is
    made per request, on the proxy's hot path)."""

    method = ""
    version = "1.1"
    keep_alive = True
    chunked = False
    path = "/"
    host = ""
    request_id = ""  # the first non-empty X-Request-Id, or the proxy's own
    traceparent = ""  # the first non-empty traceparent
    headers_edited = False  # a rule added or removed request headers
    start_ns = 0
    allowed = False
    upgrade = ""
    expect_continue = False
    body_bytes = 0
    body_done = False
    response_done = False
    status = 0
    response_has_id = False  # the server's response carries an X-Request-Id
    response_request_id = ""  # its first non-empty value
    sent_head = False
    local_reply = False
    attribution: list[tuple[bytes, bytes, bool]] | None = None
    verdict_entry: list | None = None  # the connection's cached verdict this request shares

    def __init__(self, start_ns: int = 0) -> None:
        self.start_ns = start_ns
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.decisions: list[tuple[int, Decision]] = []
        self.body: list[bytes] = []
        self.response_headers: list[tuple[bytes, bytes]] = []


class ClientConnection(asyncio.Protocol):
    """A client connection (downstream) and its upstream connection."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.incoming: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.upstream: UpstreamConnection | None = None
        self.connecting = False
        self.closed = False
        self.paused: set[str] = set()
        self.header_deadline = 0.0  # loop time by which the current request's head must be complete
        self.idle_since = 0.0  # loop time the connection became idle (0: busy)
        self.tunnel = False
        self.client = ("", 0)
        self.target = ("", 0)
        self.src: EndpointInfo | None = None
        self.dst: EndpointInfo | None = None
        self.judged: ProxyState | None = None
        self.rule_sets: list = []
        self.needs_headers = False
        self.eof = False
        self._endpoint_dicts: tuple[dict, dict] | None = None
        self._record_fragments: tuple[bytes, bytes] | None = None
        self._fragments_state: ProxyState | None = None
        # (method, path, host, upgrade) -> [decisions, allowed, attribution, record templates] while no
        # rule looks at headers
        self._verdicts: dict[tuple[str, str, str, str], list] = {}
        self._request_sets = accesslog.HeaderSetMemo()  # the header sets of its records
        self._response_sets = accesslog.HeaderSetMemo()

    # -- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        tcp.set_write_buffer_limits(high=HIGH_WATER)
        self.server.stats["connections"] += 1
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1])
        self.target = self.server.options.upstream or (local[0], local[1])
        self.server.connections.add(self)
        if self.server.log_congested:
            self.pause("log")
        self._arm_idle()

    def _judge_connection(self) -> None:
        state = self.server.state
        if state is self.judged:
            return
        self.judged = state
        self.src = state.endpoint(self.client[0])
        self.dst = state.endpoint(self.target[0])
        self.rule_sets = state.rule_sets(self.src, self.dst, self.target[1]) if state.loaded else []
        self.needs_headers = any(rules.needs_headers for _, rules in self.rule_sets)
        self._endpoint_dicts = None
        self._verdicts = {}

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.upstream is not None and self.upstream.transport is not None:
                self.server.flush()
                self.upstream.transport.write(data)
            return
        self.idle_since = 0.0  # busy (_disarm_idle, inline: once per read)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_requested(data[exc.args[0] :] if exc.args else b"")
        except httptools.HttpParserError:
            self._bad_request()

    def eof_received(self) -> bool | None:
        self.eof = True
        if not self.queue or self.incoming is not None:
            self._close()
            return None
        return True  # keep the write side open until the queued responses are sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timers()
        self.server.connections.discard(self)
        if self.upstream is not None:
            self.upstream.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading("client-buffer")

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading("client-buffer")

    def pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timers()
            self.server.flush()
            if self.transport is not None:
                self.transport.close()
            if self.upstream is not None:
                self.upstream.close()

    # -- timers ----------------------------------------------------------------------------------
    def _arm_idle(self) -> None:
        if not self.closed:
            self.idle_since = self.loop.time()

    def _disarm_idle(self) -> None:
        self.idle_since = 0.0

    def check_timers(self, now: float) -> None:
        """Called by the server's sweep: header and idle timeouts."""
        if self.header_deadline and now >= self.header_deadline:
            self._header_timeout()
        elif (
            self.idle_since
            and now - self.idle_since >= self.server.options.idle_timeout
            and not self.queue
            and self.incoming is None
        ):
            self._close()

    def _header_timeout(self) -> None:
        self.header_deadline = 0.0
        if self.queue:  # answer in order: close after the current responses
            self.incoming = None
            self._close()
            return
        if self.transport is not None and not self.closed:
            self.server.flush()
            self.transport.write(_response(408, b"request timeout\r\n", close=True))
        self._close()

    def _cancel_timers(self) -> None:
        self.header_deadline = self.idle_since = 0.0

    # -- parser callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.incoming = Exchange(time.time_ns())
        if not self.header_deadline:
            self.header_deadline = self.loop.time() + self.server.options.header_timeout

    def on_url(self, url: bytes) -> None:
        self.incoming.url += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.incoming
        assert ex is not None
        ex.headers.append((name, value))
        kind = _SPECIAL_HEADERS.get(name.lower())
        if kind is None:
            return
        if kind == 1:
            ex.host = value.decode("latin-1")
        elif kind == 2:
            ex.chunked = ex.chunked or b"chunked" in value.lower()
        elif kind == 3:
            ex.expect_continue = value.lower() == b"100-continue"
        elif kind == 4:
            if not ex.request_id:  # the first non-empty one, as Hubble reads it
                ex.request_id = value.decode("latin-1")
        elif kind == 6:
            if not ex.traceparent:
                ex.traceparent = value.decode("latin-1")
        else:
            ex.upgrade = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self.header_deadline = 0.0
        ex = self.incoming
        assert ex is not None
        parser = self.parser
        ex.method = parser.get_method().decode("latin-1")
        ex.version = parser.get_http_version()
        ex.keep_alive = parser.should_keep_alive()
        host = ex.host
        target = ex.url.decode("latin-1")
        if not target.startswith("/") and "://" in target:  # absolute-form
            _, _, rest = target.partition("://")
            authority, slash, path = rest.partition("/")
            host = authority
            target = slash + path if slash else "/"
            ex.headers = [(n, v) for n, v in ex.headers if n.lower() != b"host"]
            ex.headers.append((b"Host", host.encode("latin-1")))
        ex.path = target
        ex.host = host
        if not ex.request_id:
            ex.request_id = self.server.request_id()
            ex.headers.append((b"X-Request-Id", ex.request_id.encode()))
        self.server.stats["requests"] += 1
        if ex.method == "CONNECT":
            ex.upgrade = "CONNECT"  # a tunnel request: refused unless --allow-upgrade CONNECT
        elif (ex.version == "1.1" and not host) or not target.startswith(("/", "*")):
            raise _BadRequest("no Host header" if target.startswith("/") else "bad request target")
        self._decide(ex)
        self.queue.append(ex)
        if len(self.queue) > MAX_QUEUED:
            self.pause("queue")
        if len(self.queue) == 1:
            self._start(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.incoming
        if ex is None:
            return
        if not ex.allowed:
            return  # a refused request's body is read and dropped: the connection stays usable
        if ex.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        up = self.upstream
        if (
            ex.sent_head
            and self.queue
            and self.queue[0] is ex
            and up is not None
            and up.transport is not None
        ):
            if not up.closing:
                self.server.flush()  # the head may still be queued
                up.transport.write(body)
            return
        ex.body.append(body)
        ex.body_bytes += len(body)
        if ex.body_bytes > HIGH_WATER:
            self.pause("body")

    def on_message_complete(self) -> None:
        ex = self.incoming
        self.incoming = None
        if ex is None:
            return
        ex.body_done = True
        if ex.allowed and ex.chunked:
            up = self.upstream
            if ex.sent_head and up is not None and up.transport is not None:
                if not up.closing:
                    self.server.flush()
                    up.transport.write(b"0\r\n\r\n")
            else:
                ex.body.append(b"0\r\n\r\n")
        if self.queue and self.queue[0] is ex and ex.response_done:
            self._finish(ex)

    # -- policy ------------------------------------------------------------------------------------
    def _decide(self, ex: Exchange) -> None:
        if self.judged is not self.server.state:  # the state changed (or the first request)
            self._judge_connection()
        if self.needs_headers:
            self._judge(ex)
            return
        # without header rules the same method, path, host and upgrade get the same verdict and records
        key = (ex.method, ex.path, ex.host, ex.upgrade)
        known = self._verdicts.get(key)
        if known is None:
            self._judge(ex)
            if len(self._verdicts) >= 256:
                self._verdicts.clear()
            self._verdicts[key] = ex.verdict_entry = [ex.decisions, ex.allowed, ex.attribution, {}]
            return
        ex.decisions, ex.allowed, ex.attribution = known[0], known[1], known[2]
        ex.verdict_entry = known
        if not ex.allowed:
            self.server.stats["denied"] += 1
        if self.server.log is not None:
            self._log_request(ex)
            if known[2] is None:
                known[2] = ex.attribution

    def _judge(self, ex: Exchange) -> None:
        headers = (
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in ex.headers] if self.needs_headers else ()
        )
        request = Request(ex.method, ex.path, ex.host, headers)
        decisions = [(direction, rules.decide(request)) for direction, rules in self.rule_sets]
        ex.decisions = decisions
        ex.allowed = bool(decisions) and all(d.allowed for _, d in decisions)
        if ex.upgrade and ex.upgrade.lower() not in self.server.options.allow_upgrade:
            ex.allowed = False
        if ex.allowed:
            for _, decision in decisions:
                result = decision.result
                if result is not None and (result.add or result.remove):
                    ex.headers_edited = True
                    ex.headers = [
                        (n, v) for n, v in ex.headers if n.decode("latin-1").lower() not in result.remove
                    ]
                    ex.headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in result.add]
        else:
            self.server.stats["denied"] += 1
        self._log_request(ex)

    # -- exchanges ---------------------------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        """``ex`` became the current exchange: answer it (refused) or send it upstream."""
        if self.closed:
            return
        if not ex.allowed:
            close = not ex.keep_alive or (ex.expect_continue and not ex.body_done) or bool(ex.upgrade)
            self._local_reply(ex, 403, DENIED_BODY, close)
            return
        up = self.upstream
        if up is None or up.transport is None or up.closing:
            self.upstream = None
            if not self.connecting:
                self.connecting = True
                self.pause("connect")
                self.loop.create_task(self._connect(ex))
            return
        self._send_head(ex)

    def _local_reply(self, ex: Exchange, code: int, body: bytes, close: bool) -> None:
        ex.local_reply = True
        ex.status = code
        if self.transport is not None and not self.closed:
            self.server.flush()  # after the responses queued before it
            self.transport.write(_response(code, body, close, ex.request_id))
        ex.response_done = True
        ex.keep_alive = ex.keep_alive and not close
        self._log_response(ex, code, verdict=accesslog.VERDICT_ERROR if code >= 500 else None)
        if close:
            self.queue.clear()
            self.incoming = None
            if self.transport is not None:
                self.transport.close()
            self.closed = True
            self._cancel_timers()
            if self.upstream is not None:
                self.upstream.close()
            return
        if ex.body_done:
            self._finish(ex)

    async def _connect(self, ex: Exchange) -> None:
        options = self.server.options
        sock = None
        try:
            sock = upstream_socket(
                self.client[0] if options.transparent else None, options.mark if options.transparent else 0
            )
            await asyncio.wait_for(self.loop.sock_connect(sock, self.target), options.connect_timeout)
            up = UpstreamConnection(self)
            await self.loop.create_connection(lambda: up, sock=sock)
            sock = None
        except (OSError, TimeoutError):
            self.connecting = False
            self.resume("connect")
            if sock is not None:
                sock.close()
            self.server.stats["errors"] += 1
            if self.queue and self.queue[0] is ex and not self.closed:
                self._local_reply(ex, 503, _UPSTREAM_FAILED, close=not ex.body_done)
            return
        self.connecting = False
        self.upstream = up
        self.resume("connect")
        if self.closed:
            up.close()
            return
        if self.queue and self.queue[0] is ex:
            self._send_head(ex)

    def _send_head(self, ex: Exchange) -> None:
        up = self.upstream
        assert up is not None and up.transport is not None
        up.begin(ex)
        request_line = f"{ex.method} {ex.path} HTTP/{ex.version}".encode("latin-1")
        data = b"\r\n".join([request_line, *map(b": ".join, ex.headers)]) + b"\r\n\r\n"
        if ex.body:
            data += b"".join(ex.body)
            ex.body.clear()
            ex.body_bytes = 0
        ex.sent_head = True
        self.server.send_soon(up.transport, data)
        if self.paused:
            self.resume("body")

    def response_complete(self, ex: Exchange) -> None:
        ex.response_done = True
        self._log_response(ex, ex.status)
        if ex.body_done:
            self._finish(ex)

    def _finish(self, ex: Exchange) -> None:
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if self.paused and len(self.queue) <= MAX_QUEUED:
            self.resume("queue")
        if not ex.keep_alive or (ex.upgrade and not self.tunnel) or (self.eof and not self.queue):
            self._close_after_write()
            return
        if self.queue:
            self._start(self.queue[0])
        elif self.incoming is None and not self.closed:
            self.idle_since = self.loop.time()  # _arm_idle, inline: once per exchange

    def _close_after_write(self) -> None:
        self.closed = True
        self._cancel_timers()
        self.server.flush()
        if self.transport is not None:
            self.transport.close()  # flushes what is buffered first
        if self.upstream is not None:
            self.upstream.close()

    def upstream_lost(self, up: UpstreamConnection, headers_seen: bool) -> None:
        """The upstream connection ended; fails or ends the current exchange."""
        if self.upstream is up:
            self.upstream = None
        if self.tunnel:
            self._close()
            return
        ex = up.exchange
        if ex is None or ex.response_done or not self.queue or self.queue[0] is not ex:
            return
        if not headers_seen:
            self.server.stats["errors"] += 1
            self._local_reply(ex, 503, _UPSTREAM_FAILED, close=not ex.body_done)
        else:  # body until close, or a reset in the middle of it: the client sees the end too
            ex.response_done = True
            self._log_response(ex, ex.status)
            self._close_after_write()

    # -- special requests --------------------------------------------------------------------------
    def _upgrade_requested(self, rest: bytes) -> None:
        """llhttp stopped at an Upgrade/CONNECT request; ``rest`` is what followed its head."""
        ex = self.queue[-1] if self.queue else None
        if ex is None or not ex.allowed:
            self.incoming = None
            if ex is not None:
                ex.body_done = True
            return
        ex.body_done = True
        self.incoming = None
        if rest:
            ex.body.append(rest)
        self.pause("upgrade")  # nothing more is read until the server answers the upgrade

    def start_tunnel(self) -> None:
        self.tunnel = True
        self.resume("upgrade")

    def _bad_request(self) -> None:
        self.server.stats["bad"] += 1
        if self.transport is not None and not self.closed:
            if not self.queue:
                self.server.flush()
                self.transport.write(_response(400, b"bad request\r\n", close=True))
            self._close_after_write()

    # -- access log --------------------------------------------------------------------------------
    def _endpoints(self) -> tuple[dict, dict]:
        if self._endpoint_dicts is None:
            self._endpoint_dicts = self._make_endpoints()
        return self._endpoint_dicts

    def _make_endpoints(self) -> tuple[dict, dict]:
        src, dst = self.src, self.dst
        assert src is not None and dst is not None
        return (
            {
                "ID": src.id,
                "IPv4": src.ip,
                "IPv6": "",
                "Port": self.client[1],
                "Identity": src.identity,
                "Labels": list(src.labels),
            },
            {
                "ID": dst.id,
                "IPv4": dst.ip,
                "IPv6": "",
                "Port": self.target[1],
                "Identity": dst.identity,
                "Labels": list(dst.labels),
            },
        )

    def _attribution(self, ex: Exchange) -> list[tuple[bytes, bytes, bool]]:
        """Per rule set on the request's path, up to the one that refused it: (observation point, the
        ``hubblepy`` extension as JSON, allowed). Cached by decision."""
        if ex.attribution is None:
            ex.attribution = self._make_attribution(ex)
        return ex.attribution

    def _make_attribution(self, ex: Exchange) -> list[tuple[bytes, bytes, bool]]:
        # the same decisions give the same attribution (a refusal names the method and path too)
        key = (
            tuple((d, x.allowed, x.allowed_by, x.denied_by) for d, x in ex.decisions),
            ex.allowed,
            ex.upgrade,
            None if ex.allowed else (ex.method, ex.path),
        )
        cache = self.server.attribution_cache
        if cache.get("state") is not self.server.state or len(cache) > 4096:
            cache.clear()
            cache["state"] = self.server.state
        found = cache.get(key)
        if found is None:
            found = cache[key] = [
                (point.encode(), orjson.dumps(extension), allowed)
                for point, extension, allowed in self._attribution_of(ex)
            ]
        return found

    def _attribution_of(self, ex: Exchange) -> list[tuple[str, dict, bool]]:
        rules = self.server.state.rules
        port = self.server.options.proxy_port or self.server.state.proxy_port
        upgrade_refused = bool(ex.upgrade) and ex.upgrade.lower() not in self.server.options.allow_upgrade
        out: list[tuple[str, dict, bool]] = []
        if not ex.decisions:
            log = ["deny: no L7 policy for this connection (fail closed)"]
            return [(accesslog.INGRESS, {"proxy_port": port, "policy_log": log}, False)]
        for direction, decision in ex.decisions:
            point = accesslog.EGRESS if direction == EGRESS else accesslog.INGRESS
            extension: dict[str, Any] = {"proxy_port": port}
            if decision.allowed:
                found = [rules[c] for c in decision.allowed_by if c in rules]
                if found:
                    extension["allowed_by"] = _unique([f["policy"] for f in found])
                log = [f"allow: {f['rule']}" for f in found]
                if upgrade_refused:
                    extension.pop("allowed_by", None)
                    log = [f"deny: upgrade to {ex.upgrade} is not allowed"]
                extension["policy_log"] = log
                out.append((point, extension, not upgrade_refused))
                if upgrade_refused:
                    break
            else:
                found = [rules[c] for c in decision.denied_by if c in rules]
                if found:
                    extension["denied_by"] = _unique([f["policy"] for f in found])
                names = ", ".join(f["rule"] for f in found)
                extension["policy_log"] = [f"deny: no L7 rule of [{names}] allows {ex.method} {ex.path}"]
                out.append((point, extension, False))
                break
        return out

    def _fragments(self) -> tuple[bytes, bytes]:
        """The constant middle of this connection's request and response records, as JSON."""
        if self._record_fragments is None or self._fragments_state is not self.server.state:
            src, dst = self._endpoints()
            node = {"IPv4": self.server.state.node.get("ipv4", ""), "IPv6": ""}
            client = f"{self.client[0]}:{self.client[1]}"
            server = f"{self.target[0]}:{self.target[1]}"

            def middle(source: dict, destination: dict, src_addr: str, dst_addr: str) -> bytes:
                part = orjson.dumps(
                    {
                        "NodeAddressInfo": node,
                        "SourceEndpoint": source,
                        "DestinationEndpoint": destination,
                        "IPVersion": 0,
                        "TransportProtocol": 6,
                        "SourceAddress": src_addr,
                        "DestinationAddress": dst_addr,
                    }
                )
                return part[1:-1]  # without the braces: spliced into each record

            # a response goes from the server to the client
            self._record_fragments = (middle(src, dst, client, server), middle(dst, src, server, client))
            self._fragments_state = self.server.state
        return self._record_fragments

    def _http(self, ex: Exchange, code: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The record's ``HTTP`` object as JSON."""
        for _, decision in ex.decisions:
            result = decision.result
            if result is not None and (result.missing or result.rejected):
                return self._http_object(ex, code, headers)
        # the same as _http_object: a cached head up to "Headers", then the headers
        key = (code, ex.method, ex.host, ex.path, ex.version)
        heads = _HTTP_HEADS
        head = heads.get(key)
        if head is None:
            if len(heads) > 8192:
                heads.clear()
            head = heads[key] = self._http_object(ex, code, [])[:-3]  # without {}}
        return head + orjson.dumps(accesslog.header_map(headers)) + b"}"

    def _http_object(self, ex: Exchange, code: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        record: dict[str, Any] = {
            "Code": code,
            "Method": ex.method,
            "URL": accesslog.url_object(ex.host, ex.path),
            "Protocol": "HTTP/1.1" if ex.version == "1.1" else f"HTTP/{ex.version}",
            "Headers": accesslog.header_map(headers),
        }
        for _, decision in ex.decisions:
            result = decision.result
            if result is not None and result.missing:
                record.setdefault("MissingHeaders", {}).update(accesslog.header_map(result.missing))
            if result is not None and result.rejected:
                record.setdefault("RejectedHeaders", {}).update(accesslog.header_map(result.rejected))
        return orjson.dumps(record)

    def _correlation(self, kind: bytes, ns: int, special: tuple[str, str]) -> tuple[int, str]:
        """The (latency, trace ID) of the next record written, of this kind, whose headers' first
        X-Request-Id and traceparent are ``special``: what the node's X-Request-Id table would make
        of it (see hubblepy.parser.seven.Correlator). Call it once per record, in order."""
        if kind == b"Request":
            return 0, self.server.correlator.request(ns, special[0], special[1])
        return self.server.correlator.response(ns, special[0])

    def _emit(
        self,
        kind: bytes,
        ns: int,
        verdict: bytes | None,
        middle: bytes,
        ex: Exchange,
        http: bytes,
        special: tuple[str, str],
    ) -> None:
        """One record per rule set on the path (verdict None: each one's own, Forwarded or Denied);
        ``special``: the first X-Request-Id and traceparent of the record's headers."""
        stamp = accesslog.timestamp(ns).encode()
        emit = self.server.log.emit_correlated  # type: ignore[union-attr]
        for point, extension, allowed in self._attribution(ex):
            latency, trace_id = self._correlation(kind, ns, special)
            emit(
                _RECORD
                % (
                    kind,
                    stamp,
                    point,
                    verdict or (_FORWARDED if allowed else _DENIED),
                    middle,
                    http,
                    extension,
                ),
                latency,
                trace_id,
            )

    def _templates(self, entry: list, kind: bytes, code: int, verdict: bytes | None, ex: Exchange) -> list:
        """What :meth:`_emit` would write for this verdict's records, as templates with holes for the
        two parts that change per exchange, the timestamp and the headers: the access log sends each
        template once per connection and then per record only those parts (a row). Cached in the
        verdict's entry."""
        templates = entry[3]
        key = (kind, code, verdict, ex.version)
        parts = templates.get(key)
        if parts is None:
            fragments = self._fragments()
            middle = fragments[0] if kind == b"Request" else fragments[1]
            http = self._http(ex, code, [])[:-3] + _HOLE_HEADERS + b"}"
            parts = []
            for point, extension, allowed in self._attribution(ex):
                record = _RECORD % (
                    kind,
                    _HOLE_STAMP,
                    point,
                    verdict or (_FORWARDED if allowed else _DENIED),
                    middle,
                    http,
                    extension,
                )
                before, rest = record.split(_HOLE_STAMP)
                between, after = rest.split(_HOLE_HEADERS)
                parts.append(accesslog.LogTemplate(before + between + b"{}" + after))
            templates[key] = parts
        return parts

    def _log_request(self, ex: Exchange) -> None:
        log = self.server.log
        if log is None:
            return
        # the first X-Request-Id and traceparent of the logged headers (read as they arrived)
        request_id, traceparent = (
            accesslog.special_headers(ex.headers) if ex.headers_edited else (ex.request_id, ex.traceparent)
        )
        entry = ex.verdict_entry
        ns = ex.start_ns
        if entry is None or self.judged is not self.server.state:
            http = self._http(ex, 0, ex.headers)
            self._emit(_REQUEST, ns, None, self._fragments()[0], ex, http, (request_id, traceparent))
            return
        # rows (one per rule set on the path), each correlated as the node would (see Correlator)
        header_set, hole = self._request_sets.header_set(ex.headers)
        correlator = self.server.correlator
        for template in self._templates(entry, _REQUEST, 0, None, ex):
            trace_id = correlator.request(ns, request_id, traceparent)
            log.emit_row(template, ns, 0, trace_id, header_set, hole)

    def _log_response(self, ex: Exchange, code: int, verdict: str | None = None) -> None:
        log = self.server.log
        if log is None:
            return
        # the logged headers: the proxy's answer's, or the server's and the request's X-Request-Id
        # when the server sent none; the first X-Request-Id of them
        request_id = ex.request_id
        headers = _LOCAL_REPLY_HEADERS if ex.local_reply else ex.response_headers
        added_id: str | None = request_id
        if ex.response_has_id and not ex.local_reply:
            request_id = ex.response_request_id
            added_id = None
        ns = time.time_ns()
        logged_verdict = verdict.encode() if verdict else _FORWARDED
        entry = ex.verdict_entry
        if entry is None or self.judged is not self.server.state:
            if added_id is not None:
                headers = [*headers, (b"X-Request-Id", added_id.encode())]
            http = self._http(ex, code, headers)
            self._emit(_RESPONSE, ns, logged_verdict, self._fragments()[1], ex, http, (request_id, ""))
            return
        header_set, hole = self._response_sets.header_set(headers, added_id)
        correlator = self.server.correlator
        for template in self._templates(entry, _RESPONSE, code, logged_verdict, ex):
            latency, trace_id = correlator.response(ns, request_id)
            log.emit_row(template, ns, latency, trace_id, header_set, hole)


_FORWARDED = accesslog.VERDICT_FORWARDED.encode()
# an access-log record: type, timestamp, observation point, verdict, the connection's middle (see
# _fragments), the HTTP object, the hubblepy extension
_RECORD = b'{"Type":"%b","Timestamp":"%b","ObservationPoint":"%b","Verdict":"%b",%b,"HTTP":%b,"hubblepy":%b}'
_REQUEST = b"Request"
_RESPONSE = b"Response"
_LOCAL_REPLY_HEADERS = [(b"Content-Type", b"text/plain")]  # and the X-Request-Id, of the proxy's answers
# holes in record templates: a NUL byte never occurs in orjson's output (it is escaped in strings)
_HOLE_STAMP = b"\x00stamp\x00"
_HOLE_HEADERS = b"\x00headers\x00"
# (code, method, host, path, version) -> the start of a record's HTTP JSON up to the Headers value
_HTTP_HEADS: dict[tuple[int, str, str, str, str], bytes] = {}
_DENIED = accesslog.VERDICT_DENIED.encode()


def _unique(policies: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for p in policies:
        seen.setdefault(str(sorted(p.get("labels", []))), p)
    return list(seen.values())


class UpstreamConnection(asyncio.Protocol):
    """The connection to the server; its responses are parsed for status and end, and passed through raw."""

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.headers_seen = False
        self.closing = False
        self.keep_alive = True
        self.paused: set[str] = set()
        self.tunnel = False
        self._head_only = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        tcp.set_write_buffer_limits(high=HIGH_WATER)

    def begin(self, ex: Exchange) -> None:
        self.exchange = ex
        self.headers_seen = False
        self._head_only = ex.method == "HEAD"
        if self.parser is None:  # one parser for the connection's responses (llhttp keeps going)
            self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if self.tunnel:
            if client.transport is not None:
                client.server.flush()
                client.transport.write(data)
            return
        ex = self.exchange
        if ex is None or self.parser is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        # the bytes go to the client first: callbacks below may already answer the next request
        if client.transport is not None and not client.closed:
            client.server.send_soon(client.transport, data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.tunnel = True  # 101 Switching Protocols: what follows is the tunnel's
            self._tunnel_started(ex)
        except httptools.HttpParserError:
            self.close()
            client.upstream_lost(self, self.headers_seen)
            return
        if self._head_only and self.headers_seen and not ex.response_done:
            self._complete(ex)

    def _tunnel_started(self, ex: Exchange) -> None:
        ex.response_done = True
        self.client._log_response(ex, 101)
        self.client.start_tunnel()
        if ex.body and self.transport is not None:
            self.client.server.flush()
            self.transport.write(b"".join(ex.body))
            ex.body.clear()

    # response parser callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.exchange is not None:
            ex = self.exchange
            ex.response_headers.append((name, value))
            if len(name) == 12 and name.lower() == b"x-request-id":
                ex.response_has_id = True
                if not ex.response_request_id:
                    ex.response_request_id = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        ex = self.exchange
        assert self.parser is not None
        status = self.parser.get_status_code()
        if ex is None:
            return
        if 100 <= status < 200 and status != 101:
            ex.response_headers = []
            ex.response_has_id = False
            ex.response_request_id = ""
            return  # informational: the final response follows
        ex.status = status
        self.headers_seen = True
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None or not self.headers_seen or ex.response_done or ex.status == 101:
            return  # 101: llhttp stops with HttpParserUpgrade next, and the tunnel starts there
        self._complete(ex)

    def _complete(self, ex: Exchange) -> None:
        self.exchange = None
        if self._head_only:  # llhttp would wait for the body a HEAD response does not have
            self.parser = None
        if not self.keep_alive:
            self.close()
        self.client.response_complete(ex)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        ex = self.exchange
        if ex is not None and not ex.response_done:
            self.client.upstream_lost(self, self.headers_seen)
        elif self.tunnel:
            self.client.upstream_lost(self, True)
        elif self.client.upstream is self:
            self.client.upstream = None

    def eof_received(self) -> bool | None:
        return False

    def pause_writing(self) -> None:
        self.client.pause("upstream-buffer")

    def resume_writing(self) -> None:
        self.client.resume("upstream-buffer")

    def pause_reading(self, reason: str) -> None:
        if not self.paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def close(self) -> None:
        self.closing = True
        self.client.server.flush()
        if self.transport is not None:
            self.transport.close()


# -- process -------------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    state: ProxyState | None = None
    if args.state:
        try:
            state = load_state(args.state)
        except StateError as exc:
            print(
                f"hubblepy-proxy: {exc}; refusing every request until a good state is loaded", file=sys.stderr
            )
    log = accesslog.AccessLogWriter(args.access_log) if args.access_log else None
    if log is not None:
        await log.start()
    host, port = _address(args.listen)
    options = Options(
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
        allow_upgrade=frozenset(x.lower() for x in args.allow_upgrade),
        transparent=args.transparent,
        mark=args.mark,
        upstream=_address(args.upstream) if args.upstream else None,
        proxy_port=port,
    )
    server = ProxyServer(options, state, log)
    # per request the proxy allocates short-lived objects without cycles: collect the young
    # generation rarely (connections' cycles are still collected), and never scan what start-up made
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    sock = listening_socket(host, port, transparent=args.transparent)
    listener = await loop.create_server(lambda: ClientConnection(server), sock=sock, backlog=1024)
    sweeper = loop.create_task(server.sweep())
    stop = asyncio.Event()

    def reload() -> None:
        if not args.state:
            return
        try:
            server.state = load_state(args.state)
        except StateError as exc:
            print(f"hubblepy-proxy: {exc}; keeping revision {server.state.revision}", file=sys.stderr)

    def counters() -> dict[str, int]:
        return {
            **server.stats,
            "sent": log.sent if log is not None else 0,
            "lost": log.lost if log is not None else 0,
            "loaded_revision": server.state.revision,
        }

    def report() -> None:
        c = counters()
        print(
            f"hubblepy-proxy stats: {server.stats} access-log sent={c['sent']} lost={c['lost']}",
            file=sys.stderr,
        )

    compiled = native.is_compiled(sys.modules[__name__])  # loaded from the mypyc build

    async def write_stats() -> None:
        while True:
            with contextlib.suppress(OSError):
                write_state(args.stats, {"pid": os.getpid(), "compiled": compiled, **counters()})
            await asyncio.sleep(1.0)

    stats_task = loop.create_task(write_stats()) if args.stats else None

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, report)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"hubblepy-proxy listening on {host}:{port}", flush=True)
    await stop.wait()
    sweeper.cancel()
    if stats_task is not None:
        stats_task.cancel()
    listener.close()
    if log is not None:
        await log.aclose()
    report()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubblepy-proxy", description="HTTP/1.1 L7 policy proxy")
    parser.add_argument("--listen", default="0.0.0.0:15001", help="address:port (default 0.0.0.0:15001)")
    parser.add_argument("--transparent", action="store_true", help="IP_TRANSPARENT listener and upstreams")
    parser.add_argument("--mark", type=lambda x: int(x, 0), default=0, help="SO_MARK of upstream sockets")
    parser.add_argument("--state", default="", help="the node's state file (reloaded on SIGHUP)")
    parser.add_argument("--access-log", default="", help="unix socket of the node's access-log reader")
    parser.add_argument("--stats", default="", help="a JSON file of counters, rewritten every second")
    parser.add_argument("--upstream", default="", help="tests only: every connection goes to HOST:PORT")
    parser.add_argument("--allow-upgrade", action="append", default=[], help="an Upgrade protocol to allow")
    parser.add_argument("--header-timeout", type=float, default=30.0)
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    import uvloop

    try:
        uvloop.run(serve(args))
    except OSError as exc:
        print(f"hubblepy-proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
