"""The node's transparent DNS proxy: L7 DNS policy (``rules.dns``) over UDP and TCP, on asyncio/uvloop.

``python -m hubblepy.proxy.dns --listen 0.0.0.0:15053 --transparent --mark 0xa00 --state FILE
--access-log SOCK --fqdn-notify SOCK --stats FILE``

* **Transparent** (:mod:`.dns_sockets`): the datapath hands every redirected UDP datagram to one
  IP_TRANSPARENT socket on the proxy port (IP_RECVORIGDSTADDR gives the server the client asked) and
  every redirected TCP connection to a transparent listener on the same port (``getsockname()`` is
  the server). Allowed queries go to that server from upstream sockets bound to the client's address
  and marked ``MARK_FROM_PROXY``; answers go back to the client from the server's address.
  ``--upstream HOST:PORT`` (tests only) sends every query to one server, judged as addressed there.
* **Policy** (:mod:`hubblepy.policy.dns`): the query's name against the DNS rules of the client's
  egress policy for that server and port (``matchName``/``matchPattern``, an L3/L4 allow of the same
  peer allows every name). Denied: a REFUSED answer (same ID and question) and a ``Request`` record
  with verdict ``Denied``. No state or no DNS rule for the connection: refused too (fail closed).
* **Messages** (:mod:`.dns_wire`, dnspython): a datagram that is not a plain one-question query is
  counted as malformed and dropped, one bigger than 1232 bytes as oversized; the proxy keeps serving.
  Over TCP a malformed message is skipped and a length over 16384 bytes closes the connection.
* **Answers**: an allowed answer is logged (``Response`` record: IPs, lowest TTL, CNAMEs, rcode,
  answer types) and, when it is NOERROR with addresses, first announced to the node on the
  ``--fqdn-notify`` socket (unix SOCK_SEQPACKET, one orjson datagram per answer); the answer is
  released when the node acknowledges (its ipcache and policy map are then ready for the client's
  first packet) or after ``--response-max-delay`` seconds (counted). No answer from the server within
  ``--upstream-timeout``: SERVFAIL to the client and an ``Error`` record.
* **Access log** (:mod:`.accesslog`): Cilium ``LogRecord`` keys with ``DNS`` {Query, IPs, TTL, CNAMEs,
  ObservationSource "proxy", RCode, QTypes, AnswerTypes} and the ``hubblepy`` attribution extension.
  When the node falls behind (8 MB waiting) the proxy stops reading queries until it has caught up
  (2 MB), for at most 2 s at a time, as the HTTP proxy does: a burst slows DNS down instead of
  losing flows.

SIGHUP reloads the state file; SIGTERM/SIGINT stop the proxy; counters go to ``--stats`` every second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hubblepy.policy.dns import decide, dns_table_from_json
from hubblepy.policy.l7 import L7Table
from hubblepy.policy.model import EGRESS
from hubblepy.proxy import accesslog
from hubblepy.proxy.dns_sockets import (
    ANCILLARY_SIZE,
    original_destination,
    reply_socket,
    udp_listener,
    upstream_udp_socket,
)
from hubblepy.proxy.dns_wire import (
    MAX_TCP_MESSAGE,
    MAX_UDP_QUERY,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    Answer,
    Malformed,
    Query,
    WireCache,
)
from hubblepy.proxy.sockets import listening_socket, upstream_socket
from hubblepy.proxy.state import EndpointInfo, ProxyState, StateError, parse_state, write_state

UDP, TCP = 17, 6
OBSERVATION_SOURCE = "proxy"
RECV_BATCH = 64  # datagrams read per wake-up of a socket
UPSTREAM_IDLE = 30.0  # seconds an unused upstream UDP socket is kept
LOG_WAIT = 2.0  # seconds queries may wait at most for the node to catch up with the access log
COUNTERS = (
    "queries",
    "allowed",
    "denied",
    "answers",
    "malformed",
    "oversized",
    "upstream_errors",
    "upstream_timeouts",
    "bad_answers",
    "notify_sent",
    "notify_acked",
    "notify_timeouts",
    "notify_unavailable",
    "tcp_connections",
)


@dataclass
class ProxyDNSState:
    """The node's state (endpoints, identities, attribution) and the DNS rule table."""

    base: ProxyState = field(default_factory=ProxyState)
    dns: L7Table = field(default_factory=L7Table)


