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
from typing import Any

from hubblepy import __version__
from hubblepy.codec.timestamps import format_ns
from hubblepy.observer.ring import DEFAULT_CAPACITY, Ring, RingEntry

EVENTS_RING_CAPACITY = 1023
NAMESPACE_TTL_NS = 3600 * 1_000_000_000
FLOW_RATE_WINDOW_NS = 60 * 1_000_000_000
SERVER_VERSION = f"{__version__}+hubblepy"


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
        self.lost_by_source: Counter[str] = Counter()  # lowercase flow.LostEventSource names
        self._flow_listeners: list[Callable[[Sequence[RingEntry]], None]] = []

    def add_flow_listener(self, listener: Callable[[Sequence[RingEntry]], None]) -> None:
        """Call ``listener(entries)`` with every batch of flow entries, after it is in the ring
        (metrics, exporter). Listeners run in the publishing thread: they must be quick."""
        self._flow_listeners.append(listener)

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
            self.flows.write_many(entries)
            for listener in self._flow_listeners:
                listener(entries)

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
        count = 0
        last_seen: int | None = None
        seq = ring.next_seq - 1
        oldest = ring.oldest_seq
        while True:
            if seq < oldest:
                if len(ring) >= ring.capacity and last_seen is not None:
                    since = last_seen  # read the complete ring: rate over the span it covers
                break
            entry, _ = ring.read(seq)
            if entry is None:
                break
            seq -= 1
            if entry.flow is None:
                continue
            if entry.time_ns < since:
                break
            last_seen = entry.time_ns
            count += 1
        span_ns = now - since
        return count / (span_ns / 1e9) if span_ns > 0 else 0.0

    def status(self) -> dict[str, Any]:
        """Canonical ``observer.ServerStatusResponse`` dict."""
        return {
            "num_flows": str(len(self.flows)),
            "max_flows": str(self.flows.capacity),
            "seen_flows": str(self.seen_flows),
            "uptime_ns": str(self.uptime_ns()),
            "version": self.version,
            "flows_rate": self.flows_rate(),
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
