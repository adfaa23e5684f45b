"""The node's metrics: the enabled flow families, fed in batches, and the node's own health.

:class:`FlowMetrics` is an observer range listener: :meth:`FlowMetrics.on_range` gets the sequence
range of each batch right after the observer wrote it to the ring. Raw datapath samples are grouped
by a key made of their header and packet bytes (:mod:`hubblepy.metrics.rawkeys`) and the resolver
snapshot, counted with ``numpy.unique``; one sample per key is decoded (and its flow remembered for
later batches), so a batch of known kinds of traffic decodes nothing. Decoded entries (replay), L7
records and samples without a key go the per-flow way, :meth:`FlowMetrics.process`: the flows are
grouped by a signature of the fields the enabled families read (:data:`COLUMNS`: verdict, ``id()``
of the event-type and endpoint dicts the parser shares between flows, L4 protocol, ports, ...),
built with C-level ``map`` and ``zip`` and counted with :class:`collections.Counter`. Either way
each family sees one representative flow per group with its count; flows of one group give every
family the same labels, so the counts are exact.

:class:`NodeHealthCollector` is read only when Prometheus scrapes: it costs nothing per flow.
It serves ``hubble_lost_events_total{source}`` (upstream's name and source values) and the
hubblepy additions ``hubble_ring_flows``, ``hubble_ring_capacity``, ``hubble_seen_flows_total``
and, in the lab node, ``hubble_parser_errors_total{reason}``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import contains, itemgetter, not_
from time import thread_time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hubblepy.metrics.config import MetricSpec
from hubblepy.metrics.handlers import DEFAULT_MAX_SERIES, HANDLERS, Handler, Series
from hubblepy.metrics.rawkeys import group_keys, sample_keys
from hubblepy.observer.ring import KIND_DECODED, KIND_L7, KIND_RAW, Ring

_CORRELATION_OF, _KEY_OF = itemgetter(1), itemgetter(2)  # of an L7 slot's (record, correlation, key)
MIN_KEYED_BATCH = 32  # fewer raw samples than this are decoded one by one (cheaper than the keys)
MAX_CACHED_KEYS = 8192  # distinct sample keys whose flows are remembered across batches
LOST_SOURCES = ("perf_event_ring_buffer", "observer_events_queue", "hubble_ring_buffer")
_EMPTY: dict[str, Any] = {}
_NO_IP = {"ipVersion": "<no IP>"}  # tells "no IP field" apart from "IP without a version"
_get = dict.get


def _col(dicts: Iterable[Any], key: str, default: Any = None) -> Iterator[Any]:
    return map(_get, dicts, repeat(key), repeat(default))


class _Batch:
    """Lazily built shared intermediate columns of one batch."""

    def __init__(self, flows: list[dict[str, Any]]) -> None:
        self.flows = flows
        self._l4: list[Any] | None = None
        self._ip: list[Any] | None = None

    @property
    def l4(self) -> list[Any]:
        if self._l4 is None:
            self._l4 = list(_col(self.flows, "l4", _EMPTY))
        return self._l4

    @property
    def ip(self) -> list[Any]:
        if self._ip is None:
            self._ip = list(_col(self.flows, "IP", _NO_IP))
        return self._ip


def _l4_signature(l4: dict[str, Any]) -> tuple:
    """One column for the L4 fields families read: protocol, destination port, TCP flags, ICMP type."""
    for proto, sub in l4.items():
        if proto == "TCP":
            return proto, sub.get("destination_port"), id(sub.get("flags"))
        if proto in ("ICMPv4", "ICMPv6"):
            return proto, sub.get("type"), sub.get("code")
        return proto, sub.get("destination_port")
    return ()


# Signature columns: name -> the iterators (one value per flow) a family's labels depend on.
COLUMNS: dict[str, Callable[[_Batch], list[Iterator[Any]]]] = {
    "verdict": lambda b: [_col(b.flows, "verdict")],
    "event_type": lambda b: [map(id, _col(b.flows, "event_type"))],
    "drop_reason": lambda b: [_col(b.flows, "drop_reason_desc")],
    "direction": lambda b: [_col(b.flows, "traffic_direction")],
    "match": lambda b: [_col(b.flows, "policy_match_type")],
    "is_reply": lambda b: [_col(b.flows, "is_reply")],
    "source": lambda b: [map(id, _col(b.flows, "source"))],
    "destination": lambda b: [map(id, _col(b.flows, "destination"))],
    "l4_proto": lambda b: [map(next, map(iter, b.l4), repeat(None))],
    "l4": lambda b: [map(_l4_signature, b.l4)],  # replaces l4_proto, tcp_flags, dport and icmp
    "ip_version": lambda b: [_col(b.ip, "ipVersion")],
    "ips": lambda b: [_col(b.ip, "source"), _col(b.ip, "destination")],
    "names": lambda b: [map(id, _col(b.flows, "source_names")), map(id, _col(b.flows, "destination_names"))],
}


class FlowMetrics:
    """The enabled metric families of one node, registered in ``registry``."""

    def __init__(
        self,
        specs: Sequence[MetricSpec],
        registry: CollectorRegistry,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        if max_series < 1:
            raise ValueError("--metrics-max-series must be at least 1")
        self.registry = registry
        self.max_series = max_series
        self._overflow = PromCounter(
            "metrics_series_overflow_total",
            "Flows counted in an overflow series because a family reached --metrics-max-series",
            ["metric"],
            namespace="hubble",
            registry=registry,
        )
        self._errors = PromCounter(
            "metrics_errors_total",
            "Batches a metric family failed to count",
            ["metric"],
            namespace="hubble",
            registry=registry,
        )
        self.handlers: list[Handler] = [HANDLERS[s.name](s, registry, self) for s in specs]
        needs = set().union(*(h.needs for h in self.handlers)) if self.handlers else set()
        if needs & {"tcp_flags", "dport", "icmp"}:
            needs = (needs - {"l4_proto", "tcp_flags", "dport", "icmp"}) | {"l4"}
        self.columns = sorted(needs)
        self._flow_by_key: dict[bytes, dict[str, Any] | None] = {}  # see on_range
        self._cached_snapshot = -1  # resolver snapshot of the keys in _flow_by_key
        # (snapshot, access-log template key) -> its flow without latency and trace (see _l7_groups)
        self._l7_by_key: dict[tuple[int, Any], dict[str, Any] | None] = {}
        self._l7_plans: dict[tuple[int, Any], tuple[tuple[Series, tuple, int], ...]] = {}  # see _count
        self._interned_plans: dict[tuple, tuple] = {}  # equal plans and signatures: one object each
        self._l7_signatures: dict[tuple[int, Any], tuple] = {}  # see _l7_groups
        self.count_cpu_s = 0.0  # thread CPU time spent in on_range (benchmarks)

    def overflow_of(self, name: str) -> Callable[[int], None]:
        return self._overflow.labels(name).inc

    def process(self, flows: list[dict[str, Any]]) -> None:
        """Count one batch of canonical flow dicts in every enabled family."""
        if not flows or not self.handlers:
            return
        self._count(self._groups(flows))

    def _groups(self, flows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
        """The batch as (representative flow, how many flows count like it); L7 flows one by one."""
        has_l7 = list(map(contains, flows, repeat("l7")))
        l7: list[dict[str, Any]] = []
        if any(has_l7):
            l7 = list(compress(flows, has_l7))
            flows = list(compress(flows, map(not_, has_l7)))
        groups: list[tuple[dict[str, Any], int]] = []
        if flows:
            batch = _Batch(flows)
            columns = [it for name in self.columns for it in COLUMNS[name](batch)]
            signatures = list(zip(*columns, strict=True)) if columns else [()] * len(flows)
            representative = dict(zip(signatures, flows, strict=True))
            groups = [(representative[sig], n) for sig, n in Counter(signatures).items()]
        groups.extend((f, 1) for f in l7)
        return groups

    def _count(
        self,
        groups: list[tuple[dict[str, Any], int]],
        templated: Sequence[tuple[Any, dict[str, Any], list]] = (),
    ) -> None:
        """Count ``groups`` (flow, how many) and ``templated`` (key, flow, the (latency, trace ID) of
        each flow like it: see _l7_groups) in every family. A family that does not read latency or
        trace ID counts a key's flows by replaying what it counted for the first one."""
        plans = self._l7_plans
        for index, handler in enumerate(self.handlers):
            acc: dict[Series, Counter] = defaultdict(Counter)
            try:
                for flow, n in groups:
                    handler.count(flow, n, acc)
                correlated = getattr(handler, "count_correlated", None)
                for full, flow, correlations in templated:  # merged by signature (_l7_groups)
                    if correlated is not None:  # the families that read latency or trace ID
                        correlated(flow, correlations, full)
                        continue
                    # what one flow of this key adds, replayed for all of them
                    plan = plans.get((index, full))
                    if plan is None:
                        plan = plans[(index, full)] = self._plan_of(handler, flow)
                    n = len(correlations)
                    for series, label_values, m in plan:
                        acc[series][label_values] += m * n
            except Exception:  # a malformed flow must not stop the publisher
                self._errors.labels(handler.spec.name).inc()
                continue
            for series, counts in acc.items():
                series.add(counts)

    def _plan_of(self, handler: Any, flow: dict[str, Any]) -> tuple[tuple[Series, tuple, int], ...]:
        """What counting ``flow`` once adds in ``handler``'s family, as one shared (interned) plan."""
        one: dict[Series, Counter] = defaultdict(Counter)
        handler.count(flow, 1, one)
        plan = tuple((series, key, m) for series, counts in one.items() for key, m in counts.items())
        return self._interned_plans.setdefault(plan, plan)

    def on_entries(self, entries: Sequence[Any]) -> None:
        """Observer flow listener: one batch of ring entries (``.flow`` is the flow dict)."""
        self.process([e.flow for e in entries if e.flow is not None])

    def on_range(self, ring: Ring, start: int, stop: int) -> None:
        """Observer range listener: count ring entries ``start .. stop-1`` (just written).

        Raw datapath samples are grouped by :func:`~hubblepy.metrics.rawkeys.sample_keys` and the
        resolver snapshot; only one sample per new key is decoded (the flow is remembered for
        later batches). Decoded entries, L7 records and samples without a key go the per-flow way.
        """
        if not self.handlers or stop <= start:
            return
        t0 = thread_time()
        slots = ring.slots(start, stop)
        kinds = ring.kind[slots]
        if kinds[0] == KIND_L7 and self._on_l7_range(ring, start, stop, slots, kinds):
            self.count_cpu_s += thread_time() - t0
            return
        raw = kinds == KIND_RAW
        groups: list[tuple[dict[str, Any], int]] = []
        flows: list[dict[str, Any]] = []
        decode: list[int] = []  # sequences decoded one by one
        objs = ring._objs
        raw_at = np.flatnonzero(raw)
        if len(raw_at) >= MIN_KEYED_BATCH:
            decode += self._raw_groups(ring, slots[raw_at], raw_at + start, groups)
        elif len(raw_at):  # a few samples: decoding them costs less than building keys
            decode += (raw_at + start).tolist()
        other = np.flatnonzero(~raw)
        keyed: list[tuple[int, int]] = []  # (sequence, slot) of templated access-log records
        if len(other):
            for pos, slot, kind in zip(
                other.tolist(), slots[other].tolist(), kinds[other].tolist(), strict=True
            ):
                if kind == KIND_DECODED:
                    flow = objs[slot].flow
                    if flow is not None:
                        flows.append(flow)
                elif kind == KIND_L7 and objs[slot][2] is not None and objs[slot][1] is not None:
                    keyed.append((start + pos, slot))
                else:
                    decode.append(start + pos)
        templated = self._l7_groups(ring, keyed) if keyed else []
        if decode:
            decode.sort()
            flows += [e.flow for _, e in ring.read_many(decode)[0] if e.flow is not None]
        if flows:
            groups += self._groups(flows)
        if groups or templated:
            self._count(groups, templated)
        self.count_cpu_s += thread_time() - t0

    def _on_l7_range(self, ring: Ring, start: int, stop: int, slots: np.ndarray, kinds: np.ndarray) -> bool:
        """Counts the range when it is what ``Observer.publish_l7`` writes (templated access-log
        records of one resolver snapshot, all correlated): their payloads are taken as slices of
        the ring's objects and grouped by key without an index per record. False when the range
        is anything else (then :meth:`on_range` goes record by record)."""
        snapshots = ring.snapshot[slots]
        if not (kinds == KIND_L7).all() or snapshots.min() != snapshots.max():
            return False
        objs = ring._objs
        first, last = int(slots[0]), int(slots[-1])
        payloads = objs[first : last + 1] if first <= last else objs[first:] + objs[: last + 1]
        keys = list(map(_KEY_OF, payloads))
        correlations = list(map(_CORRELATION_OF, payloads))
        if None in keys or None in correlations:
            return False
        snap = int(snapshots[0])
        by_key: dict[tuple[int, Any], list[tuple[int, str]]] = {}
        for key, correlation in zip(keys, correlations, strict=True):
            found = by_key.get(key)
            if found is None:
                by_key[key] = [correlation]
            else:
                found.append(correlation)
        # each key's first record (a dict built from the end keeps the first sequence of a key)
        firsts = dict(zip(reversed(keys), range(stop - 1, start - 1, -1), strict=True))
        grouped = {(snap, key): found for key, found in by_key.items()}
        templated = self._l7_templated(ring, grouped, {(snap, key): seq for key, seq in firsts.items()})
        if templated:
            self._count([], templated)
        return True

    def _l7_groups(self, ring: Ring, keyed: list[tuple[int, int]]) -> list[tuple[Any, dict[str, Any], list]]:
        """Templated access-log records (``Observer.publish_l7`` with keys) as (flow without latency
        and trace ID, the records' ``(latency, trace ID)``): one record per (snapshot, key) is
        decoded; the others differ from it only in fields no family reads but those two."""
        objs, snapshots = ring._objs, ring.snapshot
        by_key: dict[tuple[int, Any], list[tuple[int, str]]] = {}
        firsts: dict[tuple[int, Any], int] = {}
        snaps = snapshots[[slot for _, slot in keyed]].tolist()
        for (seq, slot), snap in zip(keyed, snaps, strict=True):
            _, correlation, key = objs[slot]
            full = (snap, key)
            found = by_key.get(full)
            if found is None:
                by_key[full] = [correlation]
                firsts[full] = seq
            else:
                found.append(correlation)
        return self._l7_templated(ring, by_key, firsts)

    def _l7_templated(
        self,
        ring: Ring,
        by_key: dict[tuple[int, Any], list[tuple[int, str]]],
        firsts: dict[tuple[int, Any], int],
    ) -> list[tuple[Any, dict[str, Any], list]]:
        """:meth:`_l7_groups` from the records' correlations by (snapshot, key) and the sequence of
        each key's first record (decoded when the key is new)."""
        cache = self._l7_by_key
        if len(cache) > MAX_CACHED_KEYS:
            cache.clear()
            self._l7_plans.clear()
            self._interned_plans.clear()
            self._l7_signatures.clear()
        missing = {full: seq for full, seq in firsts.items() if full not in cache}
        if missing:
            got = dict(ring.read_many(sorted(missing.values()))[0])
            for full, seq in missing.items():
                entry = got.get(seq)
                cache[full] = _bare_l7(entry.flow) if entry is not None and entry.flow is not None else None
        # keys that every family counts alike (a client's connections differ only in the source
        # port) are merged: the families then work once per kind of record, not once per connection
        signatures = self._l7_signatures
        merged: dict[int, tuple[Any, dict[str, Any], list]] = {}
        for full, correlations in by_key.items():
            bare = cache.get(full)
            if bare is None:
                continue
            signature = signatures.get(full)
            if signature is None:
                signature = signatures[full] = self._signature(full, bare)
            group = merged.get(id(signature))
            if group is None:
                merged[id(signature)] = (full, bare, correlations)
            else:
                group[2].extend(correlations)
        return list(merged.values())

    def _signature(self, full: Any, bare: dict[str, Any]) -> tuple:
        """What each family counts for a flow of key ``full`` (an interned tuple: equal signatures
        are the same object). A flow some family fails on gets a signature of its own."""
        parts: list[Any] = []
        for index, handler in enumerate(self.handlers):
            try:
                labels = getattr(handler, "labels_of", None)
                if labels is not None:
                    parts.append(labels(bare))
                    continue
                plan = self._l7_plans.get((index, full))
                if plan is None:
                    plan = self._l7_plans[(index, full)] = self._plan_of(handler, bare)
                parts.append(plan)
            except Exception:
                return (object(),)
        signature = tuple(parts)
        return self._interned_plans.setdefault(("signature", signature), signature)

    def _raw_groups(
        self, ring: Ring, slots: np.ndarray, seqs: np.ndarray, groups: list[tuple[dict[str, Any], int]]
    ) -> list[int]:
        """Add (flow, count) per key of the raw samples at ``slots``; returns the sequences to
        decode one by one (samples without a key)."""
        objs = ring._objs
        decoder = ring.decoder
        pv_layout = getattr(getattr(decoder, "parser", None), "_pv_layout", None)
        snaps = ring.snapshot[slots]
        newest = int(snaps[-1])
        if len(self._flow_by_key) > MAX_CACHED_KEYS or newest != self._cached_snapshot:
            self._flow_by_key.clear()  # full, or the resolver moved on: older keys will not recur
            self._cached_snapshot = newest
        cache = self._flow_by_key
        singles: list[int] = []
        # samples of one batch share their buffer and snapshot: split where either changes
        slot_list = slots.tolist()
        buffers = np.fromiter(
            map(id, map(objs.__getitem__, slot_list)), dtype=np.uint64, count=len(slot_list)
        )
        cuts = np.flatnonzero((buffers[1:] != buffers[:-1]) | (snaps[1:] != snaps[:-1])) + 1
        bounds = [0, *cuts.tolist(), len(slot_list)]
        missing: dict[bytes, int] = {}  # key -> sequence of a sample to decode
        pending: list[tuple[bytes, int]] = []
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            part = slots[lo:hi]
            keys, eligible = sample_keys(objs[slot_list[lo]], ring.offset[part], ring.length[part], pv_layout)
            if not eligible.all():
                singles += seqs[lo:hi][~eligible].tolist()
            index = np.flatnonzero(eligible)
            if not len(index):
                continue
            rows = keys[index]
            first, counts = group_keys(rows)
            snap = int(snaps[lo]).to_bytes(4, "little")
            for at, count in zip(first.tolist(), counts.tolist(), strict=True):
                full = snap + rows[at].tobytes()
                pending.append((full, count))
                if full not in cache and full not in missing:
                    missing[full] = int(seqs[lo + index[at]])
        if missing:
            by_seq = {seq: key for key, seq in missing.items()}
            got = dict(ring.read_many(sorted(by_seq))[0])
            for seq, key in by_seq.items():
                entry = got.get(seq)
                cache[key] = entry.flow if entry is not None else None
        for key, count in pending:
            flow = cache.get(key)
            if flow is not None:
                groups.append((flow, count))
        return singles


