"""Metrics of the one-machine lab: the node's /metrics, the relay's, and an optional Prometheus.

The lab node (:mod:`hubblepy.lab.node`) takes the flags of :func:`add_lab_arguments` and calls a
:class:`LabMetrics` at four points: when its observer starts, when it starts the relay
(:meth:`LabMetrics.relay_args`), for its state file, and at shutdown. A busy node metrics address
is a warning (the lab runs without metrics), not a failure: labs of tests run beside a user's lab.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from hubblepy.metrics.config import MetricsConfigError
from hubblepy.metrics.prometheus import DEFAULT_PROMETHEUS_ADDRESS, PrometheusError, start_prometheus
from hubblepy.metrics.server import MetricsServer, start_node_metrics

DEFAULT_LAB_METRICS_ADDRESS = "127.0.0.1:9965"
DEFAULT_RELAY_METRICS_ADDRESS = "127.0.0.1:9966"
_NS = "labelsContext=source_namespace,destination_namespace"
# What the docs' dashboards need (drops by reason and namespace, HTTP errors and latency, DNS errors
# by query) and no more: tcp, port-distribution, icmp and flows-to-world read more fields of every
# flow (benchmarks/bench_datapath.py --only metrics); `hubble lab up --metrics` adds them.
DEFAULT_LAB_METRICS = f"drop:{_NS} flow policy:{_NS} dns:query;{_NS} httpV2:{_NS}"


def add_lab_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-server", default=DEFAULT_LAB_METRICS_ADDRESS)
    p.add_argument("--metrics", default=DEFAULT_LAB_METRICS)
    p.add_argument("--relay-metrics-address", default="")
    p.add_argument("--prometheus-address", default="", help="start Prometheus on this address")


class LabMetrics:
    """The lab's metrics endpoints and Prometheus (see module docstring)."""

    def __init__(self, server: str, metrics: str, relay: str = "", prometheus: str = "") -> None:
        self.server_address = server
        self.metrics = metrics
        self.relay_address = relay
        self.prometheus_address = prometheus
        self.server: MetricsServer | None = None
        self.prometheus: subprocess.Popen | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LabMetrics:
        return cls(args.metrics_server, args.metrics, args.relay_metrics_address, args.prometheus_address)

    def start_node(self, observer: Any, parser: Any) -> None:
        """Serve the node's metrics; an unknown metric name raises MetricsConfigError."""
        try:
            self.server = start_node_metrics(observer, self.server_address, self.metrics, parser=parser)
        except MetricsConfigError as exc:
            if "cannot serve" not in str(exc):
                raise
            sys.stderr.write(f"lab node: warning: {exc}; running without metrics\n")

    def relay_args(self) -> list[str]:
        return ["--metrics-listen-address", self.relay_address] if self.relay_address else []

    def start_prometheus(self, folder: Path) -> None:
        if not self.prometheus_address:
            return
        targets = {"hubble-relay": self.relay_address}
        if self.server is not None:
            targets["hubble"] = self.server.address
        try:
            self.prometheus = start_prometheus(folder / "prometheus", self.prometheus_address, targets)
        except PrometheusError as exc:
            raise MetricsConfigError(str(exc)) from None

    def state(self) -> dict[str, Any]:
        return {
            "metrics": self.server.address if self.server is not None else "",
            "relay_metrics": self.relay_address,
            "prometheus": self.prometheus_address if self.prometheus is not None else "",
            "prometheus_pid": self.prometheus.pid if self.prometheus is not None else 0,
        }

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.prometheus.wait(10)
            if self.prometheus.poll() is None:
                self.prometheus.kill()
            self.prometheus = None
        if self.server is not None:
            self.server.stop()
            self.server = None


__all__ = [
    "DEFAULT_LAB_METRICS",
    "DEFAULT_LAB_METRICS_ADDRESS",
    "DEFAULT_PROMETHEUS_ADDRESS",
    "DEFAULT_RELAY_METRICS_ADDRESS",
    "LabMetrics",
    "add_lab_arguments",
]