def parse_dns_state(raw: bytes) -> ProxyDNSState:
    """The state file (:mod:`.state` format plus a ``dns`` table); raises StateError."""
    base = parse_state(raw)
    try:
        doc = orjson.loads(raw)
        table = dns_table_from_json(doc.get("dns") or [])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise StateError(f"bad DNS rule table: {exc}") from None
    return ProxyDNSState(base, table)


def load_dns_state(path: str) -> ProxyDNSState:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise StateError(f"cannot read proxy state {path}: {exc.strerror}") from None
    return parse_dns_state(raw)


@dataclass
class Options:
    transparent: bool = False
    mark: int = 0
    upstream: tuple[str, int] | None = None
    proxy_port: int = 15053
    response_max_delay: float = 0.1
    upstream_timeout: float = 5.0


def _endpoint_dict(info: EndpointInfo, port: int) -> dict[str, Any]:
    return {
        "ID": info.id,
        "IPv4": info.ip,
        "IPv6": "",
        "Port": port,
        "Identity": info.identity,
        "Labels": list(info.labels),
    }


@dataclass
class Pending:
    """One forwarded query waiting for its answer."""

    client: tuple[str, int]
    server: tuple[str, int]
    wire: bytes  # the client's query as received
    query: Query
    proto: int
    started: float
    extension: bytes
    src: EndpointInfo
    dst: EndpointInfo
    send: Callable[[bytes], None]  # delivers an answer (with the client's ID) to the client


