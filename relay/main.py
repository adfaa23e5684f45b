"""`hubble-relay`: serve the flows of every Hubble node on one endpoint (default :4245).

Flags follow upstream hubble-relay::

    hubble-relay [--listen-address :4245] [--peer-service ADDR] [--peers [NAME=]ADDR,...]
                 [--sort-buffer-len-max 100] [--sort-buffer-drain-timeout 1s]
                 [--dial-timeout 5s] [--retry-timeout 30s] [--error-aggregation-window 10s]
                 [--health-listen-address :4222] [--metrics-listen-address HOST:PORT]
                 [--tls-relay-server-cert-file F --tls-relay-server-key-file F [--tls-relay-client-ca-files F,...]]
                 [--tls-hubble-server-ca-files F,... [--tls-hubble-client-cert-file F --tls-hubble-client-key-file F]]

TLS towards clients is on when a server certificate is given (mTLS when client CA files are given
too); TLS towards the nodes is on when node CA files are given (mTLS with a client certificate).
``--disable-server-tls`` / ``--disable-client-tls`` force plaintext. Once listening, the relay
writes ``hubble-relay: listening on HOST:PORT`` to stderr.

As upstream, a second plaintext listener (``--health-listen-address``, default ``:4222``; empty
disables it) serves only ``grpc.health.v1.Health``, answering SERVING for ``hubble.server.Observer``
and ``""``, for liveness/readiness probes that cannot speak TLS. It is announced with
``hubble-relay: health service on HOST:PORT``. When that address cannot be bound the relay warns
on stderr and runs without it (the main endpoint answers health checks too).

``--metrics-listen-address`` serves the relay's Prometheus metrics (relay/metrics.py), announced with
``hubble-relay: metrics on HOST:PORT``; a busy address is a start-up error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn

# The relay logs what goes wrong with its nodes itself, once per change (see relay.peers); gRPC
# core would otherwise print a line for every failed TLS handshake of every retry.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402

from hubblepy.api.observer import observer_pb2  # noqa: E402
from hubblepy.cli.timeparse import DurationError, parse_go_duration  # noqa: E402
from hubblepy.observer.flags import (  # noqa: E402
    check_dial_address,
    check_listen_address,
    check_number,
    parse_peer_list,
)
from hubblepy.observer.server import HEALTH_SERVICE_NAME, ServerTLS, grpc_listen_target  # noqa: E402
from hubblepy.observer.transport import GrpcServer  # noqa: E402
from relay.h2stream import keep_freed_memory  # noqa: E402
from relay.peers import ClientTLS, DialOptions, PeerManager  # noqa: E402
from relay.service import RelayObserver  # noqa: E402

DEFAULT_PEER_SERVICE = "unix:///var/run/cilium/hubble.sock"


class RelayError(Exception):
    """A configuration problem reported as one line on stderr."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise RelayError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hubble-relay", description="Hubble Relay: flows of every node through one endpoint.")
    p.add_argument("--listen-address", default=":4245", help="address to serve on (default :4245)")
    p.add_argument(
        "--peer-service",
        default="",
        help=f"peer.Peer service to learn nodes from (default {DEFAULT_PEER_SERVICE} when --peers is not given)",
    )
    p.add_argument("--peers", default="", help="static list of nodes: [NAME=]HOST:PORT,...")
    p.add_argument(
        "--sort-buffer-len-max", type=int, default=100, help="max flows held to sort by time (default 100)"
    )
    p.add_argument(
        "--sort-buffer-drain-timeout",
        default="1s",
        help="send the sort buffer after this quiet time (default 1s)",
    )
    p.add_argument("--dial-timeout", default="5s", help="timeout to connect to a node (default 5s)")
    p.add_argument(
        "--retry-timeout",
        default="30s",
        help="max wait between reconnection attempts to a node (default 30s; capped at 1s so that a node "
        "that comes back streams again within seconds)",
    )
    p.add_argument(
        "--error-aggregation-window",
        default="10s",
        help="send node errors of this period as one NODE_ERROR event (default 10s, 0 = one per error)",
    )
    p.add_argument(
        "--health-listen-address",
        default=":4222",
        help='plaintext gRPC health service address (default :4222, "" disables it)',
    )
    p.add_argument(
        "--metrics-listen-address",
        default="",
        help='address of the /metrics endpoint ("" disables, the default)',
    )
    p.add_argument("--node-name", default="", help="name put in node-status events (default: hostname)")
    p.add_argument("--tls-relay-server-cert-file", default="")
    p.add_argument("--tls-relay-server-key-file", default="")
    p.add_argument(
        "--tls-relay-client-ca-files", default="", help="require client certificates signed by these CAs"
    )
    p.add_argument("--disable-server-tls", action="store_true")
    p.add_argument(
        "--tls-hubble-server-ca-files",
        default="",
        help="CAs of the nodes' certificates (enables TLS to nodes)",
    )
    p.add_argument("--tls-hubble-client-cert-file", default="")
    p.add_argument("--tls-hubble-client-key-file", default="")
    p.add_argument(
        "--tls-hubble-server-name", default="", help="server name expected on static peers' certificates"
    )
    p.add_argument("--disable-client-tls", action="store_true")
    p.add_argument("--max-workers", type=int, default=64)
    return p


