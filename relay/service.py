"""The relay's observer.Observer service: fan-out, time-ordered merge, node status, aggregation.

GetFlows
    The request goes unchanged to every connected node. Responses are merged by time with the
    sort buffer (:mod:`relay.merge`). NodeStatusEvents come first (NODE_CONNECTED with the nodes
    that answer, NODE_UNAVAILABLE with the others). A node that fails mid-stream is reported with
    NODE_ERROR and the other nodes keep streaming; node errors within the error aggregation window
    (10 s, ``--error-aggregation-window``) are sent as one event with the first error's message
    (:mod:`relay.node_errors`). In follow mode a node that (re)appears is picked up: the relay asks
    it for the flows since the last one it forwarded from that node.

Strict global ``--last N`` (hubblepy extension)
    A client that sends request metadata ``hubblepy-strict-last: 1`` with a non-follow ``number``
    request gets exactly the newest N flows across all nodes (not N per node), in time order, and a
    trailing-metadata entry ``hubblepy-completeness`` such as
    ``flows=20 nodes_answered=3 nodes_known=3 lost=0``. Other clients are unaffected.

Shared answers
    Identical non-follow requests for up to 10,000 flows that arrive within 0.25 s of each other
    share one fan-out and merge (:mod:`relay.flights`): many clients asking ``--last N`` together
    cost the relay and the nodes about what one does.
"""

from __future__ import annotations

import heapq
import json
import logging
import socket
import threading
import time
from collections.abc import Generator, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any, cast

import grpc
import numpy as np
import orjson

from hubblepy.api.observer import observer_pb2
from hubblepy.api.relay import relay_pb2
from hubblepy.codec.timestamps import format_ns
from hubblepy.observer.service import observer_method_handlers
from hubblepy.rpcerror import rpc_error_text
from relay.flights import MAX_SHARED_NUMBER, FlightError, Flights
from relay.handoff import Handoff
from relay.merge import SortBuffer
from relay.metrics import STATS
from relay.node_errors import ErrorAggregator
from relay.peers import Node, PeerManager
from relay.wire import KIND_FLOW, KIND_LOST_EVENTS, Run, json_line_info, scan_response

if TYPE_CHECKING:
    from hubblepy.observer.transport import FrameViews

log = logging.getLogger(__name__)

STRICT_LAST_KEY = "hubblepy-strict-last"
NODE_REASONS_KEY = "hubblepy-node-reasons"  # GetNodes trailing metadata: {address: why not connected}
COMPLETENESS_KEY = "hubblepy-completeness"
RELAY_VERSION = "hubblepy-relay"
MAX_UNAVAILABLE_LISTED = 10
QUEUE_MAX = 4096
DEFAULT_ERROR_AGGREGATION_WINDOW = 10.0  # seconds, as upstream's relay

ERROR_SETTLE_S = 1.0  # after a node error, time for its channel to leave READY before retrying
KIND_NODE_STATUS = -1  # queued item: a serialized node status event, sent right away
KIND_NODE_ERROR = -2  # queued item: (node name, message) for the error aggregator
KIND_RUN = -3  # queued item: a node's indexed batch (relay.wire.Run), many responses

_END = object()  # a node stream ended (non-follow)
# what a node's stream gives the merge: (items, weight), see _Fanout._stream
_NodeStream = Generator[tuple[list[Any], int], None, None]


def node_status_bytes(
    relay_name: str, state: relay_pb2.NodeState, names: list[str], message: str = ""
) -> bytes:
    resp = observer_pb2.GetFlowsResponse(node_name=relay_name)
    resp.node_status.state_change = state
    resp.node_status.node_names.extend(names)
    if message:
        resp.node_status.message = message
    resp.time.FromNanoseconds(time.time_ns())
    return resp.SerializeToString()