class FQDNNotifier:
    """The proxy side of the notify protocol: one datagram per answer, released on the node's ack."""

    def __init__(self, proxy: DNSProxy, path: str, max_delay: float) -> None:
        self.proxy = proxy
        self.path = path
        self.max_delay = max_delay
        self.sock: socket.socket | None = None
        self.next_id = 0
        self.waiting: dict[int, tuple[asyncio.TimerHandle, Callable[[], None]]] = {}
        self._next_try = 0.0

    def _connect(self) -> bool:
        if self.sock is not None:
            return True
        if time.monotonic() < self._next_try:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            self._next_try = time.monotonic() + 0.5
            return False
        sock.setblocking(False)
        self.sock = sock
        self.next_id = 0
        self.proxy.loop.add_reader(sock.fileno(), self._readable)
        return True

    def _drop(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self.proxy.loop.remove_reader(sock.fileno())
            sock.close()
        waiting, self.waiting = self.waiting, {}
        for timer, release in waiting.values():  # the node went away: nothing to wait for
            timer.cancel()
            release()

    def notify(self, endpoint_ip: str, answer: Answer, release: Callable[[], None]) -> None:
        stats = self.proxy.stats
        if not self._connect():
            stats["notify_unavailable"] += 1
            release()
            return
        self.next_id += 1
        ident = self.next_id
        message = orjson.dumps(
            {
                "id": ident,
                "endpoint_ip": endpoint_ip,
                "name": answer.name,
                "ips": list(answer.ips),
                "ttl": answer.ttl,
                "cnames": list(answer.cnames),
                "time_ns": time.time_ns(),
            }
        )
        try:
            self.sock.send(message)  # type: ignore[union-attr]
        except OSError:
            stats["notify_unavailable"] += 1
            self._drop()
            release()
            return
        stats["notify_sent"] += 1
        timer = self.proxy.loop.call_later(self.max_delay, self._expired, ident)
        self.waiting[ident] = (timer, release)

    def _expired(self, ident: int) -> None:
        found = self.waiting.pop(ident, None)
        if found is not None:
            self.proxy.stats["notify_timeouts"] += 1
            found[1]()

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                self._drop()
                return
            if not data:
                self._drop()
                return
            try:
                ident = int(orjson.loads(data)["id"])
            except (ValueError, KeyError, TypeError):
                continue
            found = self.waiting.pop(ident, None)
            if found is not None:
                found[0].cancel()
                self.proxy.stats["notify_acked"] += 1
                found[1]()

    def close(self) -> None:
        self._drop()


class UpstreamUDP:
    """A connected upstream socket for one (client address, server): queries get IDs of its own."""

    def __init__(self, proxy: DNSProxy, key: tuple[str, tuple[str, int]], sock: socket.socket) -> None:
        self.proxy = proxy
        self.key = key
        self.sock = sock
        self.pending: dict[int, Pending] = {}
        self.next_id = int.from_bytes(os.urandom(2), "big")
        self.last_used = time.monotonic()
        proxy.loop.add_reader(sock.fileno(), self._readable)

    def send(self, wire: bytes, pending: Pending) -> None:
        for _ in range(65536):
            self.next_id = (self.next_id + 1) & 0xFFFF
            if self.next_id not in self.pending:
                break
        else:
            raise OSError("no free DNS ID on this upstream socket")
        ident = self.next_id
        self.sock.send(ident.to_bytes(2, "big") + wire[2:])
        self.pending[ident] = pending
        self.last_used = time.monotonic()

    def _readable(self) -> None:
        proxy = self.proxy
        for _ in range(RECV_BATCH):
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError:  # ICMP unreachable and the like: the queries time out
                proxy.stats["upstream_errors"] += 1
                return
            if len(data) < 12:
                proxy.stats["bad_answers"] += 1
                continue
            pending = self.pending.pop(int.from_bytes(data[:2], "big"), None)
            if pending is None:
                proxy.stats["bad_answers"] += 1
                continue
            proxy.answered(pending, pending.wire[:2] + data[2:])

    def expire(self, now: float, timeout: float) -> None:
        for ident, pending in list(self.pending.items()):
            if now - pending.started > timeout:
                del self.pending[ident]
                self.proxy.failed(pending, timeout=True)

    def close(self) -> None:
        self.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class DNSProxy:
    """Judges, forwards and logs DNS queries from the UDP socket and the TCP connections."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        options: Options,
        state: ProxyDNSState | None,
        log: accesslog.AccessLogWriter | None,
    ) -> None:
        self.loop = loop
        self.options = options
        self.state = state or ProxyDNSState()
        self.log = log
        self.cache = WireCache()
        self.stats = dict.fromkeys(COUNTERS, 0)
        self.notifier: FQDNNotifier | None = None
        self.udp: socket.socket | None = None
        self.upstreams: dict[tuple[str, tuple[str, int]], UpstreamUDP] = {}
        self.reply_socks: dict[tuple[str, int], socket.socket] = {}
        self.tcp_clients: set[TCPClient] = set()
        self._verdicts: dict[tuple, tuple[bool, bytes]] = {}
        self._rule_sets: dict[tuple[int, int, int, int], Any] = {}
        self._extensions: dict[tuple, bytes] = {}
        self._endpoint_json: dict[tuple[str, int], tuple[EndpointInfo, bytes]] = {}
        self._node = b"{}"
        self.log_congested = False  # queries are not read while the node catches up with the log
        self._log_wait: asyncio.TimerHandle | None = None
        if log is not None:
            log.on_congestion = self.congestion
        self.set_state(self.state)

    def set_state(self, state: ProxyDNSState) -> None:
        self.state = state
        self._verdicts = {}
        self._rule_sets = {}
        self._extensions = {}
        self._endpoint_json = {}
        node = {"IPv4": state.base.node.get("ipv4", ""), "IPv6": ""}
        self._node = orjson.dumps(node)

    # -- judging -------------------------------------------------------------------------------
    def endpoint(self, ip: str, port: int) -> tuple[EndpointInfo, bytes]:
        key = (ip, port)
        found = self._endpoint_json.get(key)
        if found is None:
            info = self.state.base.endpoint(ip)
            found = (info, orjson.dumps(_endpoint_dict(info, port)))
            if len(self._endpoint_json) > 65536:
                self._endpoint_json.clear()
            self._endpoint_json[key] = found
        return found

    def judge(
        self, src: EndpointInfo, dst: EndpointInfo, port: int, proto: int, name: str
    ) -> tuple[bool, bytes]:
        """(allowed, the ``hubblepy`` extension as JSON) for one query; cached per state revision."""
        key = (src.id, src.identity, dst.identity, port, proto, name)
        found = self._verdicts.get(key)
        if found is not None:
            return found
        where = (src.id, dst.identity, port, proto)
        if where in self._rule_sets:
            rule_set = self._rule_sets[where]
        else:
            rule_set = self.state.dns.rule_set(src.id, EGRESS, dst.identity, port, proto) if src.id else None
            if len(self._rule_sets) > 65536:
                self._rule_sets.clear()
            self._rule_sets[where] = rule_set
        if rule_set is None:
            found = (False, self._extension(False, (), "fail closed"))
        else:
            decision = decide(rule_set.contributions, name)
            if decision.allowed:  # the same rules allow many names: one extension for them all
                found = (True, self._extension(True, decision.allowed_by, ""))
            else:
                found = (False, self._extension(False, decision.denied_by, name))
        if len(self._verdicts) > 65536:
            self._verdicts.clear()
        self._verdicts[key] = found
        return found

    def _extension(self, allowed: bool, cookies: tuple[int, ...], name: str) -> bytes:
        """The ``hubblepy`` extension as JSON: the rules that allowed a query, or that did not allow
        ``name`` ("fail closed": no DNS rule applies to the connection at all)."""
        key = (allowed, cookies, name)
        found = self._extensions.get(key)
        if found is not None:
            return found
        extension: dict[str, Any] = {"proxy_port": self.options.proxy_port or self.state.base.proxy_port}
        rules = self.state.base.rules
        found_rules = [rules[c] for c in cookies if c in rules]
        if name == "fail closed" and not allowed:
            extension["policy_log"] = ["deny: no DNS policy for this connection (fail closed)"]
        elif allowed:
            if found_rules:
                extension["allowed_by"] = _unique([r["policy"] for r in found_rules])
            extension["policy_log"] = [f"allow: {r['rule']}" for r in found_rules]
        else:
            if found_rules:
                extension["denied_by"] = _unique([r["policy"] for r in found_rules])
            names = ", ".join(r["rule"] for r in found_rules)
            extension["policy_log"] = [f"deny: no DNS rule of [{names}] allows {name}"]
        found = orjson.dumps(extension)
        if len(self._extensions) > 65536:
            self._extensions.clear()
        self._extensions[key] = found
        return found

    # -- records -------------------------------------------------------------------------------
    def _record(
        self,
        kind: bytes,
        ns: int,
        verdict: bytes,
        source: bytes,
        destination: bytes,
        src_addr: str,
        dst_addr: str,
        proto: int,
        dns_obj: bytes,
        extension: bytes,
    ) -> None:
        if self.log is None:
            return
        self.log.emit_bytes(
            b'{"Type":"%b","Timestamp":"%b","NodeAddressInfo":%b,"ObservationPoint":"Egress",'
            b'"SourceEndpoint":%b,"DestinationEndpoint":%b,"IPVersion":0,"Verdict":"%b",'
            b'"TransportProtocol":%d,"SourceAddress":"%b","DestinationAddress":"%b","DNS":%b,"hubblepy":%b}'
            % (
                kind,
                accesslog.timestamp(ns).encode(),
                self._node,
                source,
                destination,
                verdict,
                proto,
                src_addr.encode(),
                dst_addr.encode(),
                dns_obj,
                extension,
            )
        )

    def _log_query(
        self,
        query: Query,
        client: tuple[str, int],
        server: tuple[str, int],
        proto: int,
        verdict: bytes,
        ext: bytes,
    ) -> None:
        if self.log is None:
            return
        _, source = self.endpoint(*client)
        _, destination = self.endpoint(*server)
        dns_obj = orjson.dumps(
            {"Query": query.name, "ObservationSource": OBSERVATION_SOURCE, "QTypes": query.qtypes}
        )
        self._record(
            b"Request",
            time.time_ns(),
            verdict,
            source,
            destination,
            f"{client[0]}:{client[1]}",
            f"{server[0]}:{server[1]}",
            proto,
            dns_obj,
            ext,
        )

    def _log_answer(self, pending: Pending, answer: Answer | None, verdict: bytes, rcode: int = 0) -> None:
        if self.log is None:
            return
        _, source = self.endpoint(*pending.server)
        _, destination = self.endpoint(*pending.client)
        if answer is None:
            dns: dict[str, Any] = {
                "Query": pending.query.name,
                "ObservationSource": OBSERVATION_SOURCE,
                "RCode": rcode,
                "QTypes": pending.query.qtypes,
            }
        else:
            dns = {
                "Query": pending.query.name,
                "IPs": answer.ips,
                "TTL": answer.ttl,
                "CNAMEs": answer.cnames,
                "ObservationSource": OBSERVATION_SOURCE,
                "RCode": answer.rcode,
                "QTypes": pending.query.qtypes,
                "AnswerTypes": answer.answer_types,
            }
        self._record(
            b"Response",
            time.time_ns(),
            verdict,
            source,
            destination,
            f"{pending.server[0]}:{pending.server[1]}",
            f"{pending.client[0]}:{pending.client[1]}",
            pending.proto,
            orjson.dumps(dns),
            pending.extension,
        )

    # -- one query, any transport --------------------------------------------------------------
    def query(
        self,
        wire: bytes,
        client: tuple[str, int],
        server: tuple[str, int],
        proto: int,
        reply: Callable[[bytes], None],
        forward: Callable[[bytes, Pending], None],
    ) -> None:
        """Judges one query: REFUSED through ``reply``, or ``forward`` to the server."""
        stats = self.stats
        stats["queries"] += 1
        try:
            query = self.cache.query(wire)
        except Malformed:
            stats["malformed"] += 1
            return
        src, _ = self.endpoint(*client)
        dst, _ = self.endpoint(*server)
        allowed, extension = self.judge(src, dst, server[1], proto, query.name)
        if not allowed:
            stats["denied"] += 1
            self._log_query(query, client, server, proto, _DENIED, extension)
            reply(self.cache.error_reply(wire, RCODE_REFUSED))
            return
        stats["allowed"] += 1
        self._log_query(query, client, server, proto, _FORWARDED, extension)
        pending = Pending(client, server, wire, query, proto, time.monotonic(), extension, src, dst, reply)
        try:
            forward(wire, pending)
        except OSError:
            self.failed(pending)

    def answered(self, pending: Pending, wire: bytes) -> None:
        """An answer from the server (with the client's ID back in place): log, notify, release."""
        try:
            answer = self.cache.answer(wire)
        except Malformed:
            self.stats["bad_answers"] += 1
            self.failed(pending)
            return
        if answer.name != pending.query.name:
            self.stats["bad_answers"] += 1
            self.failed(pending)
            return
        self.stats["answers"] += 1
        self._log_answer(pending, answer, _FORWARDED)
        if self.notifier is not None and answer.rcode == 0 and answer.ips:
            self.notifier.notify(pending.client[0], answer, lambda: pending.send(wire))
        else:
            pending.send(wire)

    def failed(self, pending: Pending, timeout: bool = False) -> None:
        """The server did not answer usefully: SERVFAIL to the client and an Error record."""
        self.stats["upstream_timeouts" if timeout else "upstream_errors"] += 1
        self._log_answer(pending, None, _ERROR, rcode=2)
        with contextlib.suppress(OSError):
            pending.send(self.cache.error_reply(pending.wire, RCODE_SERVFAIL))

    def congestion(self, congested: bool) -> None:
        """The access log's backlog crossed its high (True) or low (False) mark: stop reading queries
        (UDP datagrams wait in the socket's buffer, TCP clients are paused) until the node has caught
        up, for at most ``LOG_WAIT`` seconds at a time (a stuck node then loses records, counted)."""
        if self._log_wait is not None:
            self._log_wait.cancel()
            self._log_wait = None
        if congested == self.log_congested:
            return
        self.log_congested = congested
        if self.udp is not None:
            if congested:
                self.loop.remove_reader(self.udp.fileno())
            else:
                self.loop.add_reader(self.udp.fileno(), self._udp_readable)
        for client in list(self.tcp_clients):
            if client.transport is not None and not client.closed:
                if congested:
                    client.transport.pause_reading()
                else:
                    client.transport.resume_reading()
        if congested:
            self._log_wait = self.loop.call_later(LOG_WAIT, self.congestion, False)

    # -- UDP -----------------------------------------------------------------------------------
    def start_udp(self, sock: socket.socket) -> None:
        self.udp = sock
        self.loop.add_reader(sock.fileno(), self._udp_readable)

    def _udp_readable(self) -> None:
        sock = self.udp
        if sock is None:
            return
        transparent = self.options.transparent
        for _ in range(RECV_BATCH):
            try:
                data, anc, flags, client = sock.recvmsg(MAX_UDP_QUERY + 1, ANCILLARY_SIZE)
            except BlockingIOError:
                return
            except OSError:
                continue
            if client is None:
                return
            if len(data) > MAX_UDP_QUERY or flags & socket.MSG_TRUNC:
                self.stats["queries"] += 1
                self.stats["oversized"] += 1
                continue
            server = original_destination(anc) if transparent else self.options.upstream
            if server is None:
                server = self.options.upstream
            if server is None:
                self.stats["queries"] += 1
                self.stats["malformed"] += 1
                continue
            client = client[:2]
            self.query(
                data,
                client,
                server,
                UDP,
                self._udp_reply(server, client),
                self._udp_forward,
            )

    def _udp_reply(self, server: tuple[str, int], client: tuple[str, int]) -> Callable[[bytes], None]:
        sock = self._reply_socket(server)

        def send(wire: bytes) -> None:
            with contextlib.suppress(OSError):
                sock.sendto(wire, client)

        return send

    def _reply_socket(self, server: tuple[str, int]) -> socket.socket:
        if not self.options.transparent:
            assert self.udp is not None
            return self.udp
        sock = self.reply_socks.get(server)
        if sock is None:
            sock = self.reply_socks[server] = reply_socket(server)
        return sock

    def _udp_forward(self, wire: bytes, pending: Pending) -> None:
        target = self.options.upstream or pending.server
        key = (pending.client[0], target)
        up = self.upstreams.get(key)
        if up is None:
            client_ip = pending.client[0] if self.options.transparent else None
            up = self.upstreams[key] = UpstreamUDP(
                self, key, upstream_udp_socket(client_ip, target, self.options.mark)
            )
        up.send(wire, pending)

    async def sweep(self) -> None:
        """Times out unanswered queries; closes idle upstream sockets."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for key, up in list(self.upstreams.items()):
                up.expire(now, self.options.upstream_timeout)
                if not up.pending and now - up.last_used > UPSTREAM_IDLE:
                    del self.upstreams[key]
                    up.close()
            for client in list(self.tcp_clients):
                client.expire(now, self.options.upstream_timeout)

    def close(self) -> None:
        if self._log_wait is not None:
            self._log_wait.cancel()
        if self.udp is not None:
            self.loop.remove_reader(self.udp.fileno())
            self.udp.close()
            self.udp = None
        for up in self.upstreams.values():
            up.close()
        self.upstreams.clear()
        for sock in self.reply_socks.values():
            sock.close()
        self.reply_socks.clear()
        for client in list(self.tcp_clients):
            client.close()
        if self.notifier is not None:
            self.notifier.close()


class TCPClient(asyncio.Protocol):
    """One client's DNS-over-TCP connection: length-prefixed messages, an upstream connection on demand."""

    def __init__(self, proxy: DNSProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.upstream: TCPUpstream | None = None
        self.connecting: list[bytes] | None = None  # messages waiting for the upstream connection
        self.pending: dict[int, Pending] = {}
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy.tcp_clients.add(self)
        self.proxy.stats["tcp_connections"] += 1
        if self.proxy.log_congested:
            transport.pause_reading()  # type: ignore[attr-defined]
        self.client = tuple(transport.get_extra_info("peername")[:2])
        if self.proxy.options.transparent:
            self.server = tuple(transport.get_extra_info("sockname")[:2])
        else:
            self.server = self.proxy.options.upstream or ("", 0)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while len(buffer) >= 2:
            size = int.from_bytes(buffer[:2], "big")
            if size > MAX_TCP_MESSAGE:
                self.proxy.stats["queries"] += 1
                self.proxy.stats["oversized"] += 1
                self.close()
                return
            if len(buffer) < 2 + size:
                break
            message, buffer = buffer[2 : 2 + size], buffer[2 + size :]
            self.proxy.query(message, self.client, self.server, TCP, self._reply, self._forward)
            if self.closed:
                return
        self.buffer = buffer

    def _reply(self, wire: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(len(wire).to_bytes(2, "big") + wire)

    def _forward(self, wire: bytes, pending: Pending) -> None:
        self.pending[int.from_bytes(wire[:2], "big")] = pending
        framed = len(wire).to_bytes(2, "big") + wire
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(framed)
            return
        if self.connecting is not None:
            self.connecting.append(framed)
            return
        self.connecting = [framed]
        self.proxy.loop.create_task(self._connect())

    async def _connect(self) -> None:
        options = self.proxy.options
        target = options.upstream or self.server
        sock = upstream_socket(self.client[0] if options.transparent else None, options.mark)
        try:
            await asyncio.wait_for(self.proxy.loop.sock_connect(sock, target), options.upstream_timeout)
            _, up = await self.proxy.loop.create_connection(lambda: TCPUpstream(self), sock=sock)
        except (TimeoutError, OSError):
            sock.close()
            self.connecting = None
            self._fail_all()
            return
        if self.closed:
            up.close()
            return
        self.upstream = up
        waiting, self.connecting = self.connecting or [], None
        if up.transport is not None:
            up.transport.write(b"".join(waiting))

    def upstream_answer(self, wire: bytes) -> None:
        pending = self.pending.pop(int.from_bytes(wire[:2], "big"), None)
        if pending is None:
            self.proxy.stats["bad_answers"] += 1
            return
        self.proxy.answered(pending, wire)

    def upstream_lost(self) -> None:
        self.upstream = None
        self._fail_all()

    def _fail_all(self) -> None:
        pending, self.pending = self.pending, {}
        for p in pending.values():
            self.proxy.failed(p)

    def expire(self, now: float, timeout: float) -> None:
        for ident, p in list(self.pending.items()):
            if now - p.started > timeout:
                del self.pending[ident]
                self.proxy.failed(p, timeout=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.tcp_clients.discard(self)
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def close(self) -> None:
        self.closed = True
        self.proxy.tcp_clients.discard(self)
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


class TCPUpstream(asyncio.Protocol):
    def __init__(self, client: TCPClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while len(buffer) >= 2:
            size = int.from_bytes(buffer[:2], "big")
            if len(buffer) < 2 + size:
                break
            message, buffer = buffer[2 : 2 + size], buffer[2 + size :]
            if len(message) >= 12:
                self.client.upstream_answer(message)
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.client.upstream is self:
            self.client.upstream_lost()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


_FORWARDED = accesslog.VERDICT_FORWARDED.encode()
_DENIED = accesslog.VERDICT_DENIED.encode()
_ERROR = accesslog.VERDICT_ERROR.encode()


def _unique(policies: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for p in policies:
        seen.setdefault(str(sorted(p.get("labels", []))), p)
    return list(seen.values())


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    state: ProxyDNSState | None = None
    if args.state:
        try:
            state = load_dns_state(args.state)
        except StateError as exc:
            print(
                f"hubblepy-dns-proxy: {exc}; refusing every query until a good state is loaded",
                file=sys.stderr,
            )
    log = accesslog.AccessLogWriter(args.access_log) if args.access_log else None
    if log is not None:
        await log.start()
    host, port = _address(args.listen)
    options = Options(
        transparent=args.transparent,
        mark=args.mark,
        upstream=_address(args.upstream) if args.upstream else None,
        proxy_port=port,
        response_max_delay=args.response_max_delay,
        upstream_timeout=args.upstream_timeout,
    )
    proxy = DNSProxy(loop, options, state, log)
    if args.fqdn_notify:
        proxy.notifier = FQDNNotifier(proxy, args.fqdn_notify, args.response_max_delay)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    udp = udp_listener(host, port, transparent=args.transparent)
    proxy.start_udp(udp)
    tcp = listening_socket(host, port, transparent=args.transparent)
    listener = await loop.create_server(lambda: TCPClient(proxy), sock=tcp, backlog=1024)
    sweeper = loop.create_task(proxy.sweep())
    stop = asyncio.Event()

    def reload() -> None:
        if not args.state:
            return
        try:
            proxy.set_state(load_dns_state(args.state))
        except StateError as exc:
            print(f"hubblepy-dns-proxy: {exc}; keeping revision {proxy.state.base.revision}", file=sys.stderr)

    def counters() -> dict[str, int]:
        return {
            **proxy.stats,
            "cache_hits": proxy.cache.hits,
            "cache_misses": proxy.cache.misses,
            "sent": log.sent if log is not None else 0,
            "lost": log.lost if log is not None else 0,
            "loaded_revision": proxy.state.base.revision,
        }

    async def write_stats() -> None:
        while True:
            with contextlib.suppress(OSError):
                write_state(args.stats, {"pid": os.getpid(), **counters()})
            await asyncio.sleep(1.0)

    stats_task = loop.create_task(write_stats()) if args.stats else None
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"hubblepy-dns-proxy listening on {host}:{port}", flush=True)
    await stop.wait()
    sweeper.cancel()
    if stats_task is not None:
        stats_task.cancel()
        with contextlib.suppress(OSError):
            write_state(args.stats, {"pid": os.getpid(), **counters()})
    listener.close()
    proxy.close()
    if log is not None:
        await log.aclose()
    print(f"hubblepy-dns-proxy stats: {counters()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hubblepy-dns-proxy", description="DNS L7 policy proxy (UDP and TCP)"
    )
    parser.add_argument("--listen", default="0.0.0.0:15053", help="address:port (default 0.0.0.0:15053)")
    parser.add_argument(
        "--transparent", action="store_true", help="IP_TRANSPARENT sockets (the node's datapath)"
    )
    parser.add_argument("--mark", type=lambda x: int(x, 0), default=0, help="SO_MARK of upstream sockets")
    parser.add_argument("--state", default="", help="the node's state file (reloaded on SIGHUP)")
    parser.add_argument("--access-log", default="", help="unix socket of the node's access-log reader")
    parser.add_argument(
        "--fqdn-notify", default="", help="unix SOCK_SEQPACKET socket of the node's FQDN cache"
    )
    parser.add_argument(
        "--response-max-delay", type=float, default=0.1, help="seconds an answer waits for the node"
    )
    parser.add_argument("--upstream-timeout", type=float, default=5.0, help="seconds to wait for the server")
    parser.add_argument("--stats", default="", help="a JSON file of counters, rewritten every second")
    parser.add_argument("--upstream", default="", help="tests only: every query goes to HOST:PORT")
    args = parser.parse_args(argv)
    import uvloop

    try:
        uvloop.run(serve(args))
    except OSError as exc:
        print(f"hubblepy-dns-proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