def _read_all(paths: str) -> bytes | None:
    files = [p for p in paths.split(",") if p]
    if not files:
        return None
    out = b""
    for path in files:
        try:
            with open(path, "rb") as fh:
                out += fh.read()
        except OSError as exc:
            raise RelayError(f"cannot read {path}: {exc.strerror}") from None
    return out


def _duration(flag: str, text: str, positive: bool = False) -> float:
    try:
        value = parse_go_duration(text) / 1e9
    except DurationError:
        raise RelayError(
            f'invalid argument "{text}" for "--{flag}" flag: time: invalid duration "{text}"'
        ) from None
    if value < 0 or (positive and value == 0):
        need = "positive" if positive else "0 or more"
        raise RelayError(f'invalid argument "{text}" for "--{flag}" flag: must be {need}')
    return value


def _check_flags(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Addresses and numbers checked before anything starts; returns the static peers."""
    try:
        check_listen_address("--listen-address", args.listen_address)
        if args.health_listen_address:
            check_listen_address("--health-listen-address", args.health_listen_address)
        if args.peer_service:
            check_dial_address("--peer-service", args.peer_service)
        check_number("--max-workers", args.max_workers, 1)
        check_number("--sort-buffer-len-max", args.sort_buffer_len_max, 1)
        return parse_peer_list("--peers", args.peers, bare_is_name=False)
    except ValueError as exc:
        raise RelayError(str(exc)) from None


def _server_tls(args: argparse.Namespace) -> ServerTLS | None:
    if args.disable_server_tls or not (args.tls_relay_server_cert_file or args.tls_relay_server_key_file):
        return None
    if not (args.tls_relay_server_cert_file and args.tls_relay_server_key_file):
        raise RelayError(
            "--tls-relay-server-cert-file and --tls-relay-server-key-file must be given together"
        )
    try:
        return ServerTLS.from_files(
            args.tls_relay_server_cert_file,
            args.tls_relay_server_key_file,
            [f for f in args.tls_relay_client_ca_files.split(",") if f],
        )
    except ValueError as exc:
        raise RelayError(str(exc)) from None


def _client_tls(args: argparse.Namespace) -> ClientTLS | None:
    if args.disable_client_tls:
        return None
    ca = _read_all(args.tls_hubble_server_ca_files)
    cert = _read_all(args.tls_hubble_client_cert_file)
    key = _read_all(args.tls_hubble_client_key_file)
    if ca is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise RelayError(
            "--tls-hubble-client-cert-file and --tls-hubble-client-key-file must be given together"
        )
    return ClientTLS(root_ca=ca, cert=cert, key=key)


class Relay:
    """A running relay: peer manager + gRPC server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        static = _check_flags(args)
        client_tls = _client_tls(args)
        self.server_tls = _server_tls(args)
        dial = DialOptions(
            dial_timeout=_duration("dial-timeout", args.dial_timeout, positive=True),
            retry_timeout=_duration("retry-timeout", args.retry_timeout, positive=True),
            tls=client_tls,
        )
        drain = _duration("sort-buffer-drain-timeout", args.sort_buffer_drain_timeout, positive=True)
        error_window = _duration("error-aggregation-window", args.error_aggregation_window)
        self.peers = PeerManager(dial)
        for name, address in static:
            self.peers.add(name, address, args.tls_hubble_server_name)
        peer_service = args.peer_service or ("" if static else DEFAULT_PEER_SERVICE)
        if peer_service:
            self.peers.watch_peer_service(peer_service, client_tls, args.tls_hubble_server_name)
        self.observer = RelayObserver(
            self.peers,
            sort_buffer_len=args.sort_buffer_len_max,
            drain_timeout=drain,
            dial_timeout=dial.dial_timeout,
            retry_timeout=dial.retry_timeout,
            relay_name=args.node_name or None,
            error_aggregation_window=error_window,
            framed=True,
        )
        self.health = health.HealthServicer()
        self.server: GrpcServer | None = None
        self.port = 0
        self.health_server: GrpcServer | None = None
        self.health_port = 0
        self.health_warning = ""
        self.metrics: Any = None

    def start(self) -> None:
        server = GrpcServer(max_workers=self.args.max_workers, thread_name_prefix="relay-grpc")
        server.add_generic_rpc_handlers([self.observer.handlers(), self.observer.batch_handlers()])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in (HEALTH_SERVICE_NAME, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (
                observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        target = grpc_listen_target(self.args.listen_address)
        try:
            if self.server_tls is not None:
                self.port = server.add_secure_port(target, self.server_tls)
            else:
                self.port = server.add_insecure_port(target)
        except OSError as exc:
            server.stop(0)
            raise RelayError(f"cannot listen on {self.args.listen_address}: {exc}") from None
        if not self.port:
            raise RelayError(f"cannot listen on {self.args.listen_address}")
        server.start()
        self.server = server
        if self.args.health_listen_address:
            self._start_health_server(self.args.health_listen_address)
        if self.args.metrics_listen_address:
            self._start_metrics(self.args.metrics_listen_address)

    def _start_metrics(self, listen_address: str) -> None:
        from hubblepy.metrics import MetricsConfigError, MetricsServer
        from relay.metrics import relay_registry

        try:
            self.metrics = MetricsServer(listen_address, relay_registry(self.peers))
            self.metrics.start()
        except MetricsConfigError as exc:
            raise RelayError(str(exc)) from None

    def _start_health_server(self, listen_address: str) -> None:
        """The separate plaintext listener for grpc.health.v1 only (shares the health servicer)."""
        server = GrpcServer(max_workers=4, thread_name_prefix="relay-health")
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            port = server.add_insecure_port(grpc_listen_target(listen_address))
        except OSError:
            port = 0
        if not port:
            server.stop(0)
            self.health_warning = f"health service disabled: cannot listen on {listen_address}"
            return
        server.start()
        self.health_server = server
        self.health_port = port

    def address(self) -> str:
        return _display_address(self.args.listen_address, self.port)

    def health_address(self) -> str:
        return _display_address(self.args.health_listen_address, self.health_port)

    def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        self.peers.close()
        if self.health_server is not None:
            self.health_server.stop(0.5)
        if self.server is not None:
            self.server.stop(0.5).wait()


def _display_address(listen_address: str, port: int) -> str:
    """HOST:PORT a client can dial for a listen address (wildcards shown as 127.0.0.1)."""
    host = listen_address.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def run(argv: list[str]) -> int:
    """Run the relay until SIGINT/SIGTERM; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="level=%(levelname)s msg=%(message)s")
    logging.getLogger("relay").setLevel(logging.INFO)  # node connected/disconnected/unavailable
    keep_freed_memory()  # nodes' batches are read into large buffers: reuse their pages
    try:
        relay = Relay(build_parser().parse_args(argv))
        relay.start()
    except RelayError as exc:
        sys.stderr.write(f"hubble-relay: {exc}\n")
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.stderr.write(f"hubble-relay: listening on {relay.address()}\n")
    if relay.health_server is not None:
        sys.stderr.write(f"hubble-relay: health service on {relay.health_address()}\n")
    elif relay.health_warning:
        sys.stderr.write(f"hubble-relay: warning: {relay.health_warning}\n")
    if relay.metrics is not None:
        sys.stderr.write(f"hubble-relay: metrics on {relay.metrics.address}\n")
    sys.stderr.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        relay.stop()
    return 0


def main() -> None:
    """Console-script entry point (``hubble-relay``)."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
