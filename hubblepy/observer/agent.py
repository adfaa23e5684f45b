"""`hubble agent`: one node's observer process (ring buffer + gRPC services + flow sources).

Usage::

    hubble agent --node-name NAME [--listen-address HOST:PORT] [--socket-path PATH]
                 [--event-buffer-capacity N] [--replay FILE [--rate N] [--replay-verbatim]]
                 [--peers NAME=HOST:PORT,...] [--advertise-address HOST:PORT]
                 [--tls-cert-file F --tls-key-file F [--tls-client-ca-files F,...]]
                 [--metrics LIST [--metrics-server HOST:PORT] [--metrics-max-series N]]
                 [--export-file-path FILE [--export-file-max-size-mb N] [--export-file-max-backups N]
                  [--export-file-compress] [--export-allowlist JSON] [--export-denylist JSON]
                  [--export-fieldmask PATHS]]

When it is listening, the agent writes one line ``hubble agent: node NAME listening on HOST:PORT``
to stderr (the port is the real one, so ``--listen-address 127.0.0.1:0`` works). SIGINT/SIGTERM
stop it cleanly with status 0.

``--metrics`` enables Hubble's Prometheus metric families (cilium-agent's ``--hubble-metrics``
syntax, see docs/metrics.md); they are served on ``--metrics-server`` (default ``:9965``, like
upstream; empty disables) and the agent then also writes ``hubble agent: metrics on HOST:PORT``.
``--export-file-path`` writes every flow to a rotated file (docs/export.md).

The agent publishes an ``AGENT_STARTED`` agent event (``hubble observe agent-events``) when it
serves; it has no policies, endpoints or ipcache of its own, so it sends no other agent events.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from typing import Any, NoReturn

from hubblepy.export import ExportError, FlowExporter, exporter_from_args
from hubblepy.metrics import (
    DEFAULT_MAX_SERIES,
    DEFAULT_METRICS_SERVER,
    MetricsConfigError,
    MetricsServer,
    parse_metrics,
    start_node_metrics,
)
from hubblepy.observer.agentevents import agent_started
from hubblepy.observer.core import Observer
from hubblepy.observer.errors import AgentError, ReplayError
from hubblepy.observer.flags import check_agent_flags
from hubblepy.observer.ring import DEFAULT_CAPACITY, validate_capacity
from hubblepy.observer.server import DEFAULT_LISTEN_ADDRESS, ObserverServer, ServerConfig, ServerTLS
from hubblepy.observer.sources import FlowSource, ReplaySource


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise AgentError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hubble agent", description="Run a Hubble node observer (gRPC Observer + Peer services)."
    )
    p.add_argument("--node-name", default=socket.gethostname(), help="name of this node (default: hostname)")
    p.add_argument(
        "--listen-address",
        default=DEFAULT_LISTEN_ADDRESS,
        help="TCP address to serve on (default :4244; '' disables)",
    )
    p.add_argument("--socket-path", default="", help="unix socket to serve on, mode 0660 (default: none)")
    p.add_argument(
        "--event-buffer-capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        help="ring capacity, 2^n-1 (default 4095)",
    )
    p.add_argument("--replay", metavar="FILE", help="replay the flows of FILE (GetFlowsResponse JSON lines)")
    p.add_argument(
        "--rate", type=float, default=100.0, help="replay rate in flows/s (0 = as fast as possible)"
    )
    p.add_argument(
        "--replay-verbatim",
        action="store_true",
        help="replay FILE once with its original times and node names",
    )
    p.add_argument(
        "--peers", default="", help="other nodes announced by peer.Peer/Notify: NAME=HOST:PORT,..."
    )
    p.add_argument(
        "--advertise-address",
        default="",
        help="address announced for this node (default: the listen address)",
    )
    p.add_argument("--tls-cert-file", default="", help="server certificate (PEM); enables TLS on TCP")
    p.add_argument("--tls-key-file", default="", help="server private key (PEM)")
    p.add_argument(
        "--tls-client-ca-files", default="", help="CA files for client certificates (enables mTLS)"
    )
    p.add_argument("--tls-server-name", default="", help="TLS server name announced for this node")
    p.add_argument("--max-workers", type=int, default=64, help="gRPC worker threads (concurrent streams)")
    p.add_argument(
        "--metrics",
        default="",
        help="Hubble metrics to serve, e.g. 'drop flow policy:sourceContext=namespace' (default: none)",
    )
    p.add_argument(
        "--metrics-server",
        default=DEFAULT_METRICS_SERVER,
        help=f"address of the /metrics endpoint when --metrics is given (default {DEFAULT_METRICS_SERVER}; '' disables)",
    )
    p.add_argument(
        "--metrics-max-series",
        type=int,
        default=DEFAULT_MAX_SERIES,
        help=f"label sets per metric before new ones are folded into 'overflow' (default {DEFAULT_MAX_SERIES})",
    )
    p.add_argument("--export-file-path", default="", help="write flows to this file ('' disables; 'stdout')")
    p.add_argument("--export-file-max-size-mb", type=int, default=10, help="rotate at this size (default 10)")
    p.add_argument("--export-file-max-backups", type=int, default=5, help="rotated files to keep (default 5)")
    p.add_argument("--export-file-compress", action="store_true", help="gzip rotated files")
    p.add_argument("--export-allowlist", default="", help="JSON FlowFilters: export only matching flows")
    p.add_argument("--export-denylist", default="", help="JSON FlowFilters: never export matching flows")
    p.add_argument("--export-fieldmask", default="", help="flow fields to keep, space or comma separated")
    return p


def parse_peers(text: str) -> list[dict[str, Any]]:
    """``a=127.0.0.1:4244,127.0.0.1:4246`` -> peer dicts (a bare address is its own name)."""
    peers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep:
            name, address = item, item
        if not address or ":" not in address:
            raise AgentError(f"invalid --peers entry {item!r}: expected NAME=HOST:PORT")
        peers.append({"name": name, "address": address})
    return peers


def build(args: argparse.Namespace) -> tuple[ObserverServer, list[FlowSource]]:
    try:
        check_agent_flags(args)
        validate_capacity(args.event_buffer_capacity)
        parse_metrics(args.metrics)
        if args.metrics_max_series < 1:
            raise ValueError("--metrics-max-series must be at least 1")
    except ValueError as exc:
        raise AgentError(str(exc)) from None
    tls = None
    if args.tls_cert_file or args.tls_key_file:
        if not (args.tls_cert_file and args.tls_key_file):
            raise AgentError("--tls-cert-file and --tls-key-file must be given together")
        ca_files = [f for f in args.tls_client_ca_files.split(",") if f]
        try:
            tls = ServerTLS.from_files(args.tls_cert_file, args.tls_key_file, ca_files)
        except ValueError as exc:
            raise AgentError(str(exc)) from None
    elif args.tls_client_ca_files:
        raise AgentError("--tls-client-ca-files needs --tls-cert-file and --tls-key-file")
    if not args.listen_address and not args.socket_path:
        raise AgentError("nothing to serve on: give --listen-address or --socket-path")
    observer = Observer(args.node_name, args.event_buffer_capacity)
    config = ServerConfig(
        listen_address=args.listen_address or None,
        socket_path=args.socket_path or None,
        tls=tls,
        peers=parse_peers(args.peers),
        advertise_address=args.advertise_address or None,
        tls_server_name=args.tls_server_name or None,
        max_workers=max(8, args.max_workers),
    )
    sources: list[FlowSource] = []
    if args.replay:
        try:
            sources.append(
                ReplaySource(args.replay, args.node_name, args.rate, verbatim=args.replay_verbatim)
            )
        except ReplayError as exc:
            raise AgentError(str(exc)) from None
    return ObserverServer(observer, config), sources


def start_extras(
    args: argparse.Namespace, server: ObserverServer
) -> tuple[MetricsServer | None, FlowExporter | None]:
    """The metrics endpoint and the flow exporter, hooked into the observer before any source runs."""
    metrics = exporter = None
    try:
        exporter = exporter_from_args(args, server.observer.node_name)
        if args.metrics:
            metrics = start_node_metrics(
                server.observer, args.metrics_server, args.metrics, args.metrics_max_series
            )
        if exporter is not None:
            exporter.start(server.observer)
            if metrics is not None:
                metrics.registry.register(exporter)
    except (MetricsConfigError, ExportError) as exc:
        if metrics is not None:
            metrics.stop()
        raise AgentError(str(exc)) from None
    return metrics, exporter


def run_agent(argv: list[str]) -> int:
    """Entry point of `hubble agent`; returns the exit status."""
    server = None
    try:
        args = build_parser().parse_args(argv)
        server, sources = build(args)
        server.start()
        metrics, exporter = start_extras(args, server)
    except AgentError as exc:
        if server is not None:
            server.stop(grace=0)
        sys.stderr.write(f"hubble agent: {exc}\n")
        return 1
    except (OSError, RuntimeError) as exc:
        if server is not None:
            server.stop(grace=0)
        sys.stderr.write(f"hubble agent: cannot start: {exc}\n")
        return 1
    now = time.time_ns()
    server.observer.publish_agent_event(now, agent_started(now))
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    threads = []
    for source in sources:
        t = threading.Thread(
            target=source.run, args=(server.observer, stop), name=f"source-{source.name}", daemon=True
        )
        t.start()
        threads.append(t)
    where = server.advertised_address() or args.socket_path
    sys.stderr.write(f"hubble agent: node {args.node_name} listening on {where}\n")
    if metrics is not None:
        sys.stderr.write(f"hubble agent: metrics on {metrics.address}\n")
    sys.stderr.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=0.5)
        for t in threads:
            t.join(timeout=2)
        if exporter is not None:
            exporter.close()
        if metrics is not None:
            metrics.stop()
    return 0


def main() -> None:
    sys.exit(run_agent(sys.argv[1:]))


if __name__ == "__main__":
    main()
