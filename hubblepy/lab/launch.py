"""Starting the servers of pods and of the world as supervised children of the lab node.

:class:`ServerLauncher` turns a :class:`~hubblepy.lab.pods.Server` into its command line
(``python -m hubblepy.lab.servers KIND ...``: the zone file and upstream of kube-dns, the hosts file of
the world's resolver, a certificate of the lab CA for an ``https`` server), starts it inside the
owner's network namespace and waits until it accepts connections.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Protocol

from hubblepy.lab import clusterdns, netns
from hubblepy.lab.errors import LabError
from hubblepy.lab.pods import Server
from hubblepy.lab.processes import Supervisor, python_module
from hubblepy.lab.tls import LabCA

SERVER_START_TIMEOUT = 30.0  # a busy machine starts a dozen Python servers at once
WORLD_HOSTS_FILE = "world-hosts.json"


class ServerOwner(Protocol):
    """A pod or the world: a network namespace with servers."""

    @property
    def netns(self) -> str: ...

    @property
    def log_name(self) -> str: ...

    servers: list[Server]


class ServerLauncher:
    """Starts, and forgets, the servers of pods and of the world."""

    def __init__(self, children: Supervisor, folder: Path) -> None:
        self.children = children
        self.folder = folder
        self.ca: LabCA | None = None
        self.upstream = ""  # IP:PORT kube-dns forwards names outside the cluster to ('' = none)

    @property
    def hosts_file(self) -> Path:
        """The world resolver's names (written by the lab node)."""
        return self.folder / WORLD_HOSTS_FILE

    def args(self, server: Server) -> list[str]:
        args = [server.kind, "--port", str(server.port)]
        for address in server.bind:
            args += ["--bind", address]
        for route in server.routes:
            args += ["--route", route]
        if server.kind == "dns":
            args += ["--zone-file", str(clusterdns.zone_path(self.folder))]
            if self.upstream:
                args += ["--upstream", self.upstream]  # as CoreDNS's forward plugin
        elif server.kind == "resolver":
            args += ["--hosts-file", str(self.hosts_file)]
        elif server.kind == "https":
            if self.ca is None:
                raise LabError("an https server needs the lab CA")
            issued = self.ca.issue(server.tls_name)
            args += ["--cert", str(issued.cert), "--key", str(issued.key)]
        return args

    def start(self, owner: ServerOwner) -> None:
        """Starts every server of ``owner``, then waits until each accepts connections."""
        for server in owner.servers:
            child = self.children.start(
                f"{_prefix(owner)}{server.kind}-{server.port}-{server.probe_address}",
                python_module("hubblepy.lab.servers", *self.args(server)),
                netns_name=owner.netns,
                log=f"server-{owner.log_name}.log",
            )
            server.pid = child.pid
        for server in owner.servers:
            wait_listening(owner, server)

    def forget(self, owner: ServerOwner) -> None:
        """The owner's namespace goes away with its processes: stop watching them."""
        self.children.forget(_prefix(owner))


def _prefix(owner: ServerOwner) -> str:
    return f"server-{owner.log_name}-"


def wait_listening(owner: ServerOwner, server: Server, timeout: float = SERVER_START_TIMEOUT) -> None:
    """Waits until the server's TCP port accepts on every address it binds, inside its namespace
    (DNS listens on TCP too); a server that binds several addresses opens them one after another."""
    deadline = time.monotonic() + timeout
    addresses = server.bind or (server.probe_address,)

    def accepts(address: str) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((address, server.port)) == 0

    def probe() -> bool:
        return all(accepts(a) for a in addresses)

    while time.monotonic() < deadline:
        if netns.run_in_netns(owner.netns, probe):
            return
        time.sleep(0.05)
    where = owner.log_name.replace(".", "/")
    raise LabError(f"server {server.kind} on port {server.port} of {where} did not start")


__all__ = ["SERVER_START_TIMEOUT", "WORLD_HOSTS_FILE", "ServerLauncher", "wait_listening"]
