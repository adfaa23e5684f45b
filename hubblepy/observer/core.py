"""The node's event store: flow, agent-event and debug-event rings plus the counters behind ServerStatus.

:class:`Observer` is what flow sources publish into (see :mod:`hubblepy.observer.sources`) and what
the gRPC services read from. It stamps every event with this node's name, keeps the namespaces seen
in recent flows, and counts what it drops.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from hubblepy import __version__
from hubblepy.codec.timestamps import format_ns
from hubblepy.observer.ring import DEFAULT_CAPACITY, KIND_DECODED, Ring, RingEntry
from hubblepy.proxy.accesslog import LazyRecord

if TYPE_CHECKING:
    from hubblepy.monitor.reader import RecordBatch
    from hubblepy.observer.records import RecordDecoder

EVENTS_RING_CAPACITY = 1023
NAMESPACE_TTL_NS = 3600 * 1_000_000_000
FLOW_RATE_WINDOW_NS = 60 * 1_000_000_000
SERVER_VERSION = f"{__version__}+hubblepy"


def _l7_namespace_key(record: Any) -> Any:
    """What decides an access-log record's endpoints: the endpoints' IDs, identities and IPs."""
    if type(record) is LazyRecord:  # its template has the endpoints
        record = record.base
    if not isinstance(record, dict):
        return None
    src, dst = record.get("SourceEndpoint"), record.get("DestinationEndpoint")
    parts: list[Any] = ["l7"]
    for ep in (src, dst):
        if isinstance(ep, dict):
            parts += [ep.get("ID"), ep.get("Identity"), ep.get("IPv4"), ep.get("IPv6")]
    try:
        hash(tuple(parts))
    except TypeError:
        return None
    return tuple(parts)


class Observer:
    """Rings of events for one node, written by flow sources, read by the gRPC services."""

    def __init__(self, node_name: str, capacity: int = DEFAULT_CAPACITY) -> None:
        self.node_name = node_name
        self.flows = Ring(capacity)
        self.agent_events = Ring(EVENTS_RING_CAPACITY)
        self.debug_events = Ring(EVENTS_RING_CAPACITY)
        self.version = SERVER_VERSION
        self.started_ns = time.monotonic_ns()
        self.seen_flows = 0
        self._namespaces: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # serialises writers (sources may run in several threads)
        self._l7_template_namespace_keys: dict[Any, Any] = {}  # access-log template key -> namespace key
        self.lost_by_source: Counter[str] = Counter()  # lowercase flow.LostEventSource names
        self._flow_listeners: list[Callable[[Sequence[RingEntry]], None]] = []
        self._range_listeners: list[Callable[[Ring, int, int], None]] = []
        self._decoder: RecordDecoder | None = None
        # raw samples: (source identity, destination identity, endpoint) hash -> namespaces of its flows
        self._record_namespaces: dict[Any, tuple[tuple[str, str], ...]] = {}
        self._record_namespaces_snapshot = -1

    def add_flow_listener(self, listener: Callable[[Sequence[RingEntry]], None]) -> None:
        """Call ``listener(entries)`` with every batch of flow entries, after it is in the ring
        (metrics, exporter). Listeners run in the publishing thread: they must be quick."""
        self._flow_listeners.append(listener)

    def add_range_listener(self, listener: Callable[[Ring, int, int], None]) -> None:
        """Call ``listener(ring, start, stop)`` after every write of flow entries, with the sequence
        range just written (still readable): listeners read the ring's columns and decode only what
        they need (metrics). They run in the publishing thread, under the writers' lock."""
        self._range_listeners.append(listener)

    def _tell_listeners(self, first: int) -> None:
        """Hand the entries written since sequence ``first`` to the listeners (writers' lock held)."""
        ring = self.flows
        start, stop = max(first, ring.oldest_seq), ring.next_seq
        for range_listener in self._range_listeners:
            range_listener(ring, start, stop)
        if self._flow_listeners:
            entries = [entry for _, entry in ring.read_many(range(start, stop))[0]]
            for listener in self._flow_listeners:
                listener(entries)

    # -- EventSink: what flow sources call -------------------------------------------------------
    def publish_flows(self, flows: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Store flows given as ``(time_ns, canonical flow dict)``; the dict must carry ``time``."""
        node = self.node_name
        namespaces = self._namespaces
        seen_ns = time.time_ns()  # namespaces expire by when we saw them, not by flow time
        entries = []
        for time_ns, flow in flows:
            resp = {"flow": flow, "node_name": flow.get("node_name") or node}
            stamp = flow.get("time")
            if stamp:
                resp["time"] = stamp
            entries.append(RingEntry(time_ns, resp))
            src = flow.get("source")
            if src is not None and "namespace" in src:
                namespaces[(src.get("cluster_name", ""), src["namespace"])] = seen_ns
            dst = flow.get("destination")
            if dst is not None and "namespace" in dst:
                namespaces[(dst.get("cluster_name", ""), dst["namespace"])] = seen_ns
        with self._lock:
            self.seen_flows += len(entries)
            first = self.flows.next_seq
            self.flows.write_many(entries)
            for range_listener in self._range_listeners:
                range_listener(self.flows, max(first, self.flows.oldest_seq), self.flows.next_seq)
            for listener in self._flow_listeners:
                listener(entries)

    def use_parser(self, parser: Any) -> RecordDecoder:
        """Store raw datapath samples from now on (:meth:`publish_records`), decoded by ``parser``
        when read (the first parser given decodes everything, access-log records included).
        Returns the ring's decoder."""
        from hubblepy.observer.records import RecordDecoder

        if self._decoder is not None:  # one decoder per ring (its snapshot numbers are in the ring)
            return self._decoder
        decoder = RecordDecoder(parser, self.node_name)
        self._decoder = decoder
        self.flows.decoder = decoder
        return decoder

    def ingesting(self) -> AbstractContextManager[None]:
        """The flow ring's writer turn (:meth:`Ring.ingesting`): readers in this process wait."""
        return self.flows.ingesting()

    def publish_records(self, batch: RecordBatch, now_ns: int) -> int:
        """Store a batch of raw datapath samples received at ``now_ns``; returns how many are flows.

        Needs :meth:`use_parser` first. Samples that are not flow messages (debug messages, empty
        or unknown ones) go through the parser's per-sample path now; flows are decoded when read.
        Flow listeners get decoded entries (they make this path as costly as decoding up front);
        range listeners (metrics) get the sequence range and decode what they need.
        """
        from hubblepy.observer.records import header_columns

        decoder = self._decoder
        if decoder is None:
            raise RuntimeError("publish_records needs use_parser() first")
        if not len(batch.offsets):
            return 0
        cols, is_flow = header_columns(batch)
        if not is_flow.all():
            other = np.flatnonzero(~is_flow)
            data = batch.data
            odd = [
                (cpu, data[off : off + size])
                for cpu, off, size in zip(
                    batch.cpus[other].tolist(),
                    batch.offsets[other].tolist(),
                    batch.lengths[other].tolist(),
                    strict=True,
                )
            ]
            decoder.parser.capture_batch(odd, now_ns)  # debug events to their sink, errors counted
            cols = cols.take(is_flow)
        n = len(cols)
        if not n:
            return 0
        snapshot = decoder.snapshot_id()
        ring = self.flows
        with self._lock:
            first = ring.next_seq
            self.seen_flows += n
            ring.write_raw(batch.data, now_ns, cols, snapshot)
            if self._flow_listeners or self._range_listeners:
                self._tell_listeners(first)
        from hubblepy.observer.records import namespace_keys

        unique, index = np.unique(namespace_keys(cols.head), return_index=True)
        self._note_namespaces(unique.tolist(), index.tolist(), snapshot, first)
        self._prune_snapshots()
        return n

    def publish_l7(
        self,
        records: Sequence[Any],
        now_ns: int,
        seven: Any,
        keys: Sequence[Any] | None = None,
        correlations: Sequence[Any] | None = None,
    ) -> int:
        """Store access-log records (dicts) received at ``now_ns``, decoded when read.

        ``seven`` (a :class:`~hubblepy.parser.seven.SevenParser`) correlates each record with the
        ones before it now (X-Request-Id: a response's latency and trace ID), in arrival order;
        building the flow waits for a reader. ``keys`` (one per record, or None): records with the
        same key differ only in ``Timestamp`` and ``HTTP.Headers`` (the access log's templates), so
        what counts them (metrics) decodes one per key. ``correlations`` (one per record, or None):
        a record's correlation when its writer worked it out (then the record may be an
        :class:`~hubblepy.proxy.accesslog.LazyRecord`), None to correlate it here. Returns how many
        records were stored.
        """
        from hubblepy.observer.ring import KIND_L7

        if not records:
            return 0
        if self._decoder is None:
            self.use_parser(seven._parser)
        decoder = self._decoder
        assert decoder is not None
        correlate, keyed = seven.correlate, seven.correlate_keyed
        if keys is None:
            keys = [None] * len(records)
        given = correlations if correlations is not None else [None] * len(records)
        if correlations is not None and None not in correlations:  # rows: all correlated by the writer
            payloads = list(zip(records, correlations, keys, strict=True))
        else:
            payloads = [
                (
                    record,
                    c if c is not None else correlate(record) if key is None else keyed(record, key),
                    key,
                )
                for record, key, c in zip(records, keys, given, strict=True)
            ]
        snapshot = decoder.snapshot_id()
        ring = self.flows
        n = len(payloads)
        with self._lock:
            first = ring.next_seq
            self.seen_flows += n
            ring.write_records(KIND_L7, now_ns, payloads, snapshot)
            if self._flow_listeners or self._range_listeners:
                self._tell_listeners(first)
        unique: dict[Any, int] = {}
        by_template = self._l7_template_namespace_keys  # the records of one template share their endpoints
        if len(by_template) > 8192:
            by_template.clear()
        # the first record of each key (a dict built from the end keeps each key's first index)
        firsts = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
        for key, i in sorted(firsts.items(), key=itemgetter(1)):
            if key is None:
                for j in range(i, n):  # records without a key: each one's own
                    if keys[j] is None:
                        unique.setdefault(_l7_namespace_key(records[j]), j)
                continue
            found = by_template.get(key, by_template)
            if found is by_template:
                found = by_template[key] = _l7_namespace_key(records[i])
            if found not in unique:
                unique[found] = i
        self._note_namespaces(list(unique), list(unique.values()), snapshot, first)
        self._prune_snapshots()
        return n

    def _prune_snapshots(self) -> None:
        ring, decoder = self.flows, self._decoder
        oldest = ring.oldest_seq
        if decoder is not None and oldest < ring.next_seq:
            decoder.prune(int(ring.snapshot[oldest & ring.capacity]))

    def _note_namespaces(self, unique: list[Any], first: list[int], snapshot: int, first_seq: int) -> None:
        """Namespaces of a batch of undecoded records, from one decoded flow per key (a key stands
        for what decides the flow's endpoints: identities, endpoint id, ...)."""
        if snapshot != self._record_namespaces_snapshot:
            self._record_namespaces.clear()
            self._record_namespaces_snapshot = snapshot
        known = self._record_namespaces
        seen_ns = time.time_ns()
        namespaces = self._namespaces
        for key, index in zip(unique, first, strict=True):
            names = known.get(key)
            if names is None:
                entry, _ = self.flows.read(first_seq + index)
                names = ()
                if entry is not None and entry.flow is not None:
                    found = []
                    for side in ("source", "destination"):
                        ep = entry.flow.get(side)
                        if ep is not None and "namespace" in ep:
                            found.append((ep.get("cluster_name", ""), ep["namespace"]))
                    names = tuple(found)
                known[key] = names
            for name in names:
                namespaces[name] = seen_ns

    def publish_lost(self, source: str, count: int, cpu: int | None = None) -> None:
        """Record that ``count`` events were lost upstream of the ring (e.g. PERF_EVENT_RING_BUFFER)."""
        now = time.time_ns()
        lost: dict[str, Any] = {"source": source, "num_events_lost": str(count)}
        if cpu is not None:
            lost["cpu"] = cpu
        entry = RingEntry(now, {"lost_events": lost, "node_name": self.node_name, "time": format_ns(now)})
        with self._lock:
            self.lost_by_source[source.lower()] += count
            self.flows.write(entry)

    def publish_agent_event(self, time_ns: int, event: dict[str, Any]) -> None:
        """Store one canonical ``flow.AgentEvent`` dict."""
        resp = {"agent_event": event, "node_name": self.node_name, "time": format_ns(time_ns)}
        with self._lock:
            self.agent_events.write(RingEntry(time_ns, resp))

    def publish_debug_event(self, time_ns: int, event: dict[str, Any]) -> None:
        """Store one canonical ``flow.DebugEvent`` dict."""
        resp = {"debug_event": event, "node_name": self.node_name, "time": format_ns(time_ns)}
        with self._lock:
            self.debug_events.write(RingEntry(time_ns, resp))

    # -- status -------------------------------------------------------------------------------
    def uptime_ns(self) -> int:
        return time.monotonic_ns() - self.started_ns

    def flows_rate(self, now_ns: int | None = None) -> float:
        """Flows per second as upstream's node computes it, from the flow timestamps in the ring.

        Flows are counted from the newest back over the last minute. When the scan reaches the
        oldest entry of a ring that is full (older flows were overwritten), the rate is taken over
        the span the ring covers instead: from that oldest flow's time to now. An empty or
        unfilled ring is measured over the whole minute, even on a node up for less.
        """
        ring = self.flows
        now = time.time_ns() if now_ns is None else now_ns
        since = now - FLOW_RATE_WINDOW_NS
        nxt = ring.next_seq
        oldest = ring.oldest_seq
        slots = ring.slots(oldest, nxt)
        times = ring.time[slots]
        flows = ring.kind[slots] != KIND_DECODED
        decoded = np.flatnonzero(~flows)
        if len(decoded):
            objs = ring._objs
            flows[decoded] = [objs[slot].flow is not None for slot in slots[decoded].tolist()]
        if ring.oldest_seq != oldest:  # lapped while reading: the newest capacity entries are enough
            keep = np.arange(oldest, nxt) >= ring.oldest_seq
            times, flows = times[keep], flows[keep]
        # from the newest back: stop at the first flow older than the window
        flow_times = times[flows]
        recent = flow_times >= since
        stale = np.flatnonzero(~recent)
        count = len(flow_times) - (stale[-1] + 1) if len(stale) else len(flow_times)
        if not len(stale) and count and len(ring) >= ring.capacity:
            since = int(flow_times[0])  # read the complete ring: rate over the span it covers
        span_ns = now - since
        return count / (span_ns / 1e9) if span_ns > 0 else 0.0

    def status(self) -> dict[str, Any]:
        """Canonical ``observer.ServerStatusResponse`` dict, plus what was lost (``lost_perf_events``,
        ``ring_overwritten``, ``ring_readers_lost``: sent in the ServerStatus call's trailer)."""
        return {
            "num_flows": str(len(self.flows)),
            "max_flows": str(self.flows.capacity),
            "seen_flows": str(self.seen_flows),
            "uptime_ns": str(self.uptime_ns()),
            "version": self.version,
            "flows_rate": self.flows_rate(),
            "lost_perf_events": str(self.lost_by_source.get("perf_event_ring_buffer", 0)),
            "ring_overwritten": str(self.flows.overwritten),
            "ring_readers_lost": str(self.flows.readers_lost),
        }

    def namespaces(self) -> list[dict[str, str]]:
        """Namespaces seen in flows during the last hour, sorted by namespace then cluster."""
        horizon = time.time_ns() - NAMESPACE_TTL_NS
        live = [key for key, seen in list(self._namespaces.items()) if seen >= horizon]
        out = []
        for cluster, namespace in sorted(live, key=lambda k: (k[1], k[0])):
            item = {}
            if cluster:
                item["cluster"] = cluster
            item["namespace"] = namespace
            out.append(item)
        return out

    def close(self) -> None:
        for ring in (self.flows, self.agent_events, self.debug_events):
            ring.close()
