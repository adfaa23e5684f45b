"""gRPC handlers of one node: observer.Observer and peer.Peer over an :class:`~hubblepy.observer.core.Observer`.

GetFlows streams pre-serialized ``GetFlowsResponse`` bytes: each ring entry is converted to protobuf
once (cached on the entry) no matter how many clients read it. The handlers are registered as
generic handlers so that GetFlows can skip the per-message serializer; every other RPC uses the
generated message classes.

Request semantics follow upstream Hubble:

* ``first`` with ``follow`` is INVALID_ARGUMENT; bad filters are INVALID_ARGUMENT with the filter
  error text.
* ``first`` or ``since``: read forward from the oldest entry (``number`` caps the flows when set).
* ``follow`` with ``number == 0``: only new flows.
* otherwise: the newest ``number`` matching flows (all when 0), then continue when following.
* ``until`` ends a non-following stream at the first flow newer than it.
* A reader that the ring overtakes gets one ``lost_events`` response (source HUBBLE_RING_BUFFER,
  with the number of entries it missed) and continues at the oldest entry still there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2
from hubblepy.api.peer import peer_pb2
from hubblepy.api.relay import relay_pb2
from hubblepy.codec.fastwire import WireEncoder
from hubblepy.codec.timestamps import NS_PER_SECOND, format_ns
from hubblepy.observer.convert import apply_mask, compile_mask, message_to_dict
from hubblepy.observer.core import Observer
from hubblepy.observer.errors import BadRequest
from hubblepy.observer.indexed import IndexedBatcher
from hubblepy.observer.records import ColumnFilter, compile_column_filter, compile_exact_column_filter
from hubblepy.observer.ring import KIND_DECODED, Ring, RingEntry
from hubblepy.observer.wiretemplates import plan_frames

if TYPE_CHECKING:
    from hubblepy.observer.transport import FrameViews

log = logging.getLogger(__name__)

OBSERVER_SERVICE = "observer.Observer"
BATCH_SERVICE = "hubblepy.Batch"  # node <-> relay extension, invisible to upstream clients
BATCH_MAX = 256
PEER_SERVICE = "peer.Peer"
FOLLOW_POLL_S = 0.25
SCAN_BATCH = 1024  # ring entries whose columns are tested (and survivors decoded) at once
SCAN_MIN = 64
DECODE_CHUNK = 128  # candidates decoded between two looks at the ring writer's turn
FRAMES_SCAN_BATCH = 4096  # ... when templates serve the scan (their cost per scan is mostly fixed)
# ... and when they serve a filtered scan (``exact``): only its candidates cost more than the
# columns' test, and a follower that fell behind catches up in fewer, larger scans
EXACT_FRAMES_SCAN_BATCH = 16384
# A follower served from templates whose last scan covered at least 1/COALESCE_SHARE of a scan batch
# (a busy writer) waits, once caught up, for up to COALESCE_S for a whole batch before it scans: a
# template scan costs about as much per call as per sample (numpy over the scan), so at 1M events/s
# four of the writer's batches in one scan take ~30% less CPU per drop. A writer that pauses for
# COALESCE_S ends the wait: flows reach the client at most that much later.
COALESCE_SHARE = 4
COALESCE_S = 0.010
LAPPED_SKIP = 4  # a lapped follower resumes 1/LAPPED_SKIP of the ring past the oldest entry
FRAMES_CHUNK = 128  # template-made responses per handoff to the transport
# An indexed batch (node -> relay) goes out at INDEXED_FLUSH_BYTES, or at the 2**INDEXED_RAMP-th part
# of what the stream sent before it when that is more, up to INDEXED_MAX_BYTES: a relay's cost of a
# batch is mostly fixed (its gRPC message, hand-offs between threads), so batches grow as a stream
# goes on, while its first ones go out early and a non-follow stream's last one is a small part of
# it (a relay holds a batch until it has all of it)
INDEXED_FLUSH_BYTES = 64 << 10
INDEXED_MAX_BYTES = 1 << 20
INDEXED_RAMP = 3
INDEXED_CHUNK = 512  # a templated run goes into a batch this many at a time (fewer numpy calls)

Predicate = Callable[[dict[str, Any]], bool]


def compile_request_filters(request: Any) -> Predicate | None:
    """Predicate over GetFlowsResponse dicts for the request's whitelist/blacklist (None = all)."""
    if not request.whitelist and not request.blacklist:
        return None
    from hubblepy.filters import FilterError, compile_flow_filters

    allow = [message_to_dict(f) for f in request.whitelist]
    deny = [message_to_dict(f) for f in request.blacklist]
    try:
        return compile_flow_filters(allow, deny)
    except FilterError as exc:
        raise BadRequest(str(exc)) from None


