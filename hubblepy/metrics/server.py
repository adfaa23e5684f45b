"""The ``/metrics`` HTTP endpoint (``--metrics-server``), and the wiring of a node's metrics.

``--metrics-server ADDR`` takes ``HOST:PORT``; ``:PORT`` listens on every address like upstream
(whose default is ``:9965``); an empty value disables the endpoint. :func:`start_node_metrics` is
what ``hubble agent`` and the lab node call: it validates ``--metrics``, registers the families
and the node health collector, hooks the families into the observer and starts the server.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from hubblepy.metrics.config import MetricsConfigError, parse_metrics
from hubblepy.metrics.handlers import DEFAULT_MAX_SERIES
from hubblepy.metrics.registry import FlowMetrics, NodeHealthCollector

DEFAULT_METRICS_PORT = 9965
DEFAULT_METRICS_SERVER = f":{DEFAULT_METRICS_PORT}"


def parse_listen_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``:PORT`` / ``[V6]:PORT`` -> (host, port); raises MetricsConfigError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise MetricsConfigError(f"invalid metrics server address {address!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class MetricsServer:
    """A running ``/metrics`` endpoint over one registry."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        self.host, self.port = parse_listen_address(address)
        self.registry = registry
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise MetricsConfigError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._server.server_port

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None


def build_node_metrics(
    observer: Any, metrics: str, max_series: int = DEFAULT_MAX_SERIES, parser: Any = None
) -> tuple[CollectorRegistry, FlowMetrics]:
    """Registry with the families of ``metrics`` and the node health collector, hooked into
    ``observer``; raises MetricsConfigError for an unknown name or option."""
    specs = parse_metrics(metrics)
    registry = CollectorRegistry()
    try:
        flow_metrics = FlowMetrics(specs, registry, max_series)
    except ValueError as exc:
        raise MetricsConfigError(str(exc)) from None
    registry.register(NodeHealthCollector(observer, parser))
    if flow_metrics.handlers:
        observer.add_range_listener(flow_metrics.on_range)
    return registry, flow_metrics


def start_node_metrics(
    observer: Any,
    address: str,
    metrics: str,
    max_series: int = DEFAULT_MAX_SERIES,
    parser: Any = None,
) -> MetricsServer | None:
    """Validate, hook and serve a node's metrics; None when ``address`` is empty."""
    if not address:
        parse_metrics(metrics)  # still a start-up error when names are wrong
        return None
    server = MetricsServer(address, CollectorRegistry())  # address checked before any hooking
    registry, _ = build_node_metrics(observer, metrics, max_series, parser)
    server.registry = registry
    server.start()
    return server