def node_status_json(relay_name: str, state: int, names: list[str], message: str = "") -> bytes:
    """The same NodeStatusEvent response as a canonical JSON line."""
    from hubblepy.codec import encode

    status: dict[str, Any] = {"state_change": relay_pb2.NodeState.Name(state)}
    if names:
        status["node_names"] = list(names)
    if message:
        status["message"] = message
    resp: dict[str, Any] = {"node_status": status}
    if relay_name:
        resp["node_name"] = relay_name
    resp["time"] = format_ns(time.time_ns())
    return encode(resp) + b"\n"


class _Fanout:
    """One client's GetFlows: a reader thread per node feeding one bounded handoff."""

    def __init__(self, follow: bool, relay_name: str, as_json: bool = False) -> None:
        self.as_json = as_json
        self.status = node_status_json if as_json else node_status_bytes
        self.follow = follow
        self.relay_name = relay_name
        self.queue = Handoff(QUEUE_MAX)
        self.cancelled = threading.Event()
        self.calls: dict[str, Any] = {}
        self.active: set[str] = set()
        self.lock = threading.Lock()

    def start(self, node: Node, request: Any) -> None:
        with self.lock:
            if node.address in self.active or self.cancelled.is_set():
                return
            self.active.add(node.address)
        # the node's stream is asked for here when the node is read with relay.h2stream: the node
        # works on it while the reader thread starts (a thread start can wait for a CPU)
        started = None if self.as_json else node.start_indexed(request)
        if started is not None:
            self.calls[node.address] = started  # cancel() reaches it before the reader runs
        threading.Thread(
            target=self._pump, args=(node, request, started), daemon=True, name=f"relay-{node.name}"
        ).start()

    def _put(self, item: Any) -> bool:
        return self.queue.put(item, self.cancelled)

    def start_inline(self, node: Node, request: Any) -> _Inline:
        """The one node of a non-follow request, read in the caller's thread (no reader thread, no
        handoff between threads): what the merge takes from the node's stream as it arrives."""
        with self.lock:
            self.active.add(node.address)
        started = None if self.as_json else node.start_indexed(request)
        if started is not None:
            self.calls[node.address] = started  # cancel() reaches it before anything is read
        return _Inline(self, node, self._stream(node, request, started))

    def _pump(self, node: Node, request: Any, started: Any = None) -> None:
        stream = self._stream(node, request, started)
        try:
            for items, weight in stream:
                if weight:  # one item standing for ``weight`` responses (a node's indexed batch)
                    if not self.queue.put(items[0], self.cancelled, weight):
                        return
                elif not self.queue.put_many(items, self.cancelled):
                    return
        finally:
            stream.close()
            self._stopped(node)
            if not self.follow:
                self._put(_END)

    def _stopped(self, node: Node) -> None:
        with self.lock:
            self.active.discard(node.address)
        self.calls.pop(node.address, None)

    def _stream(self, node: Node, request: Any, started: Any = None) -> _NodeStream:
        """What one node's stream gives the merge: ``(items, weight)``, items as the merge takes them
        (``weight`` > 0: a single item standing for that many responses), the node's errors and, in
        follow mode, its reconnections included; ends when the stream does (non-follow), when a
        node error ends it, or when the fan-out is cancelled."""
        last_ns = 0
        while not self.cancelled.is_set():
            try:
                info = json_line_info if self.as_json else scan_response
                batches: Iterator[Any]
                if self.as_json:
                    batches = node.stream_flows(request, self.calls, True)
                else:
                    batches = node.stream_runs(request, self.calls, started)
                    started = None  # a retry (follow mode) asks again
                for batch in batches:
                    if isinstance(batch, Run):  # times and kinds come with it: nothing to parse
                        if not len(batch):
                            continue
                        flows = batch.kinds.count(KIND_FLOW)
                        if flows:
                            times = batch.times
                            if flows != len(batch):
                                times = times[np.frombuffer(batch.kinds, dtype=np.uint8) == KIND_FLOW]
                            newest = int(times.max())
                            if newest > last_ns:
                                last_ns = newest
                        STATS.forwarded(flows)
                        yield [(int(batch.times[0]), KIND_RUN, batch)], len(batch)
                        continue
                    items: list[Any] = []
                    append = items.append
                    flows = 0
                    for wire in batch:
                        time_ns, kind = info(wire)
                        if kind == KIND_FLOW:
                            flows += 1
                            if time_ns > last_ns:
                                last_ns = time_ns
                        append((time_ns, kind, wire))
                    STATS.forwarded(flows)
                    if items:
                        yield items, 0
                if not self.follow:
                    return
            except grpc.RpcError as exc:
                if self.cancelled.is_set():
                    return
                message = rpc_error_text(exc)
                # Connection trouble is logged once per change by the peer manager; other
                # errors of a node's stream are worth a line each.
                lost = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                (log.debug if lost else log.warning)("node %s (%s): %s", node.name, node.address, message)
                STATS.node_error(node.name)
                yield [(time.time_ns(), KIND_NODE_ERROR, (node.name, message))], 0
                if not self.follow or exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    return
                # The channel's state may still say READY for a moment after the stream broke:
                # let it catch up (or pause before retrying a node that stays up but failed),
                # so the node is not announced as connected again before it really is.
                settle_until = time.monotonic() + ERROR_SETTLE_S
                while node.connected and time.monotonic() < settle_until:
                    if self.cancelled.wait(0.05):
                        return
            # follow mode: wait for the node to come back, then continue after the last flow seen
            while not self.cancelled.is_set() and not node.ready.wait(0.25):
                pass
            if self.cancelled.is_set():
                return
            request = _resume_request(request, last_ns)
            status = self.status(self.relay_name, relay_pb2.NODE_CONNECTED, [node.name])
            yield [(time.time_ns(), KIND_NODE_STATUS, status)], 0

    def cancel(self) -> None:
        self.cancelled.set()
        for call in list(self.calls.values()):
            call.cancel()