LOST_EVENTS_METADATA = "hubblepy-lost-events"  # ServerStatus trailer: what the node lost, by cause
LOST_COUNT_KEYS = ("lost_perf_events", "ring_overwritten", "ring_readers_lost")


def format_lost_counts(status: dict[str, Any]) -> str:
    """``lost_perf_events=N;ring_overwritten=N;ring_readers_lost=N`` from an Observer status dict."""
    return ";".join(f"{key}={int(status.get(key, 0))}" for key in LOST_COUNT_KEYS)


def parse_lost_counts(text: str) -> dict[str, int]:
    """The counts of a ``hubblepy-lost-events`` trailer (unknown or malformed parts are skipped)."""
    out: dict[str, int] = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key in LOST_COUNT_KEYS and value.isdigit():
            out[key] = int(value)
    return out


def compile_request_column_filter(request: Any) -> ColumnFilter | None:
    """Necessary conditions of the request's whitelist over the ring's columns (None = none)."""
    if not request.whitelist:
        return None
    return compile_column_filter([message_to_dict(f) for f in request.whitelist])


def compile_request_exact_filter(request: Any) -> ColumnFilter | None:
    """A test over the ring's columns marking the raw samples the request's filters certainly
    accept (verdict filters only: see :func:`compile_exact_column_filter`); None = none."""
    if not request.whitelist:
        return None
    return compile_exact_column_filter(
        [message_to_dict(f) for f in request.whitelist], [message_to_dict(f) for f in request.blacklist]
    )


def flow_templates(
    observer: Observer,
    predicate: Predicate | None,
    column_filter: ColumnFilter | None,
    exact: ColumnFilter | None,
) -> Any:
    """The ring's wire templates for a GetFlows stream in protobuf without a field mask, when its
    filter lets them serve it: no filter at all, or one whose matches the columns prove (``exact``);
    None otherwise (or when the ring's decoder has none)."""
    if (predicate is not None or column_filter is not None) and exact is None:
        return None
    wire_templates = getattr(observer.flows.decoder, "wire_templates", None)
    return wire_templates() if wire_templates is not None else None


_row_wire: Any = None


def row_wire() -> Any:
    """The node's :class:`~hubblepy.observer.l7wire.RowWire` (made when first needed; its tables are
    shared by every stream, as :mod:`hubblepy.codec.fastwire`'s are)."""
    global _row_wire
    if _row_wire is None:
        from hubblepy.observer.l7wire import RowWire

        _row_wire = RowWire()
    return _row_wire


class ResponseEncoder:
    """Turns ring entries into wire bytes of a response message, with optional field mask."""

    def __init__(self, message_class: type, mask_paths: list[str] | None = None) -> None:
        self.message_class = message_class
        self.wire_encoder = WireEncoder(message_class)
        self.mask_tree = compile_mask(mask_paths) if mask_paths else None
        self.mask_key = tuple(sorted(mask_paths)) if mask_paths else None

    def encode_json(self, entry: RingEntry) -> bytes:
        """The entry as one canonical JSON line (``hubble observe -o json`` bytes plus ``\n``)."""
        from hubblepy.codec import encode

        if self.mask_tree is None or entry.flow is None:
            line = entry.json
            if line is None:
                line = encode(entry.response) + b"\n"
                entry.json = line
            return line
        cached = entry.masked_json
        if cached is not None and cached[0] == self.mask_key:
            return cached[1]
        resp = dict(entry.response)
        resp["flow"] = apply_mask(entry.flow, self.mask_tree)
        line = encode(resp) + b"\n"
        entry.masked_json = (self.mask_key, line)
        return line

    def encode(self, entry: RingEntry) -> bytes:
        if self.mask_tree is None or entry.flow is None:
            wire = entry.wire
            if wire is None:
                shape = entry.shape
                if shape is not None and self.message_class is observer_pb2.GetFlowsResponse:
                    wire = row_wire().encode(entry.response, shape)  # an access-log row (l7wire)
                if wire is None:
                    wire = self.wire_encoder.encode(entry.response)
                entry.wire = wire
            return wire
        cached = entry.masked
        if cached is not None and cached[0] == self.mask_key:
            return cached[1]
        resp = dict(entry.response)
        resp["flow"] = apply_mask(entry.flow, self.mask_tree)
        wire = self.wire_encoder.encode(resp)
        entry.masked = (self.mask_key, wire)
        return wire


