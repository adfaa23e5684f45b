"""Hubble nodes known to the relay: discovery (static list and/or peer.Peer/Notify) and connections.

Every node gets one long-lived gRPC channel that reconnects by itself with exponential backoff,
capped by ``--retry-timeout`` and never above :data:`MAX_RECONNECT_BACKOFF_S`, so a node that comes
back after any outage is streaming again within a few seconds. The channel's connectivity state is
the node's state (READY -> connected, anything else -> unavailable). Requests use raw-bytes method
callables so flows pass through the relay without being decoded; a node dialled without TLS has its
indexed GetFlows streams read over connections of their own (:mod:`relay.h2stream`), which copy
less than grpcio.

What is wrong with a node is logged once per change, never once per retry: ``node connected``,
``node disconnected`` (a READY connection went away) and ``node unavailable`` with the cause of the
failed connection attempt (refused, TLS handshake, name resolution...), which gRPC only reveals to a
call: a short probe call on the failing channel reads it. The cause is kept as :attr:`Node.reason`
for ``hubble list nodes -o wide|json``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.experimental

from hubblepy.api.observer import observer_pb2
from hubblepy.api.peer import peer_pb2
from relay.h2stream import StreamCall, tcp_target
from relay.wire import Run, parse_indexed, split_batch

log = logging.getLogger(__name__)

LOOKAHEAD_BYTES = 4 << 20  # the receive window the relay offers each node stream
MAX_RECONNECT_BACKOFF_S = 1.0  # the channel retries a lost node at least this often
_CAUSE_PREFIXES = ("failed to connect to all addresses; last error: ", "UNKNOWN: ", "UNAVAILABLE: ")

GET_FLOWS = "/observer.Observer/GetFlows"
GET_FLOWS_BATCHED = "/hubblepy.Batch/GetFlows"  # our nodes' batched GetFlows (see hubblepy.observer.service)
GET_FLOWS_JSON = "/hubblepy.Batch/GetFlowsJSON"  # batches of canonical JSON lines
GET_FLOWS_INDEXED = "/hubblepy.Batch/GetFlowsIndexed"  # framed responses with their times and kinds


class _MalformedBatch(grpc.RpcError):
    """A node's indexed batch that does not hold together, reported like a failed node stream."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return self._message


@dataclass
class ClientTLS:
    """TLS from the relay to the nodes (mTLS when a client certificate is given)."""

    root_ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca, private_key=self.key, certificate_chain=self.cert
        )


