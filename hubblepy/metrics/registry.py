"""The node's metrics: the enabled flow families, fed in batches, and the node's own health.

:class:`FlowMetrics` is an observer flow listener: :meth:`FlowMetrics.on_entries` gets each batch
of ring entries right after :meth:`hubblepy.observer.core.Observer.publish_flows` stored it, and
hands the batch's flow dicts to every enabled family (see :mod:`hubblepy.metrics.handlers`).

:class:`NodeHealthCollector` is read only when Prometheus scrapes: it costs nothing per flow.
It serves ``hubble_lost_events_total{source}`` (upstream's name and source values) and the
hubblepy additions ``hubble_ring_flows``, ``hubble_ring_capacity``, ``hubble_seen_flows_total``
and, in the lab node, ``hubble_parser_errors_total{reason}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hubblepy.metrics.config import MetricSpec
from hubblepy.metrics.handlers import DEFAULT_MAX_SERIES, HANDLERS, Handler

LOST_SOURCES = ("perf_event_ring_buffer", "observer_events_queue", "hubble_ring_buffer")


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

    def overflow_of(self, name: str) -> Callable[[int], None]:
        return self._overflow.labels(name).inc

    def process(self, flows: list[dict[str, Any]]) -> None:
        """Count one batch of canonical flow dicts in every enabled family."""
        for handler in self.handlers:
            try:
                handler.process(flows)
            except Exception:  # a malformed flow must not stop the publisher
                self._errors.labels(handler.spec.name).inc()

    def on_entries(self, entries: Sequence[Any]) -> None:
        """Observer flow listener: one batch of ring entries (``.flow`` is the flow dict)."""
        self.process([e.flow for e in entries if e.flow is not None])


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
        if self.parser is not None:
            errors = CounterMetricFamily(
                "hubble_parser_errors", "Datapath events the parser could not decode", labels=["reason"]
            )
            for reason, n in sorted(dict(self.parser.error_counts).items()):
                errors.add_metric([str(reason)], n)
            yield errors