class _Inline:
    """One node's stream read by the merge itself (a non-follow request to one node): :meth:`take`
    reads the node's next batch in the caller's thread, as :meth:`Handoff.take` would hand it over
    from a reader thread, and ``[_END]`` when the stream is over."""

    def __init__(self, fan: _Fanout, node: Node, stream: _NodeStream) -> None:
        self.fan = fan
        self.node = node
        self.stream: _NodeStream | None = stream

    def __len__(self) -> int:
        return 0  # nothing is ever waiting: the merge reads (and may wait) when it takes

    def take(self, timeout: float) -> list[Any]:
        """The node's next items (waiting for them as long as the node takes: ``timeout`` is not
        applied), ``[_END]`` once after the stream ended, then ``[]``."""
        if self.stream is None:
            return []
        try:
            return next(self.stream)[0]
        except StopIteration:
            self.close()
            return [_END]

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
            self.fan._stopped(self.node)


def _in_order_run(batch: list[Any], newest: int) -> bool:
    """True when ``batch`` holds only responses (no node event, no end of a stream) in time order,
    the first no earlier than ``newest``: what SortBuffer.push_run takes."""
    previous = newest
    for item in batch:
        if item is _END:
            return False
        time_ns, kind = item[0], item[1]
        if kind < 0 or time_ns < previous:
            return False
        previous = time_ns
    return True


def _resume_request(request: Any, last_ns: int) -> Any:
    """The follow request that continues a node's stream right after its last forwarded flow."""
    resumed = observer_pb2.GetFlowsRequest()
    resumed.CopyFrom(request)
    resumed.number = 0
    resumed.first = False
    if last_ns:
        resumed.since.FromNanoseconds(last_ns + 1)
    else:
        resumed.ClearField("since")
    return resumed