@dataclass
class Node:
    """One Hubble node: its name, address and channel."""

    name: str
    address: str
    tls_server_name: str = ""
    channel: grpc.Channel | None = None
    state: grpc.ChannelConnectivity | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)  # READY or failed at least once
    name_from_address: bool = False
    reconnect: Any = None  # pending grpc.channel_ready_future while the channel is idle
    supports_batch: bool | None = None  # None until the first stream tells
    supports_indexed: bool | None = None  # None until the first stream tells
    direct_target: tuple[str, int] | None = None  # plaintext TCP: indexed streams skip grpcio
    dial_timeout: float = 5.0
    health: str = "connecting"  # connected | disconnected | unavailable (last one logged)
    reason: str = ""  # why the node is not connected; "" while connected
    probing: bool = False

    @property
    def connected(self) -> bool:
        return self.state == grpc.ChannelConnectivity.READY

    def get_flows_raw(self) -> Any:
        """``GetFlows`` callable taking a GetFlowsRequest and yielding raw response bytes."""
        assert self.channel is not None
        return self.channel.unary_stream(
            GET_FLOWS,
            request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
            response_deserializer=None,
        )

    def stream_flows(
        self, request: Any, calls: dict[str, Any], as_json: bool = False
    ) -> Iterator[list[bytes]]:
        """Responses of GetFlows as batches of raw bytes; uses the batched extension when the node has it.

        With ``as_json`` the items are canonical JSON lines (with ``\n``) instead of protobuf bytes;
        a node without the extension is read with plain GetFlows and converted here.
        The running call is kept in ``calls[self.address]`` so that it can be cancelled.
        """
        assert self.channel is not None
        if self.supports_batch is not False:
            batched = self.channel.unary_stream(
                GET_FLOWS_JSON if as_json else GET_FLOWS_BATCHED,
                request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                response_deserializer=None,
            )
            call = batched(request)
            calls[self.address] = call
            try:
                for message in call:
                    self.supports_batch = True
                    yield message.splitlines(keepends=True) if as_json else split_batch(message)
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED or self.supports_batch:
                    raise
                self.supports_batch = False  # an upstream node: plain GetFlows
        call = self.get_flows_raw()(request)
        calls[self.address] = call
        if not as_json:
            for wire in call:
                yield [wire]
            return
        from hubblepy.codec import encode, message_to_dict

        parse = observer_pb2.GetFlowsResponse.FromString
        for wire in call:
            yield [encode(message_to_dict(parse(wire))) + b"\n"]

    def start_indexed(self, request: Any) -> StreamCall | None:
        """The indexed stream of :meth:`stream_runs` with its request sent now (when the node is
        read with :mod:`relay.h2stream`; else None): the node starts on it while the caller hands
        the reading to another thread."""
        if self.direct_target is None or self.supports_indexed is False:
            return None
        call = self._direct_call(self.direct_target, request)
        call.start()
        return call

    def _direct_call(self, target: tuple[str, int], request: Any) -> StreamCall:
        return StreamCall(target, GET_FLOWS_INDEXED, request.SerializeToString(), self.dial_timeout)

    def stream_runs(
        self, request: Any, calls: dict[str, Any], started: StreamCall | None = None
    ) -> Iterator[Run | list[bytes]]:
        """Responses of GetFlows as indexed :class:`~relay.wire.Run` batches when the node serves
        them (our nodes), else as :meth:`stream_flows` gives them (older hubblepy nodes, upstream's).
        A malformed indexed batch ends the stream with an INTERNAL error (the node is reported).
        A node reached over plaintext TCP is read with :mod:`relay.h2stream` (its own connection,
        messages read straight into their buffers) instead of the node's grpcio channel; ``started``
        is such a call of :meth:`start_indexed` for this request."""
        assert self.channel is not None
        if self.supports_indexed is not False or started is not None:
            call: Any
            if started is not None:
                call = started
            elif self.direct_target is not None:
                call = self._direct_call(self.direct_target, request)
            else:
                indexed = self.channel.unary_stream(
                    GET_FLOWS_INDEXED,
                    request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
                    response_deserializer=None,
                )
                call = indexed(request)
            calls[self.address] = call
            try:
                for message in call:
                    self.supports_indexed = True
                    try:
                        run = parse_indexed(message)
                    except ValueError as exc:
                        call.cancel()
                        raise _MalformedBatch(str(exc)) from None
                    yield run
                return
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED or self.supports_indexed:
                    raise
                self.supports_indexed = False
        yield from self.stream_flows(request, calls)

    def observer_stub(self) -> Any:
        from hubblepy.api.observer import observer_pb2_grpc

        assert self.channel is not None
        return observer_pb2_grpc.ObserverStub(self.channel)