def _bare_l7(flow: dict[str, Any]) -> dict[str, Any] | None:
    """An L7 flow without what differs between the records of one access-log template."""
    l7 = flow.get("l7")
    if type(l7) is not dict:
        return None
    bare = flow.copy()
    bare.pop("trace_context", None)
    bare["l7"] = l7 = l7.copy()
    l7.pop("latency_ns", None)
    return bare


class NodeHealthCollector:
    """Scrape-time metrics of the node itself (observer rings, lost events, parser errors)."""

    def __init__(self, observer: Any, parser: Any = None) -> None:
        self.observer = observer
        self.parser = parser

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        obs = self.observer
        lost = CounterMetricFamily("hubble_lost_events", "Number of lost events", labels=["source"])
        counts = dict(obs.lost_by_source)
        counts["hubble_ring_buffer"] = counts.get("hubble_ring_buffer", 0) + obs.flows.readers_lost
        for source in LOST_SOURCES:
            lost.add_metric([source], counts.get(source, 0))
        yield lost
        ring = GaugeMetricFamily("hubble_ring_flows", "Events held in the node's flow ring")
        ring.add_metric([], len(obs.flows))
        yield ring
        cap = GaugeMetricFamily("hubble_ring_capacity", "Capacity of the node's flow ring")
        cap.add_metric([], obs.flows.capacity)
        yield cap
        seen = CounterMetricFamily("hubble_seen_flows", "Flows stored in the node's flow ring since start")
        seen.add_metric([], obs.seen_flows)
        yield seen
        over = CounterMetricFamily(
            "hubble_ring_overwritten", "Events that left the node's flow ring because it was full"
        )
        over.add_metric([], obs.flows.overwritten)
        yield over
        if self.parser is not None:
            errors = CounterMetricFamily(
                "hubble_parser_errors", "Datapath events the parser could not decode", labels=["reason"]
            )
            for reason, n in sorted(dict(self.parser.error_counts).items()):
                errors.add_metric([str(reason)], n)
            yield errors
