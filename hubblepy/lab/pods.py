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
from hubblepy.lab.scenario import PodSpec, ServerSpec, WorldSpec

FIRST_ENDPOINT_ID = 100
FIRST_POD_HOST = 10  # pod IPs start at the 10th address of the pod CIDR
WORLD_NAMESPACE = "outside"
WORLD_NAME = "world"


@dataclass
class Server:
    """One server process a pod (or the world) runs; ``pid`` is 0 until it was started."""

    kind: str
    port: int
    routes: tuple[str, ...] = ()
    pid: int = 0

    @classmethod
    def from_spec(cls, spec: ServerSpec) -> Server:
        return cls(spec.kind, spec.port, tuple(spec.routes))

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "port": self.port, "routes": list(self.routes), "pid": self.pid}


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
        }


@dataclass
class World:
    """The hosts outside the cluster: one namespace holding every world address, with servers."""

    spec: WorldSpec
    netns: str
    servers: list[Server]

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.spec.addresses

    @property
    def log_name(self) -> str:
        return f"{WORLD_NAMESPACE}.{WORLD_NAME}"

    def to_state(self) -> dict[str, Any]:
        return {
            "namespace": WORLD_NAMESPACE,
            "name": WORLD_NAME,
            "netns": self.netns,
            "addresses": list(self.addresses),
            "servers": [s.to_state() for s in self.servers],
        }


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