def _lost_response(node_name: str, count: int) -> bytes:
    now = time.time_ns()
    resp = observer_pb2.GetFlowsResponse(node_name=node_name)
    resp.lost_events.source = flow_pb2.HUBBLE_RING_BUFFER
    resp.lost_events.num_events_lost = count
    resp.time.FromNanoseconds(now)
    return resp.SerializeToString()


def _lost_json(node_name: str, count: int) -> bytes:
    from hubblepy.codec import encode

    resp: dict[str, Any] = {"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": str(count)}}
    if node_name:
        resp["node_name"] = node_name
    resp["time"] = format_ns(time.time_ns())
    return encode(resp) + b"\n"


def _request_ns(stamp: Any) -> int:
    """Nanoseconds since the epoch of a request's protobuf Timestamp."""
    return stamp.seconds * NS_PER_SECOND + stamp.nanos


def stream_ring(
    ring: Ring,
    request: Any,
    is_active: Callable[[], bool],
    encode: Callable[[RingEntry], bytes],
    node_name: str,
    predicate: Predicate | None = None,
    stop: threading.Event | None = None,
    idle_marker: bool = False,
    encode_lost: Callable[[str, int], bytes] = _lost_response,
    column_filter: ColumnFilter | None = None,
    frames: Any = None,
    exact: ColumnFilter | None = None,
    timed: bool = False,
) -> Iterator[Any]:
    """Yield the wire bytes of the entries a GetFlows/GetAgentEvents/GetDebugEvents request selects.

    With ``idle_marker`` an empty ``b""`` is yielded each time the reader has caught up with the
    writer and is about to wait (batching callers flush then). With ``frames`` (the ring's
    :class:`~hubblepy.observer.wiretemplates.WireTemplates`; only for unmasked requests on our h2
    transport, unfiltered or with an ``exact`` column test) raw samples with a template are yielded
    as gRPC-framed runs of responses (:class:`~hubblepy.observer.transport.Frames`), byte for byte
    what ``encode`` gives them; with ``timed`` instead as ``(bytes, times, sizes)`` (the framed
    responses, each response's time and framed size, numpy arrays).
    """
    for item in select_entries(
        ring, request, is_active, predicate, stop, idle_marker, column_filter, frames, exact, timed
    ):
        if item is None:
            yield b""
        elif type(item) is int:
            yield encode_lost(node_name, item)
        elif isinstance(item, (bytes, tuple)):  # framed responses made from templates (``frames``)
            yield item
        else:
            yield encode(item)


