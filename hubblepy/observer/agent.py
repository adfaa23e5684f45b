"""`hubble agent`: one node's observer process (ring buffer + gRPC services + flow sources).

Usage::

    hubble agent --node-name NAME [--listen-address HOST:PORT] [--socket-path PATH]
                 [--event-buffer-capacity N] [--replay FILE [--rate N] [--replay-verbatim]]
                 [--peers NAME=HOST:PORT,...] [--advertise-address HOST:PORT]
                 [--tls-cert-file F --tls-key-file F [--tls-client-ca-files F,...]]

When it is listening, the agent writes one line ``hubble agent: node NAME listening on HOST:PORT``
to stderr (the port is the real one, so ``--listen-address 127.0.0.1:0`` works). SIGINT/SIGTERM
stop it cleanly with status 0.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from typing import Any, NoReturn

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


def run_agent(argv: list[str]) -> int:
    """Entry point of `hubble agent`; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        server, sources = build(args)
        server.start()
    except AgentError as exc:
        sys.stderr.write(f"hubble agent: {exc}\n")
        return 1
    except (OSError, RuntimeError) as exc:
        sys.stderr.write(f"hubble agent: cannot start: {exc}\n")
        return 1
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
    sys.stderr.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=0.5)
        for t in threads:
            t.join(timeout=2)
    return 0


def main() -> None:
    sys.exit(run_agent(sys.argv[1:]))


if __name__ == "__main__":
    main()
