"""The lab's typed parts: pods, their servers, the world outside the cluster, and address allocation.

A :class:`Pod` is what the lab node knows about one pod (namespace, veth, IP, endpoint, identity,
servers, and the enforcement state the last policy sync computed). ``to_state()`` gives the JSON
object ``state.json`` and ``hubble lab status -o json`` show (keys and order are part of the CLI's
output, so they do not change).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from hubblepy.lab import netns
from hubblepy.lab.errors import LabError
from hubblepy.lab.scenario import RESOLVER_PORT, HostSpec, PodSpec, ServerSpec, WorldSpec

FIRST_ENDPOINT_ID = 100
FIRST_POD_HOST = 10  # pod IPs start at the 10th address of the pod CIDR
WORLD_NAMESPACE = "outside"
WORLD_NAME = "world"


@dataclass
class Server:
    """One server process a pod (or the world) runs; ``pid`` is 0 until it was started.

    ``bind``: the addresses it listens on (empty: all); ``tls_name``: the DNS name of its certificate
    (``https`` servers of a world host).
    """

    kind: str
    port: int
    routes: tuple[str, ...] = ()
    pid: int = 0
    bind: tuple[str, ...] = ()
    tls_name: str = ""

    @classmethod
    def from_spec(cls, spec: ServerSpec, bind: tuple[str, ...] = (), tls_name: str = "") -> Server:
        return cls(spec.kind, spec.port, tuple(spec.routes), bind=bind, tls_name=tls_name)

    @property
    def probe_address(self) -> str:
        """Where to check that it accepts connections (TCP; DNS servers listen on TCP too)."""
        return self.bind[0] if self.bind else "127.0.0.1"

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "kind": self.kind,
            "port": self.port,
            "routes": list(self.routes),
            "pid": self.pid,
        }
        if self.bind:
            state["bind"] = list(self.bind)
        return state


@dataclass
class Pod:
    """One pod: a network namespace with a veth to the node, an endpoint and an identity."""

    spec: PodSpec
    ip: str
    ep_id: int
    identity: int
    labels: tuple[str, ...]
    servers: list[Server]
    ifindex: int = 0
    # what the last policy sync computed for this pod
    audit: bool = False
    ingress_enforced: bool = False
    egress_enforced: bool = False
    policies: list[str] = field(default_factory=list)
    audit_scope: str = ""
    default_deny_audited: list[str] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)  # policy-map entries sent to the L7 proxy

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def netns(self) -> str:
        return netns.pod_netns_name(self.spec.namespace, self.spec.name)

    @property
    def host_if(self) -> str:
        return netns.host_ifname(self.ep_id)

    @property
    def ports(self) -> tuple[tuple[str, int, int], ...]:
        """Named container ports: (name, port, protocol number)."""
        return self.spec.ports

    @property
    def log_name(self) -> str:
        return f"{self.namespace}.{self.name}"

    def to_state(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "netns": self.netns,
            "host_if": self.host_if,
            "ifindex": self.ifindex,
            "ip": self.ip,
            "ep_id": self.ep_id,
            "identity": self.identity,
            "labels": list(self.labels),
            "workload": list(self.spec.workload) if self.spec.workload else None,
            "servers": [s.to_state() for s in self.servers],
            "ports": [list(p) for p in self.ports],
            "audit": self.audit,
            "ingress_enforced": self.ingress_enforced,
            "egress_enforced": self.egress_enforced,
            "policies": list(self.policies),
            "audit_scope": self.audit_scope,
            "default_deny_audited": list(self.default_deny_audited),
            "redirects": list(self.redirects),
        }


@dataclass
class World:
    """The hosts outside the cluster: one namespace holding every world address, with servers.

    ``servers`` are all of them: ``world.servers`` (on every address), the upstream resolver (when
    there are named hosts) and each host's servers (on the host's addresses).
    """

    spec: WorldSpec
    netns: str
    servers: list[Server]

    @classmethod
    def from_spec(cls, spec: WorldSpec, netns_name: str) -> World:
        servers = [Server.from_spec(s) for s in spec.servers]
        if spec.resolver:
            servers.append(Server("resolver", RESOLVER_PORT, bind=(spec.resolver,)))
        for host in spec.hosts:
            for s in host.servers:
                servers.append(Server.from_spec(s, host.addresses, host.name if s.kind == "https" else ""))
        return cls(spec, netns_name, servers)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.spec.addresses

    @property
    def hosts(self) -> tuple[HostSpec, ...]:
        return self.spec.hosts

    @property
    def resolver(self) -> str:
        """``IP:53`` of the upstream resolver ('' when the world has no named hosts)."""
        return f"{self.spec.resolver}:{RESOLVER_PORT}" if self.spec.resolver else ""

    @property
    def log_name(self) -> str:
        return f"{WORLD_NAMESPACE}.{WORLD_NAME}"

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "namespace": WORLD_NAMESPACE,
            "name": WORLD_NAME,
            "netns": self.netns,
            "addresses": list(self.addresses),
            "servers": [s.to_state() for s in self.servers],
        }
        if self.hosts:
            state["resolver"] = self.resolver
            state["hosts"] = [
                {
                    "name": h.name,
                    "addresses": list(h.addresses),
                    "ttl": h.ttl,
                    "answers": h.answers,
                    "servers": [f"{s.kind}:{s.port}" for s in h.servers],
                }
                for h in self.hosts
            ]
        return state


class AddressPool:
    """Pod IPs (from the 10th address of the pod CIDR on) and endpoint ids (from 100 on).

    A released IP goes to the end of the queue, so a recreated pod gets a new address.
    """

    def __init__(self, cidr: ipaddress.IPv4Network) -> None:
        self.cidr = cidr
        hosts = [str(ip) for ip in cidr.hosts()]
        self.gateway = hosts[0]
        self._free = hosts[FIRST_POD_HOST - 1 :]
        self._next_ep = FIRST_ENDPOINT_ID

    def take(self) -> tuple[str, int]:
        """A free pod IP and a new endpoint id."""
        if not self._free:
            raise LabError(f"no free address left in {self.cidr}")
        ep_id = self._next_ep
        self._next_ep += 1
        return self._free.pop(0), ep_id

    def release(self, ip: str) -> None:
        self._free.append(ip)


__all__ = ["AddressPool", "Pod", "Server", "World"]
