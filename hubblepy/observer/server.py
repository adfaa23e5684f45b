"""The node's gRPC server: Observer + Peer + health + reflection on a unix socket and on TCP.

The unix socket (mode 0660) is always plaintext, like upstream's local socket. The TCP listener uses
TLS when a certificate and key are given, and requires client certificates (mTLS) when client CA
files are given too. The services are served by :mod:`hubblepy.observer.transport` (HTTP/2 on
``h2``), which streams many messages per DATA frame; the handlers are ordinary grpcio handlers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hubblepy.api.observer import observer_pb2
from hubblepy.api.peer import peer_pb2
from hubblepy.observer.core import Observer
from hubblepy.observer.service import NodeServices
from hubblepy.observer.transport import GrpcServer, TLSConfig

HEALTH_SERVICE_NAME = "hubble.server.Observer"
DEFAULT_LISTEN_ADDRESS = ":4244"


@dataclass
class ServerTLS(TLSConfig):
    """Server-side TLS material (PEM bytes). ``client_ca`` set means mTLS (client cert required)."""

    @classmethod
    def from_files(cls, cert_file: str, key_file: str, client_ca_files: list[str] | None = None) -> ServerTLS:
        client_ca = b"".join(_read(p) for p in client_ca_files) if client_ca_files else None
        tls = cls(cert=_read(cert_file), key=_read(key_file), client_ca=client_ca)
        tls.ssl_context()  # bad PEM is a start-up error, not a failed handshake later
        return tls


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def grpc_listen_target(address: str) -> str:
    """``:4244`` -> ``[::]:4244``; ``host:port`` stays; a bare host gets port 4244."""
    if address.startswith(":"):
        return "[::]" + address
    host, sep, port = address.rpartition(":")
    if not sep or (host.count(":") and not host.endswith("]")):
        return f"{address}:4244"
    return address


@dataclass
class ServerConfig:
    """How a node serves its observer."""

    listen_address: str | None = DEFAULT_LISTEN_ADDRESS
    socket_path: str | None = None
    tls: ServerTLS | None = None
    peers: list[dict[str, Any]] = field(default_factory=list)  # {"name", "address", "tls_server_name"?}
    advertise_address: str | None = None
    tls_server_name: str | None = None
    max_workers: int = 64


class ObserverServer:
    """Runs the gRPC services of one node around an :class:`Observer`."""

    def __init__(self, observer: Observer, config: ServerConfig) -> None:
        self.observer = observer
        self.config = config
        self.stop_event = threading.Event()
        self.server: GrpcServer | None = None
        self.tcp_port: int | None = None
        self.health = health.HealthServicer()

    def start(self) -> None:
        cfg = self.config
        server = GrpcServer(
            max_workers=cfg.max_workers,
            maximum_concurrent_rpcs=cfg.max_workers - 4,
            thread_name_prefix="hubble-grpc",
        )
        if cfg.listen_address:
            target = grpc_listen_target(cfg.listen_address)
            if cfg.tls is not None:
                port = server.add_secure_port(target, cfg.tls)
            else:
                port = server.add_insecure_port(target)
            if not port:
                raise OSError(f"cannot listen on {cfg.listen_address}")
            self.tcp_port = port
        if cfg.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cfg.socket_path)
            os.makedirs(os.path.dirname(os.path.abspath(cfg.socket_path)), exist_ok=True)
            server.add_insecure_port(f"unix:{cfg.socket_path}")
        address = self.advertised_address()
        tls_name = cfg.tls_server_name or (
            default_tls_server_name(self.observer.node_name) if cfg.tls else None
        )
        self_peer = {"name": self.observer.node_name, "address": address}
        if tls_name:
            self_peer["tls_server_name"] = tls_name
        services = NodeServices(
            self.observer,
            self_peer,
            cfg.peers,
            self.stop_event,
            address=address,
            tls_enabled=cfg.tls is not None,
            framed=True,
        )
        server.add_generic_rpc_handlers(services.handlers())
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in (HEALTH_SERVICE_NAME, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (
                observer_pb2.DESCRIPTOR.services_by_name["Observer"].full_name,
                peer_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        server.start()
        if cfg.socket_path:
            os.chmod(cfg.socket_path, 0o660)
        self.server = server

    def advertised_address(self) -> str:
        """The TCP address peers should dial (``host:port``), as announced by peer.Peer/Notify."""
        cfg = self.config
        if cfg.advertise_address:
            return cfg.advertise_address
        if self.tcp_port is None:
            return f"unix://{cfg.socket_path}" if cfg.socket_path else ""
        host = (cfg.listen_address or "").rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.tcp_port}"

    def stop(self, grace: float = 1.0) -> None:
        self.stop_event.set()
        self.observer.close()
        for name in (HEALTH_SERVICE_NAME, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.server is not None:
            self.server.stop(grace).wait()
        if self.config.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.socket_path)


def default_tls_server_name(node_name: str, cluster: str = "default") -> str:
    """Upstream's peer TLS server name: ``<node>.<cluster>.hubble-grpc.cilium.io`` (dots in the node name -> '-')."""
    return f"{node_name.replace('.', '-')}.{cluster}.hubble-grpc.cilium.io"