class RelayObserver:
    """observer.Observer handlers of the relay."""

    def __init__(
        self,
        peers: PeerManager,
        sort_buffer_len: int = 100,
        drain_timeout: float = 1.0,
        dial_timeout: float = 5.0,
        retry_timeout: float = 30.0,
        relay_name: str | None = None,
        error_aggregation_window: float = DEFAULT_ERROR_AGGREGATION_WINDOW,
        framed: bool = False,
    ) -> None:
        self.framed = framed  # hosted on our h2 transport: GetFlows hands over runs of messages
        self.peers = peers
        self.error_aggregation_window = error_aggregation_window
        self.sort_buffer_len = sort_buffer_len
        self.drain_timeout = drain_timeout
        self.dial_timeout = dial_timeout
        self.retry_timeout = retry_timeout
        self.relay_name = relay_name or socket.gethostname()
        self.started_ns = time.monotonic_ns()
        self.pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="relay-unary")
        self.flights = Flights()

    def _split_nodes(self) -> tuple[list[Node], list[Node]]:
        nodes = self.peers.nodes()
        self.peers.wait_settled(nodes, self.dial_timeout)
        connected = [n for n in nodes if n.connected]
        unavailable = [n for n in nodes if not n.connected]
        return connected, unavailable

    # -- GetFlows -----------------------------------------------------------------------------------
    def get_flows(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes | FrameViews]:
        from hubblepy.observer.service import flows_on_wire

        stream = self._answer(request, context, as_json=False)
        yield from flows_on_wire(stream if self.framed else (w for w in stream if w), self.framed)

    def get_flows_json(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        """hubblepy extension: the merged stream as batches of canonical JSON lines (see the node's)."""
        from hubblepy.observer.service import batched

        yield from batched(cast(Iterator[bytes], self._answer(request, context, as_json=True)), None)

    def _answer(
        self, request: Any, context: grpc.ServicerContext, as_json: bool
    ) -> Iterator[bytes | FrameViews]:
        """The merged stream for one client: its own, or a flight shared with identical requests."""
        if request.first and request.follow:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first cannot be specified with follow")
        from hubblepy.observer.service import BadRequest, compile_request_filters

        try:
            compile_request_filters(request)  # validate once here instead of N node errors
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        metadata = tuple(context.invocation_metadata())
        context.send_initial_metadata((("hubble-relay-version", RELAY_VERSION),))
        if request.follow or not 0 < request.number <= MAX_SHARED_NUMBER:
            yield from self._flows(request, context, as_json, metadata)
            return
        strict = dict(metadata).get(STRICT_LAST_KEY) == "1"
        key = b"%d%d" % (as_json, strict) + request.SerializeToString(deterministic=True)
        framed = self.framed and not as_json

        def produce(ctx: Any) -> Iterator[bytes | FrameViews]:
            stream = self._flows(request, ctx, as_json, metadata)
            if not framed:
                return stream
            from hubblepy.observer.transport import framed_stream

            return framed_stream(stream)  # framed once for every reader

        flight = self.flights.join_or_start(key, metadata, produce)
        try:
            yield from flight.read(context.is_active)
        except FlightError as exc:
            context.abort(exc.code or grpc.StatusCode.UNKNOWN, exc.details)
        if flight.trailing:
            context.set_trailing_metadata(flight.trailing)

    def _flows(
        self, request: Any, context: Any, as_json: bool, metadata: tuple
    ) -> Iterator[bytes | FrameViews]:
        """The merged response stream; ``b""`` items mark moments the relay is about to wait."""
        status = node_status_json if as_json else node_status_bytes
        connected, unavailable = self._split_nodes()
        if (
            dict(metadata).get(STRICT_LAST_KEY) == "1"
            and not request.follow
            and not request.first
            and request.number
        ):
            yield from self._strict_last(request, context, connected, unavailable, as_json)
            return
        yield status(self.relay_name, relay_pb2.NODE_CONNECTED, [n.name for n in connected])
        if unavailable:
            yield status(self.relay_name, relay_pb2.NODE_UNAVAILABLE, [n.name for n in unavailable])
        fan = _Fanout(request.follow, self.relay_name, as_json)
        context.add_callback(fan.cancel)
        inline: _Inline | None = None
        if not request.follow and len(connected) == 1:
            # one node and a stream that ends: read it here rather than in a reader thread (a
            # thread start and two thread switches per node batch less; the merge is the same)
            inline = fan.start_inline(connected[0], request)
        else:
            for node in connected:
                fan.start(node, request)
        try:
            yield from self._merge(fan, request, context, len(connected), self.framed and not as_json, inline)
        finally:
            fan.cancel()
            if inline is not None:
                inline.close()

    def _merge(
        self,
        fan: _Fanout,
        request: Any,
        context: grpc.ServicerContext,
        streams: int,
        frame_runs: bool = False,
        inline: _Inline | None = None,
    ) -> Iterator[bytes | FrameViews]:
        """The responses of the nodes' streams in time order (SortBuffer). ``frame_runs`` (GetFlows on
        our h2 transport): a batch of flows in time order is released as one run of gRPC-framed
        responses (:class:`~hubblepy.observer.transport.Frames`) instead of one item per response,
        and what a node's indexed batches release as slices of the node's bytes
        (:class:`~hubblepy.observer.transport.FrameViews`, not copied). With ``inline`` the one
        node's stream is read from it instead of the fan-out's handoff."""
        from hubblepy.observer.transport import _PREFIX, Frames, FrameViews

        pack = _PREFIX.pack
        qlen = self.sort_buffer_len
        nodes_total = max(1, streams)
        if request.number and request.number * nodes_total < qlen:
            qlen = int(request.number * nodes_total)
        buffer = SortBuffer(qlen)
        errors = ErrorAggregator(self.error_aggregation_window)
        pending = streams
        follow = request.follow
        source: Handoff | _Inline = fan.queue if inline is None else inline
        take = source.take
        tick = min(self.drain_timeout, 0.25)
        if errors.window_s > 0:
            tick = min(tick, errors.window_s)
        last_arrival = last_check = time.monotonic()
        while follow or pending > 0:
            if errors and errors.due(time.monotonic()):
                yield from self._node_errors(fan, errors)
            if not len(source):
                yield b""  # about to wait: batching callers send what they hold
            batch = take(tick)
            if not batch:
                now = time.monotonic()
                if now - last_arrival >= self.drain_timeout:
                    yield from buffer.drain()
                    last_arrival = now
                if follow and now - last_check >= 0.5:
                    last_check = now
                    self._pick_up_nodes(fan, request)
                if not context.is_active():
                    return
                continue
            if frame_runs and _in_order_run(batch, buffer.newest):
                # the common case: one node's flows, in time order (the buffer is a delay line)
                in_order = buffer.push_run([item[0] for item in batch], [item[2] for item in batch])
                if in_order:
                    yield Frames(b"".join([part for wire in in_order for part in (pack(0, len(wire)), wire)]))
                last_arrival = time.monotonic()
                if follow and last_arrival - last_check >= 0.5:
                    last_check = last_arrival
                    self._pick_up_nodes(fan, request)
                continue
            push = buffer.push
            for item in batch:
                if item is _END:
                    pending -= 1
                    continue
                time_ns, kind, wire = item
                if kind == KIND_RUN:
                    if frame_runs:
                        framed = buffer.push_frames(wire)
                        if framed is not None:
                            if framed:
                                yield FrameViews(framed)
                            continue
                    for one_ns, one in zip(wire.times.tolist(), wire.wires(), strict=True):
                        single = push(one_ns, one)
                        if single is not None:
                            yield single
                    continue
                if kind < 0:
                    if kind == KIND_NODE_ERROR:
                        errors.add(wire[0], wire[1], time.monotonic())
                        if errors.due(time.monotonic()):
                            yield from self._node_errors(fan, errors)
                        continue
                    if errors:  # never let a node status overtake an error held before it
                        yield from self._node_errors(fan, errors)
                    yield wire
                    continue
                released = push(time_ns, wire)
                if released is not None:
                    yield released
            last_arrival = time.monotonic()
            if follow and last_arrival - last_check >= 0.5:
                last_check = last_arrival
                self._pick_up_nodes(fan, request)
        yield from buffer.drain()
        if errors:
            yield from self._node_errors(fan, errors)

    def _node_errors(self, fan: _Fanout, errors: ErrorAggregator) -> Iterator[bytes]:
        """The held node errors as one NODE_ERROR event."""
        held = errors.take()
        if held is not None:
            yield fan.status(self.relay_name, relay_pb2.NODE_ERROR, held[0], held[1])

    def _pick_up_nodes(self, fan: _Fanout, request: Any) -> None:
        """Follow mode: start streaming from nodes that became available since the request began."""
        for node in self.peers.nodes():
            if node.connected and node.address not in fan.active:
                resumed = observer_pb2.GetFlowsRequest()
                resumed.CopyFrom(request)
                resumed.number = 0
                fan._put(
                    (
                        time.time_ns(),
                        KIND_NODE_STATUS,
                        fan.status(self.relay_name, relay_pb2.NODE_CONNECTED, [node.name]),
                    )
                )
                fan.start(node, resumed)

    def _strict_last(
        self,
        request: Any,
        context: grpc.ServicerContext,
        connected: list[Node],
        unavailable: list[Node],
        as_json: bool = False,
    ) -> Iterator[bytes]:
        number = request.number
        status = node_status_json if as_json else node_status_bytes
        results = list(self.pool.map(lambda n: _collect(n, request, as_json), connected))
        answered = [n for n, r in zip(connected, results, strict=True) if r is not None]
        failed = [n for n, r in zip(connected, results, strict=True) if r is None]
        yield status(self.relay_name, relay_pb2.NODE_CONNECTED, [n.name for n in answered])
        missing = unavailable + failed
        if missing:
            yield status(self.relay_name, relay_pb2.NODE_UNAVAILABLE, [n.name for n in missing])
        flows: list[tuple[int, int, bytes]] = []
        lost_total = 0
        seq = 0
        lost_wires = []
        for result in results:
            for time_ns, kind, wire, lost in result or ():
                seq += 1
                if kind == KIND_LOST_EVENTS:
                    lost_total += lost
                    lost_wires.append(wire)
                elif kind == KIND_FLOW:
                    flows.append((time_ns, seq, wire))
        newest = heapq.nlargest(number, flows)
        newest.reverse()
        yield from lost_wires
        for _, _, wire in newest:
            yield wire
        summary = f"flows={len(newest)} nodes_answered={len(answered)} nodes_known={len(connected) + len(unavailable)} lost={lost_total}"
        context.set_trailing_metadata(((COMPLETENESS_KEY, summary),))

    # -- unary RPCs ---------------------------------------------------------------------------------
    def _node_statuses(self, nodes: list[Node]) -> list[Any]:
        def one(node: Node) -> Any:
            try:
                return node.observer_stub().ServerStatus(
                    observer_pb2.ServerStatusRequest(), timeout=self.dial_timeout
                )
            except grpc.RpcError:
                return None

        return list(self.pool.map(one, nodes))

    def server_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        connected, unavailable = self._split_nodes()
        statuses = self._node_statuses(connected)
        resp = observer_pb2.ServerStatusResponse(version=RELAY_VERSION)
        answered = 0
        for node, st in zip(connected, statuses, strict=True):
            if st is None:
                unavailable.append(node)
                continue
            answered += 1
            resp.num_flows += st.num_flows
            resp.max_flows += st.max_flows
            resp.seen_flows += st.seen_flows
            resp.flows_rate += st.flows_rate
            resp.uptime_ns = max(resp.uptime_ns, st.uptime_ns)
        resp.num_connected_nodes.value = answered
        resp.num_unavailable_nodes.value = len(unavailable)
        resp.unavailable_nodes.extend(sorted(n.name for n in unavailable)[:MAX_UNAVAILABLE_LISTED])
        return resp

    def get_nodes(self, request: Any, context: grpc.ServicerContext) -> Any:
        nodes = self.peers.nodes()
        self.peers.wait_settled(nodes, self.dial_timeout)
        connected = [n for n in nodes if n.connected]
        statuses = dict(zip((n.address for n in connected), self._node_statuses(connected), strict=True))
        out = []
        reasons: dict[str, str] = {}
        for node in nodes:
            item = observer_pb2.Node(name=node.name, address=node.address)
            item.tls.enabled = self.peers.dial.tls is not None
            if node.tls_server_name:
                item.tls.server_name = node.tls_server_name
            st = statuses.get(node.address)
            if st is not None:
                item.state = relay_pb2.NODE_CONNECTED
                item.version = st.version
                item.uptime_ns = st.uptime_ns
                item.num_flows = st.num_flows
                item.max_flows = st.max_flows
                item.seen_flows = st.seen_flows
            else:
                item.state = relay_pb2.NODE_UNAVAILABLE
                reasons[node.address] = node.reason or (
                    "no answer to ServerStatus" if node.connected else "not connected yet"
                )
            out.append(item)
        if reasons:
            # Upstream's Node message has no field for it: clients that know the key show it.
            context.set_trailing_metadata(((NODE_REASONS_KEY, json.dumps(reasons, ensure_ascii=True)),))
        return observer_pb2.GetNodesResponse(nodes=out)

    def get_namespaces(self, request: Any, context: grpc.ServicerContext) -> Any:
        connected, _ = self._split_nodes()

        def one(node: Node) -> Any:
            try:
                return node.observer_stub().GetNamespaces(
                    observer_pb2.GetNamespacesRequest(), timeout=self.dial_timeout
                )
            except grpc.RpcError:
                return None

        seen: set[tuple[str, str]] = set()
        for resp in self.pool.map(one, connected):
            for ns in resp.namespaces if resp is not None else ():
                seen.add((ns.namespace, ns.cluster))
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(cluster=c, namespace=n) for n, c in sorted(seen)]
        )

    def unimplemented(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented by hubble-relay")

    def batch_handlers(self) -> grpc.GenericRpcHandler:
        """hubblepy.Batch/GetFlowsJSON for our CLI (upstream clients never call it)."""
        return grpc.method_handlers_generic_handler(
            "hubblepy.Batch",
            {
                "GetFlowsJSON": grpc.unary_stream_rpc_method_handler(
                    self.get_flows_json, request_deserializer=observer_pb2.GetFlowsRequest.FromString
                )
            },
        )

    # The relay serves no agent or debug events, as upstream's relay.
    get_agent_events = get_debug_events = unimplemented

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("observer.Observer", observer_method_handlers(self))


def _collect(node: Node, request: Any, as_json: bool) -> list[tuple[int, int, bytes, int]] | None:
    """All responses of a non-follow request to one node, or None when the node fails."""
    out = []
    info = json_line_info if as_json else scan_response
    try:
        for batch in node.stream_flows(request, {}, as_json):
            for wire in batch:
                time_ns, kind = info(wire)
                lost = 0
                if kind == KIND_LOST_EVENTS:
                    if as_json:
                        lost = int(orjson.loads(wire)["lost_events"].get("num_events_lost", 0))
                    else:
                        lost = observer_pb2.GetFlowsResponse.FromString(wire).lost_events.num_events_lost
                out.append((time_ns, kind, wire, lost))
    except grpc.RpcError:
        return None
    return out
