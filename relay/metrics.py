"""The relay's Prometheus metrics (``hubble-relay --metrics-listen-address``).

* ``hubble_relay_pool_peer_connection_status{status}``: nodes by gRPC connectivity state
  (``READY`` = connected, ``CONNECTING``, ``IDLE``, ``TRANSIENT_FAILURE``, ``SHUTDOWN``,
  ``NIL_CONNECTION`` before the first dial), like upstream's relay;
* ``hubble_relay_node_errors_total{node}``: failed node streams (each is also logged);
* ``hubble_relay_flows_forwarded_total``: flows received from nodes for client streams.

Counting costs one addition per batch of a node's stream; the collector reads the peer manager only
when Prometheus scrapes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

STATES = ("READY", "CONNECTING", "IDLE", "TRANSIENT_FAILURE", "SHUTDOWN", "NIL_CONNECTION")


class RelayStats:
    """Counters the relay's streams update (process-wide)."""

    def __init__(self) -> None:
        self.flows_forwarded = 0
        self.node_errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def forwarded(self, n: int) -> None:
        with self._lock:
            self.flows_forwarded += n

    def node_error(self, node: str) -> None:
        with self._lock:
            self.node_errors[node] += 1


STATS = RelayStats()


class RelayCollector:
    """Scrape-time view of the peer pool and of :data:`STATS`."""

    def __init__(self, peers: Any, stats: RelayStats = STATS) -> None:
        self.peers = peers
        self.stats = stats

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        states = Counter(
            "NIL_CONNECTION" if node.state is None else node.state.name for node in self.peers.nodes()
        )
        pool = GaugeMetricFamily(
            "hubble_relay_pool_peer_connection_status",
            "Number of peers by connection status",
            labels=["status"],
        )
        for state in STATES:
            pool.add_metric([state], states.get(state, 0))
        yield pool
        errors = CounterMetricFamily("hubble_relay_node_errors", "Failed node streams", labels=["node"])
        for node, n in sorted(self.stats.node_errors.items()):
            errors.add_metric([node], n)
        yield errors
        flows = CounterMetricFamily("hubble_relay_flows_forwarded", "Flows received from nodes for clients")
        flows.add_metric([], self.stats.flows_forwarded)
        yield flows


def relay_registry(peers: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RelayCollector(peers))
    return registry
