"""Flow sources: the pluggable producers that feed a node's :class:`~hubblepy.observer.core.Observer`.

Interface
---------
A flow source is any object with::

    name: str                                     # shown in logs
    def run(self, sink: EventSink, stop: threading.Event) -> None

``run`` is called once, in its own thread, and returns when ``stop`` is set (or when the source is
exhausted). It publishes through the sink, which is the node's ``Observer``:

* ``sink.publish_flows(batch)``: ``batch`` is an iterable of ``(time_ns, flow)`` where ``flow`` is a
  canonical ``flow.Flow`` dict whose ``time`` key holds the canonical form of ``time_ns`` and whose
  ``node_name`` is the node's name. Publish in batches: one call per batch, not per flow.
* ``sink.publish_lost(source, count, cpu=None)``: events lost before they reached the observer
  (``source`` is a ``flow.LostEventSource`` name, e.g. ``"PERF_EVENT_RING_BUFFER"``).
* ``sink.publish_agent_event(time_ns, event)`` / ``sink.publish_debug_event(time_ns, event)``.

The sink never blocks on readers; the ring drops its oldest entries when full. Sources must not
mutate a dict after publishing it (readers share it). The eBPF datapath source plugs in here; this
module ships the replay source used by the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from hubblepy.api.flow import flow_pb2
from hubblepy.codec.timestamps import format_ns, parse_rfc3339_ns
from hubblepy.observer.errors import ReplayError

_FLOW_FIELD_ORDER = [f.name for f in flow_pb2.Flow.DESCRIPTOR.fields]
_TICK_S = 0.01
_MAX_BATCH = 1024


class EventSink(Protocol):
    """What a flow source publishes into (implemented by :class:`hubblepy.observer.core.Observer`)."""

    node_name: str

    def publish_flows(self, flows: Iterable[tuple[int, dict[str, Any]]]) -> None: ...

    def publish_lost(self, source: str, count: int, cpu: int | None = None) -> None: ...

    def publish_agent_event(self, time_ns: int, event: dict[str, Any]) -> None: ...

    def publish_debug_event(self, time_ns: int, event: dict[str, Any]) -> None: ...


class FlowSource(Protocol):
    """A producer of flows for one node (see the module docstring)."""

    name: str

    def run(self, sink: EventSink, stop: threading.Event) -> None: ...


def load_replay_flows(path: str) -> list[dict[str, Any]]:
    """Read the ``flow`` objects of a flows file (one GetFlowsResponse JSON object per line)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ReplayError(f"cannot read replay file {path}: {exc.strerror}") from None
    flows = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ReplayError(f"{path}:{number}: invalid JSON: {exc}") from None
        flow = record.get("flow") if isinstance(record, dict) else None
        if isinstance(flow, dict):
            flows.append(flow)
    if not flows:
        raise ReplayError(f"replay file {path} holds no flows")
    return flows


def _with_node_name(flow: dict[str, Any], node_name: str) -> dict[str, Any]:
    """Copy of ``flow`` with ``node_name`` set, keys kept in declaration order."""
    merged = dict(flow)
    merged["node_name"] = node_name
    merged.setdefault("time", "")
    order = {name: i for i, name in enumerate(_FLOW_FIELD_ORDER)}
    return dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order))))


class ReplaySource:
    """Streams the flows of a file at ``rate`` flows/s, looping, as if they happened now on this node.

    Each emitted flow is the file's flow with a fresh ``time`` (strictly increasing), this node's
    ``node_name`` and a fresh ``uuid``. With ``verbatim=True`` the flows are published unchanged
    (original times, node names and uuids), once, which makes live output comparable with
    ``--input-file`` output of the same file. ``rate <= 0`` means as fast as possible.
    """

    name = "replay"

    def __init__(
        self,
        path: str,
        node_name: str,
        rate: float = 100.0,
        verbatim: bool = False,
        loop: bool = True,
    ) -> None:
        flows = load_replay_flows(path)
        self.verbatim = verbatim
        self.loop = loop and not verbatim
        self.rate = rate
        self.templates = flows if verbatim else [_with_node_name(f, node_name) for f in flows]
        self.published = 0

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        if self.verbatim:
            self._run_verbatim(sink, stop)
        else:
            self._run_fresh(sink, stop)

    def _batches(self, stop: threading.Event) -> Iterable[int]:
        """Yield how many flows to emit now, pacing to ``self.rate``."""
        if self.rate <= 0:
            while not stop.is_set():
                yield _MAX_BATCH
                time.sleep(0)
            return
        start = time.monotonic()
        due_total = 0
        while not stop.is_set():
            elapsed = time.monotonic() - start
            target = int(elapsed * self.rate)
            count = min(target - due_total, _MAX_BATCH)
            if count > 0:
                due_total += count
                yield count
            else:
                stop.wait(min(_TICK_S, max(1.0 / self.rate, 0.001)))

    def _run_fresh(self, sink: EventSink, stop: threading.Event) -> None:
        templates = itertools.cycle(self.templates) if self.loop else iter(self.templates)
        last_ns = 0
        uuid4 = uuid.uuid4
        for count in self._batches(stop):
            now = time.time_ns()
            base = max(now - count + 1, last_ns + 1)
            batch = []
            for i, template in enumerate(itertools.islice(templates, count)):
                ns = base + i
                flow = dict(template)
                flow["time"] = format_ns(ns)
                if "uuid" in flow:
                    flow["uuid"] = str(uuid4())
                batch.append((ns, flow))
            if not batch:
                return
            last_ns = batch[-1][0]
            sink.publish_flows(batch)
            self.published += len(batch)

    def _run_verbatim(self, sink: EventSink, stop: threading.Event) -> None:
        flows = iter(self.templates)
        for count in self._batches(stop):
            batch = [
                (parse_rfc3339_ns(f["time"]) if "time" in f else 0, f) for f in itertools.islice(flows, count)
            ]
            if not batch:
                return
            sink.publish_flows(batch)
            self.published += len(batch)