def select_entries(
    ring: Ring,
    request: Any,
    is_active: Callable[[], bool],
    predicate: Predicate | None = None,
    stop: threading.Event | None = None,
    idle_marker: bool = False,
    column_filter: ColumnFilter | None = None,
    frames: Any = None,
    exact: ColumnFilter | None = None,
    timed: bool = False,
) -> Iterator[Any]:
    """The entries a request selects, in order: a :class:`RingEntry` to send, an int for entries
    the writer overwrote before we read them (send a LostEvent), None when caught up (idle marker).

    Entries are taken in batches: ``column_filter`` (necessary conditions over the ring's columns)
    and ``since`` drop raw samples before they are decoded, the rest are decoded in one call and
    tested with ``predicate`` (the request's full filter). With ``frames`` (templates, for requests
    without filters) the raw samples that have a template come as :class:`Frames` of framed
    responses instead of entries, several at once. With a filter, ``frames`` needs ``exact`` (the
    raw samples whose columns prove a match): only those come from templates, untested; the other
    candidates are decoded and tested as without ``frames``. ``timed``: those come as
    ``(bytes, times, sizes)`` instead: the framed responses, each one's time (the ring's time
    column, which the templates write into the responses) and framed size; each templated scan
    then ends with a None as when caught up (a batch being filled goes out before the next scan).
    """
    if frames is not None and exact is None and (predicate is not None or column_filter is not None):
        frames = None  # templates skip the filter: only for the samples ``exact`` proves
    number = request.number
    follow = request.follow
    since_ns = _request_ns(request.since) if request.HasField("since") else None
    until_ns = None
    if request.HasField("until") and not follow:
        until_ns = _request_ns(request.until)
    if request.first or since_ns is not None:
        seq = ring.oldest_seq
    elif follow and number == 0:
        seq = ring.next_seq
    else:
        seq = _rewind(ring, number, predicate, until_ns, column_filter)
    limit = number if (number and not follow) else 0
    end = None if follow else ring.next_seq
    sent = 0
    batch = SCAN_BATCH if frames is None else FRAMES_SCAN_BATCH if exact is None else EXACT_FRAMES_SCAN_BATCH
    scanned = 0  # entries the last scan covered
    if frames is not None:
        from hubblepy.observer.transport import Frames
    while True:
        if end is not None and seq >= end:
            return
        newest = ring.next_seq if end is None else min(end, ring.next_seq)
        if seq >= newest:  # caught up with the writer: wait for more (follow mode only)
            if not is_active() or (stop is not None and stop.is_set()):
                return
            if idle_marker:
                yield None
            if ring.wait(seq, FOLLOW_POLL_S) and frames is not None and scanned * COALESCE_SHARE >= batch:
                _gather_more(ring, seq + batch, stop)  # a busy writer: wait for a scan's worth
            continue
        floor = ring.oldest_seq
        if seq < floor:
            # A follower the writer lapped goes on a quarter of the ring past the oldest entry (the
            # skipped ones are in its LostEvent): from the oldest, the writer would overwrite what it
            # scans next at once, lap it again and again, and every scan's work would be thrown away.
            resume = min(newest, floor + len(ring) // LAPPED_SKIP) if follow else floor
            lost = resume - seq
            ring.readers_lost += lost
            yield lost
            seq = resume
            continue
        size = batch if not limit else max(SCAN_MIN, min(batch, 2 * (limit - sent)))
        hi = min(newest, seq + size)
        scanned = hi - seq
        ring.yield_to_writer()  # the writer taking a batch in goes first (see Ring.ingesting)
        candidates, stop_at = _candidates(ring, seq, hi, since_ns, until_ns, column_filter)
        plan = (
            plan_frames(ring, frames, candidates, exact) if frames is not None and len(candidates) else None
        )
        if plan is None:
            seqs: list[int] = candidates.tolist()
            lapped_at: int | None = None  # where to go on from when lapped after the first chunk
            for first in range(0, len(seqs) or 1, DECODE_CHUNK):
                chunk = seqs[first : first + DECODE_CHUNK]
                if first:
                    ring.yield_to_writer()  # between chunks too: a chunk's decode is ~1-2 ms at most
                got, lost = ring.read_many(chunk)
                if not first and (lost or ring.oldest_seq > seq):
                    # lapped while we tested or copied: the columns may have been a newer entry's; the
                    # top of the loop reports what was lost from ``seq`` on and goes on from the oldest
                    break
                if lost:  # the first chunk proved the columns right; later ones lost these entries
                    lapped_at = chunk[0]
                    break
                done, sent = yield from _emit(got, since_ns, until_ns, predicate, limit, sent)
                if done:
                    return
            else:
                if stop_at is not None:
                    return
                seq = hi
                continue
            if lapped_at is not None:
                seq = lapped_at
            continue
        got, lost = ring.read_many(plan.slow)
        if lost or ring.oldest_seq > seq:
            # lapped while we tested or copied: the columns may have been a newer entry's; the
            # top of the loop reports what was lost from ``seq`` on and goes on from the oldest
            continue
        taken = 0  # entries of ``got`` sent so far
        for start, stop_pos, fast in plan.runs():
            if not fast:
                last = int(candidates[stop_pos - 1])
                upto = taken
                while upto < len(got) and got[upto][0] <= last:
                    upto += 1
                done, sent = yield from _emit(got[taken:upto], since_ns, until_ns, predicate, limit, sent)
                taken = upto
                if done:
                    return
                continue
            done = False
            if until_ns is not None:
                late = np.flatnonzero(plan.times[start:stop_pos] > until_ns)
                if len(late):  # the first flow newer than ``until`` ends the stream
                    stop_pos, done = start + int(late[0]), True
            if limit and stop_pos - start >= limit - sent:
                stop_pos, done = start + limit - sent, True
            part = start
            while part < stop_pos:  # handoffs of ~64 KiB, as framed_stream's
                # a relay's batches: runs up to INDEXED_CHUNK, after as many sent (an early first batch)
                step = min(INDEXED_CHUNK, max(FRAMES_CHUNK, sent)) if timed else FRAMES_CHUNK
                part_end = min(stop_pos, part + step)
                if timed:  # for a batch that copies them anyway: no Frames of their own
                    yield (plan.frames(part, part_end), plan.times[part:part_end], plan.sizes(part, part_end))
                else:
                    framed = Frames(plan.frames(part, part_end))
                    framed.messages = part_end - part
                    yield framed
                sent += part_end - part
                part = part_end
            if done:
                return
        if stop_at is not None:
            return
        seq = hi
        if timed:  # the next scan takes a while: a relay's batch goes out now (see get_flows_indexed)
            yield None


def _gather_more(ring: Ring, want: int, stop: threading.Event | None) -> None:
    """Wait until entry ``want - 1`` exists, for at most COALESCE_S, and only while the writer keeps
    writing (a wait of a whole COALESCE_S without a write ends it)."""
    deadline = time.monotonic() + COALESCE_S
    while ring.next_seq < want and not (stop is not None and stop.is_set()):
        left = deadline - time.monotonic()
        if left <= 0 or not ring.wait(ring.next_seq, left):
            return


def _emit(
    got: list[tuple[int, RingEntry]],
    since_ns: int | None,
    until_ns: int | None,
    predicate: Predicate | None,
    limit: int,
    sent: int,
) -> Generator[RingEntry, None, tuple[bool, int]]:
    """Yield the entries of ``got`` that the request selects; returns ``(stream over, sent)``."""
    for _, entry in got:
        if "lost_events" not in entry.response:
            if since_ns is not None and entry.time_ns < since_ns:
                continue
            if until_ns is not None and entry.time_ns > until_ns:
                return True, sent
            if predicate is not None and not predicate(entry.response):
                continue
            sent += 1
        yield entry
        if limit and sent >= limit:
            return True, sent
    return False, sent


def _candidates(
    ring: Ring,
    lo: int,
    hi: int,
    since_ns: int | None,
    until_ns: int | None,
    column_filter: ColumnFilter | None,
) -> tuple[np.ndarray, int | None]:
    """Sequences in ``lo .. hi-1`` worth decoding (ascending, int64), and the sequence where
    ``until`` ends the stream among the raw samples dropped here (None if it does not)."""
    if column_filter is None and since_ns is None and until_ns is None:
        return np.arange(lo, hi, dtype=np.int64), None
    slots = ring.slots(lo, hi)
    raw = ring.kind[slots] != KIND_DECODED  # flows not decoded yet: their time is in the column
    keep = np.ones(len(slots), dtype=bool)
    times = ring.time[slots]
    if since_ns is not None:
        keep &= ~raw | (times >= since_ns)
    stop_at = None
    if until_ns is not None:
        late = np.flatnonzero(raw & keep & (times > until_ns))
        if len(late):  # the first raw flow newer than ``until`` ends the stream (decoded or not)
            stop_at = lo + int(late[0])
            keep[late[0] + 1 :] = False
    if column_filter is not None:
        passing = column_filter(ring, slots)
        if stop_at is not None:
            passing[stop_at - lo] = True  # decoded and tested by the caller, who stops there
        keep &= passing
    return np.flatnonzero(keep) + lo, stop_at


def _rewind(
    ring: Ring,
    number: int,
    predicate: Predicate | None,
    until_ns: int | None,
    column_filter: ColumnFilter | None = None,
) -> int:
    """Sequence number from which the newest ``number`` matching entries follow (oldest when 0)."""
    oldest = ring.oldest_seq
    if number == 0:
        return oldest
    seq = ring.next_seq
    if number >= seq - oldest:  # no more matches than entries: all of them (``--all``)
        return oldest
    count = 0
    while seq > oldest:
        lo = max(oldest, seq - SCAN_BATCH)
        slots = ring.slots(lo, seq)
        raw = ring.kind[slots] != KIND_DECODED
        keep = np.ones(len(slots), dtype=bool)
        if until_ns is not None:
            keep &= ~raw | (ring.time[slots] <= until_ns)
        if column_filter is not None:
            keep &= column_filter(ring, slots)
        if predicate is None and until_ns is None:
            # nothing to decode: undecoded records are flows; decoded entries may be LostEvents
            objs = ring._objs
            matching = [
                bool(is_raw) or "lost_events" not in objs[slot].response
                for slot, is_raw, wanted in zip(slots.tolist(), raw.tolist(), keep.tolist(), strict=True)
                if wanted
            ]
            positions = (np.flatnonzero(keep) + lo).tolist()
            got = [(s, m) for s, m in zip(positions, matching, strict=True)]
        else:
            entries, lost = ring.read_many((np.flatnonzero(keep) + lo).tolist())
            if lost:  # lapped while rewinding: start at the oldest entry still there
                return ring.oldest_seq
            got = []
            for s, entry in entries:
                ok = "lost_events" not in entry.response
                if ok and until_ns is not None and entry.time_ns > until_ns:
                    ok = False
                if ok and predicate is not None and not predicate(entry.response):
                    ok = False
                got.append((s, ok))
        for s, ok in reversed(got):
            if ok:
                count += 1
                if count >= number:
                    return s
        seq = lo
    return max(oldest, ring.oldest_seq)


def _length_prefixed(wire: bytes) -> bytes:
    """``wire`` as one ``bytes`` field number 1 (tag, varint length, payload)."""
    n = len(wire)
    head = bytearray(b"\x0a")
    while n >= 0x80:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + wire


def batched(items: Iterator[bytes], frame: Callable[[bytes], bytes] | None) -> Iterator[bytes]:
    """Group a stream with idle markers (``b""``) into messages of up to BATCH_MAX items.

    A batch goes out when full or at an idle marker, so a caught-up follower gets every item at once.
    ``frame`` wraps each item (e.g. as a length-prefixed protobuf field); None joins items as they are.
    """
    batch: list[bytes] = []
    for item in items:
        if item:
            batch.append(frame(item) if frame is not None else item)
            if len(batch) < BATCH_MAX:
                continue
        if batch:
            yield b"".join(batch)
            batch.clear()
    if batch:
        yield b"".join(batch)


def flows_on_wire(responses: Iterator[Any], framed: bool) -> Iterator[bytes | FrameViews]:
    """The standard GetFlows stream's messages as the server hands them to its transport.

    ``responses`` are serialized GetFlowsResponses (with ``b""`` idle markers when ``framed``). On
    our h2 transport (``framed``) they go out as length-prefixed runs (one handoff for up to 64 KiB
    of messages, flushed whenever the reader catches up); on grpcio one message at a time.
    """
    if framed:
        from hubblepy.observer.transport import framed_stream

        yield from framed_stream(responses)
    else:
        yield from responses


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    context.abort(code, message)


class NodeServices:
    """The node's observer.Observer and peer.Peer services, as gRPC generic handlers."""

    def __init__(
        self,
        observer: Observer,
        self_peer: dict[str, Any],
        extra_peers: list[dict[str, Any]],
        stop: threading.Event,
        address: str = "",
        tls_enabled: bool = False,
        framed: bool = False,
    ) -> None:
        """``framed``: hosted on :class:`~hubblepy.observer.transport.GrpcServer`, so GetFlows may
        hand over many messages at once (:func:`flows_on_wire`)."""
        self.framed = framed
        self.observer = observer
        self.self_peer = self_peer
        self.extra_peers = extra_peers
        self.stop = stop
        self.address = address
        self.tls_enabled = tls_enabled

    # -- observer.Observer ----------------------------------------------------------------------
    def get_flows(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes | FrameViews]:
        stream = self._flow_stream(request, context, idle_marker=self.framed, templates=self.framed)
        yield from flows_on_wire(stream, self.framed)

    def _flow_stream(
        self,
        request: Any,
        context: grpc.ServicerContext,
        idle_marker: bool,
        as_json: bool = False,
        templates: bool = False,
        timed: bool = False,
    ) -> Iterator[Any]:
        """The request's responses; ``templates``: raw samples may come as framed runs (Frames)
        when the request has no filter and no field mask (see :mod:`~hubblepy.observer.wiretemplates`)."""
        if request.first and request.follow:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "first cannot be specified with follow")
        try:
            predicate = compile_request_filters(request)
        except BadRequest as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        column_filter = compile_request_column_filter(request)
        mask = list(request.field_mask.paths) if request.HasField("field_mask") else None
        encoder = ResponseEncoder(observer_pb2.GetFlowsResponse, mask)
        frames = exact = None
        if templates and mask is None and not as_json:
            exact = compile_request_exact_filter(request)
            frames = flow_templates(self.observer, predicate, column_filter, exact)
        context.send_initial_metadata((("hubble-server-version", self.observer.version),))
        yield from stream_ring(
            self.observer.flows,
            request,
            context.is_active,
            encoder.encode_json if as_json else encoder.encode,
            self.observer.node_name,
            predicate,
            self.stop,
            idle_marker=idle_marker,
            encode_lost=_lost_json if as_json else _lost_response,
            column_filter=column_filter,
            frames=frames,
            exact=exact,
            timed=timed,
        )

    def get_flows_batched(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        """hubblepy extension for the relay: GetFlows with up to BATCH_MAX responses per message.

        Each message is ``repeated bytes responses = 1`` of serialized GetFlowsResponse; a batch
        is sent when full or when the reader has caught up (so follow mode adds no delay).
        """
        yield from batched(self._flow_stream(request, context, idle_marker=True), _length_prefixed)

    def get_flows_indexed(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes | FrameViews]:
        """hubblepy extension for the relay: GetFlows as indexed batches (framed responses with each
        one's time and kind beside them, see :mod:`~hubblepy.observer.indexed`), wire templates
        included as for a direct client. A batch is sent at its size (INDEXED_FLUSH_BYTES, growing
        with the stream), at the end of a templated scan (the next one takes a while) or when the
        reader has caught up (so follow mode adds no delay)."""
        batcher = IndexedBatcher()
        stream = self._flow_stream(request, context, idle_marker=True, templates=True, timed=True)
        framed = self.framed
        if framed:  # on our h2 transport: the batch's buffers go out as they are (no joined copy)
            from hubblepy.observer.transport import FrameViews
        flush_at = INDEXED_FLUSH_BYTES
        sent = 0
        for item in stream:
            if type(item) is tuple:
                batcher.add_frames(*item)
            elif item:
                batcher.add(item)
            if item and batcher.size < flush_at:
                continue
            if len(batcher):
                sent += batcher.size
                flush_at = min(INDEXED_MAX_BYTES, max(INDEXED_FLUSH_BYTES, sent >> INDEXED_RAMP))
                yield FrameViews(batcher.buffers(framed=True)) if framed else batcher.message()
        if len(batcher):
            yield FrameViews(batcher.buffers(framed=True)) if framed else batcher.message()

    def get_flows_json(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        """hubblepy extension: GetFlows as batches of canonical JSON lines (``-o json`` bytes).

        Our CLI and relay use it to skip protobuf decoding and re-encoding; each entry's line is
        built once and cached in the ring.
        """
        yield from batched(self._flow_stream(request, context, idle_marker=True, as_json=True), None)

    def _events(self, ring: Ring, message_class: type, request: Any, context: grpc.ServicerContext):
        if request.first and request.follow:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "first cannot be specified with follow")
        encoder = ResponseEncoder(message_class)
        yield from stream_ring(
            ring, request, context.is_active, encoder.encode, self.observer.node_name, None, self.stop
        )

    def get_agent_events(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from self._events(
            self.observer.agent_events, observer_pb2.GetAgentEventsResponse, request, context
        )

    def get_debug_events(self, request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from self._events(
            self.observer.debug_events, observer_pb2.GetDebugEventsResponse, request, context
        )

    def server_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = self.observer.status()
        resp = observer_pb2.ServerStatusResponse(
            num_flows=int(status["num_flows"]),
            max_flows=int(status["max_flows"]),
            seen_flows=int(status["seen_flows"]),
            uptime_ns=int(status["uptime_ns"]),
            version=status["version"],
            flows_rate=status["flows_rate"],
        )
        context.set_trailing_metadata(((LOST_EVENTS_METADATA, format_lost_counts(status)),))
        return resp

    def get_nodes(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = self.observer.status()
        node = observer_pb2.Node(
            name=self.observer.node_name,
            version=status["version"],
            address=self.address,
            state=relay_pb2.NODE_CONNECTED,
            uptime_ns=int(status["uptime_ns"]),
            num_flows=int(status["num_flows"]),
            max_flows=int(status["max_flows"]),
            seen_flows=int(status["seen_flows"]),
        )
        node.tls.enabled = self.tls_enabled
        if self.tls_enabled and self.self_peer.get("tls_server_name"):
            node.tls.server_name = self.self_peer["tls_server_name"]
        return observer_pb2.GetNodesResponse(nodes=[node])

    def get_namespaces(self, request: Any, context: grpc.ServicerContext) -> Any:
        return observer_pb2.GetNamespacesResponse(
            namespaces=[observer_pb2.Namespace(**ns) for ns in self.observer.namespaces()]
        )

    # -- peer.Peer ------------------------------------------------------------------------------
    def notify(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for peer in [self.self_peer, *self.extra_peers]:
            note = peer_pb2.ChangeNotification(
                name=peer["name"], address=peer["address"], type=peer_pb2.PEER_ADDED
            )
            if peer.get("tls_server_name"):
                note.tls.server_name = peer["tls_server_name"]
            yield note
        while context.is_active() and not self.stop.is_set():
            self.stop.wait(FOLLOW_POLL_S)

    # -- registration ---------------------------------------------------------------------------
    def handlers(self) -> list[grpc.GenericRpcHandler]:
        o = observer_pb2
        observer_methods = observer_method_handlers(self)
        peer_methods = {
            "Notify": grpc.unary_stream_rpc_method_handler(
                self.notify,
                request_deserializer=peer_pb2.NotifyRequest.FromString,
                response_serializer=peer_pb2.ChangeNotification.SerializeToString,
            )
        }
        batch_methods = {
            "GetFlows": grpc.unary_stream_rpc_method_handler(
                self.get_flows_batched, request_deserializer=o.GetFlowsRequest.FromString
            ),
            "GetFlowsJSON": grpc.unary_stream_rpc_method_handler(
                self.get_flows_json, request_deserializer=o.GetFlowsRequest.FromString
            ),
            "GetFlowsIndexed": grpc.unary_stream_rpc_method_handler(
                self.get_flows_indexed, request_deserializer=o.GetFlowsRequest.FromString
            ),
        }
        return [
            grpc.method_handlers_generic_handler(OBSERVER_SERVICE, observer_methods),
            grpc.method_handlers_generic_handler(BATCH_SERVICE, batch_methods),
            grpc.method_handlers_generic_handler(PEER_SERVICE, peer_methods),
        ]


def observer_method_handlers(service: Any) -> dict[str, grpc.RpcMethodHandler]:
    """The ``observer.Observer`` methods of ``service`` (a node's or the relay's), by RPC name.

    ``service`` provides ``get_flows``, ``get_agent_events``, ``get_debug_events``, ``get_nodes``,
    ``get_namespaces`` and ``server_status``. Streams return already serialized responses.
    """
    o = observer_pb2
    return {
        "GetFlows": grpc.unary_stream_rpc_method_handler(
            service.get_flows, request_deserializer=o.GetFlowsRequest.FromString
        ),
        "GetAgentEvents": grpc.unary_stream_rpc_method_handler(
            service.get_agent_events, request_deserializer=o.GetAgentEventsRequest.FromString
        ),
        "GetDebugEvents": grpc.unary_stream_rpc_method_handler(
            service.get_debug_events, request_deserializer=o.GetDebugEventsRequest.FromString
        ),
        "GetNodes": grpc.unary_unary_rpc_method_handler(
            service.get_nodes,
            request_deserializer=o.GetNodesRequest.FromString,
            response_serializer=o.GetNodesResponse.SerializeToString,
        ),
        "GetNamespaces": grpc.unary_unary_rpc_method_handler(
            service.get_namespaces,
            request_deserializer=o.GetNamespacesRequest.FromString,
            response_serializer=o.GetNamespacesResponse.SerializeToString,
        ),
        "ServerStatus": grpc.unary_unary_rpc_method_handler(
            service.server_status,
            request_deserializer=o.ServerStatusRequest.FromString,
            response_serializer=o.ServerStatusResponse.SerializeToString,
        ),
    }