@dataclass
class DialOptions:
    """How the relay dials nodes."""

    dial_timeout: float = 5.0
    retry_timeout: float = 30.0
    tls: ClientTLS | None = None

    def channel_options(self, tls_server_name: str) -> list[tuple[str, Any]]:
        max_backoff_ms = max(100, int(min(self.retry_timeout, MAX_RECONNECT_BACKOFF_S) * 1000))
        opts: list[tuple[str, Any]] = [
            ("grpc.initial_reconnect_backoff_ms", min(500, max_backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(500, max_backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", max_backoff_ms),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.enable_retries", 0),
            # A wide receive window from the start: the node writes its stream in fewer, larger bursts.
            ("grpc.http2.lookahead_bytes", LOOKAHEAD_BYTES),
            # The reading thread polls the call itself instead of handing every message over from
            # the channel's polling thread: one thread switch less per streamed response.
            (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
        ]
        if self.tls is not None and tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        return opts


class PeerManager:
    """The set of nodes, kept up to date from a static list and/or a peer service."""

    def __init__(self, dial: DialOptions) -> None:
        self.dial = dial
        self._nodes: dict[str, Node] = {}  # by address
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.changed = threading.Condition()

    # -- membership -----------------------------------------------------------------------------
    def add(self, name: str, address: str, tls_server_name: str = "") -> Node:
        with self._lock:
            node = self._nodes.get(address)
            if node is not None:
                if name and node.name_from_address:
                    node.name, node.name_from_address = name, False
                return node
            node = Node(name=name or address, address=address, tls_server_name=tls_server_name)
            node.name_from_address = not name
            node.dial_timeout = self.dial.dial_timeout
            if self.dial.tls is None:
                node.direct_target = tcp_target(address)
            self._nodes[address] = node
        target = address.removeprefix("dns:///")
        opts = self.dial.channel_options(tls_server_name)
        if self.dial.tls is not None:
            node.channel = grpc.secure_channel(target, self.dial.tls.credentials(), options=opts)
        else:
            node.channel = grpc.insecure_channel(target, options=opts)
        node.channel.subscribe(lambda state, n=node: self._on_state(n, state), try_to_connect=True)
        return node

    def remove(self, address: str) -> None:
        with self._lock:
            node = self._nodes.pop(address, None)
        if node is not None and node.channel is not None:
            node.channel.close()
        self._notify()

    def nodes(self) -> list[Node]:
        with self._lock:
            return sorted(self._nodes.values(), key=lambda n: n.name)

    def _on_state(self, node: Node, state: grpc.ChannelConnectivity) -> None:
        node.state = state
        if state == grpc.ChannelConnectivity.READY:
            node.ready.set()
            node.settled.set()
            self._set_health(node, "connected", "")
            if node.name_from_address:
                threading.Thread(target=self._learn_name, args=(node,), daemon=True).start()
        else:
            node.ready.clear()
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and not self._stop.is_set():
                self._probe(node)
            elif node.health == "connected" and state != grpc.ChannelConnectivity.SHUTDOWN:
                self._set_health(node, "disconnected", "connection to the node was lost")
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                node.settled.set()
            if (
                state == grpc.ChannelConnectivity.IDLE
                and node.channel is not None
                and not self._stop.is_set()
            ):
                # A dropped connection leaves the channel IDLE until someone asks for it: keep
                # dialling (with the channel's backoff) so a returning node is noticed by itself.
                if node.reconnect is not None:
                    node.reconnect.cancel()
                node.reconnect = grpc.channel_ready_future(node.channel)
        self._notify()

    def _set_health(self, node: Node, health: str, reason: str) -> None:
        """Record the node's condition; log it when it differs from the last one logged."""
        with self._lock:
            changed = (health, reason) != (node.health, node.reason)
            node.health, node.reason = health, reason
        if not changed or self._stop.is_set():
            return
        if health == "connected":
            log.info(_kv("node connected", node=node.name, address=node.address))
        else:
            log.warning(_kv(f"node {health}", node=node.name, address=node.address, cause=reason))

    def _probe(self, node: Node) -> None:
        """Learn why connecting to ``node`` fails (in a thread: this runs in gRPC's callback)."""
        with self._lock:
            if node.probing:
                return
            node.probing = True
        threading.Thread(target=self._probe_call, args=(node,), daemon=True, name="relay-probe").start()

    def _probe_call(self, node: Node) -> None:
        try:
            if node.channel is None or node.connected:
                return
            try:
                node.observer_stub().ServerStatus(
                    observer_pb2.ServerStatusRequest(), timeout=self.dial.dial_timeout, wait_for_ready=False
                )
                return  # it answers: the channel reports READY by itself
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or node.connected:
                    return
                cause = connection_cause(exc.details() or "", node.address)
            except ValueError:  # the channel was closed meanwhile
                return
            self._set_health(node, "unavailable", cause)
        finally:
            node.probing = False

    def _learn_name(self, node: Node) -> None:
        """Ask a node listed by address only for its name (our agents answer GetNodes)."""
        try:
            resp = node.observer_stub().GetNodes(
                observer_pb2.GetNodesRequest(), timeout=self.dial.dial_timeout
            )
        except grpc.RpcError:
            return
        if len(resp.nodes) == 1 and resp.nodes[0].name and node.name_from_address:
            node.name = resp.nodes[0].name
            node.name_from_address = False
            self._notify()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_settled(self, nodes: list[Node], timeout: float) -> None:
        """Wait until each node is connected or has failed once (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        for node in nodes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            node.settled.wait(remaining)

    # -- discovery through peer.Peer/Notify -------------------------------------------------------
    def watch_peer_service(
        self, address: str, tls: ClientTLS | None, tls_server_name: str = ""
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._peer_service_loop,
            args=(address, tls, tls_server_name),
            name="peer-service",
            daemon=True,
        )
        thread.start()
        return thread

    def _peer_service_loop(self, address: str, tls: ClientTLS | None, tls_server_name: str) -> None:
        from hubblepy.api.peer import peer_pb2_grpc

        target = address
        opts = self.dial.channel_options(tls_server_name)
        backoff = 0.5
        last_cause: str | None = None  # logged once per change, as the nodes' conditions
        while not self._stop.is_set():
            channel = (
                grpc.secure_channel(target, tls.credentials(), options=opts)
                if tls is not None and not target.startswith("unix:")
                else grpc.insecure_channel(target, options=opts)
            )
            try:
                stream = peer_pb2_grpc.PeerStub(channel).Notify(peer_pb2.NotifyRequest())
                self._peer_stream = stream
                for note in stream:
                    backoff = 0.5
                    if last_cause is not None:
                        log.info(_kv("peer service connected", address=address))
                        last_cause = None
                    self._apply(note)
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    break
                cause = (
                    connection_cause(exc.details() or "", address) if hasattr(exc, "details") else str(exc)
                )
                if cause != last_cause:
                    log.warning(_kv("peer service unavailable", address=address, cause=cause))
                    last_cause = cause
            finally:
                channel.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, max(min(self.dial.retry_timeout, MAX_RECONNECT_BACKOFF_S), 0.5))

    def _apply(self, note: Any) -> None:
        tls_name = note.tls.server_name if note.HasField("tls") else ""
        if note.type in (peer_pb2.PEER_ADDED, peer_pb2.PEER_UPDATED):
            self.add(note.name, note.address, tls_name)
        elif note.type == peer_pb2.PEER_DELETED:
            self.remove(note.address)

    def close(self) -> None:
        self._stop.set()
        stream = getattr(self, "_peer_stream", None)
        if stream is not None:
            stream.cancel()
        for node in self.nodes():
            if node.channel is not None:
                node.channel.close()


def connection_cause(details: str, address: str) -> str:
    """The useful part of gRPC's connection error: ``Failed to connect to remote host: Connection refused``."""
    text = details.strip()
    changed = True
    while changed:
        changed = False
        for prefix in _CAUSE_PREFIXES:
            if text.startswith(prefix):
                text, changed = text[len(prefix) :], True
        head, sep, rest = text.partition(": ")
        if sep and head.startswith(("ipv4:", "ipv6:", "unix:", "dns:")):
            text, changed = rest, True
    return text or "unknown error"


def _kv(msg: str, **attrs: str) -> str:
    """``msg="..." key=value ...`` in the slog/logfmt style the relay's log lines use."""
    from hubblepy.cli.slog import slog_value

    return " ".join([slog_value(msg), *(f"{k}={slog_value(v)}" for k, v in attrs.items())])
