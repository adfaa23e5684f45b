"""Hubble's Prometheus metrics: upstream's flow metric families plus the node's own health.

Public API: :func:`parse_metrics` / :class:`MetricsConfigError` (``--metrics``),
:class:`FlowMetrics` (the families, fed in batches by the observer), :class:`NodeHealthCollector`,
:class:`MetricsServer` and :func:`start_node_metrics` (``--metrics-server``). See docs/metrics.md.
"""

from prometheus_client import disable_created_metrics

from hubblepy.metrics.config import ALL_FAMILIES, MetricsConfigError, MetricSpec, parse_metrics
from hubblepy.metrics.handlers import DEFAULT_MAX_SERIES
from hubblepy.metrics.registry import FlowMetrics, NodeHealthCollector
from hubblepy.metrics.server import (
    DEFAULT_METRICS_PORT,
    DEFAULT_METRICS_SERVER,
    MetricsServer,
    build_node_metrics,
    parse_listen_address,
    start_node_metrics,
)

disable_created_metrics()  # upstream (the Go client) serves no *_created series

__all__ = [
    "ALL_FAMILIES",
    "DEFAULT_MAX_SERIES",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_METRICS_SERVER",
    "FlowMetrics",
    "MetricSpec",
    "MetricsConfigError",
    "MetricsServer",
    "NodeHealthCollector",
    "build_node_metrics",
    "parse_listen_address",
    "parse_metrics",
    "start_node_metrics",
]
