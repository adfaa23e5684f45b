"""What the parser needs to know about endpoints, identities and policies, and a static implementation.

The parser turns datapath numbers (endpoint ids, security identities, IPs, ifindexes, policy
cookies) into the Flow's endpoint, interface and policy fields through a ``Resolver``. The agent
(the lab) implements it over its own state; ``StaticResolver`` is a plain in-memory version used
by the tests and by anyone feeding recorded events.

Contract:

* ``generation`` is an int that changes whenever anything the resolver answers changes. The parser
  caches the endpoint dicts it builds and drops that cache when ``generation`` differs from the
  value it saw last (checked once per batch), so lookups are not repeated per event.
* ``endpoint_by_ip(ip)`` answers for an IP text (as in ``Flow.IP``). A *local* endpoint (one
  managed on this node) has ``id != 0`` and carries its own labels and workloads. A non-local
  entry (ipcache) has ``id == 0``; its labels are not used: the parser asks ``identity_labels``
  for the identity that wins (datapath identity if non-zero, otherwise the entry's identity).
* ``identity_labels(identity)`` returns the labels of a security identity or None when unknown.
  The parser falls back to the reserved identities' ``reserved:...`` labels (constants module).
* ``endpoint_by_id(endpoint_id)`` is used for debug events (``DebugEvent.source``).
* ``interface_name(ifindex)`` returns the link name or "" when unknown.
* ``endpoint_ip_by_cgroup(cgroup_id, ipv6)`` returns the pod IP of the given family for a cgroup id
  (trace-sock events), or None.
* ``policy_for_verdict(...)`` returns the policies that produced a policy verdict (for
  ``*_allowed_by`` / ``*_denied_by``) and its ``policy_log`` values, or None. ``cookie`` is the
  verdict's rule cookie (0 in the 32-byte layout, which has none, and for drop events, which the
  parser also correlates when the drop reason is a policy denial). When the match sets ``verdict``
  (FORWARDED, DROPPED or AUDIT: what the resolver's policy state decides for that connection), the
  parser uses it only for events whose verdict agrees, so a policy change between the packet and
  its parsing never attaches the wrong policies.

Optional extensions (used when the resolver implements them: the ``DnsNameResolver`` and
``ServiceResolver`` protocols, checked once when the parser is made; ``NamesAndServices`` is both):

* ``dns_names(endpoint_id, ip)``: FQDNs (no trailing dot) the DNS proxy saw endpoint
  ``endpoint_id`` resolve to ``ip``; fills ``source_names`` (source IP as seen by the destination
  endpoint) and ``destination_names`` (destination IP as seen by the source endpoint).
* ``service_by_addr(ip, port)``: a canonical ``flow.Service`` dict (``{"name", "namespace"}``)
  for a service frontend address and L4 port; fills ``source_service`` / ``destination_service``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hubblepy.parser.constants import RESERVED_IDENTITY_LABELS


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """An endpoint or ipcache entry. ``id`` 0 means "not a local endpoint"."""

    id: int = 0
    identity: int = 0
    namespace: str = ""
    pod_name: str = ""
    labels: tuple[str, ...] = ()
    workloads: tuple[tuple[str, str], ...] = ()  # (name, kind), e.g. ("api", "Deployment")
    cluster_name: str = ""
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    """Policies behind a policy verdict. ``policies`` are canonical ``flow.Policy`` dicts."""

    policies: tuple[dict, ...] = ()
    log: tuple[str, ...] = ()
    verdict: str = ""  # FORWARDED / DROPPED / AUDIT as the resolver sees it, "" = not known


class Resolver(Protocol):
    """Lookups the parser performs; see the module docstring for the contract."""

    @property
    def generation(self) -> int: ...

    def endpoint_by_id(self, endpoint_id: int) -> EndpointInfo | None: ...

    def endpoint_by_ip(self, ip: str) -> EndpointInfo | None: ...

    def identity_labels(self, identity: int) -> Sequence[str] | None: ...

    def interface_name(self, ifindex: int) -> str: ...

    def endpoint_ip_by_cgroup(self, cgroup_id: int, ipv6: bool) -> str | None: ...

    def policy_for_verdict(
        self,
        cookie: int,
        endpoint_id: int,
        ingress: bool,
        remote_identity: int,
        proto: int,
        dport: int,
    ) -> PolicyMatch | None: ...


@runtime_checkable
class DnsNameResolver(Protocol):
    """Optional resolver extension: the FQDNs an endpoint looked up for an IP (DNS proxy cache)."""

    def dns_names(self, endpoint_id: int, ip: str) -> Sequence[str]: ...


@runtime_checkable
class ServiceResolver(Protocol):
    """Optional resolver extension: the service behind a frontend address and port."""

    def service_by_addr(self, ip: str, port: int) -> dict | None: ...


@runtime_checkable
class NamesAndServices(DnsNameResolver, ServiceResolver, Protocol):
    """Both optional resolver extensions."""


@dataclass
class StaticResolver:
    """In-memory resolver. Mutate through the ``add_*``/``remove_*`` methods so ``generation`` moves."""

    endpoints: dict[int, EndpointInfo] = field(default_factory=dict)
    ipcache: dict[str, EndpointInfo] = field(default_factory=dict)
    identities: dict[int, tuple[str, ...]] = field(default_factory=dict)
    interfaces: dict[int, str] = field(default_factory=dict)
    cgroups: dict[int, tuple[str, ...]] = field(default_factory=dict)
    policies_by_cookie: dict[int, PolicyMatch] = field(default_factory=dict)
    names: dict[tuple[int, str], tuple[str, ...]] = field(default_factory=dict)
    services: dict[tuple[str, int], dict] = field(default_factory=dict)
    # (cookie, endpoint_id, ingress, remote_identity, proto, dport) -> PolicyMatch | None; when set
    # it answers policy_for_verdict instead of policies_by_cookie
    policy_explainer: Callable[[int, int, bool, int, int, int], PolicyMatch | None] | None = None
    generation: int = 0
    _by_ip: dict[str, EndpointInfo] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for ep in self.endpoints.values():
            for ip in ep.ips:
                self._by_ip[ip] = ep

    # --- mutation -------------------------------------------------------------------------------
    def add_endpoint(self, ep: EndpointInfo) -> None:
        """Register a local endpoint (``ep.id`` must be non-zero) under all of ``ep.ips``."""
        self.remove_endpoint(ep.id)
        self.endpoints[ep.id] = ep
        for ip in ep.ips:
            self._by_ip[ip] = ep
        if ep.identity and ep.identity not in self.identities:
            self.identities[ep.identity] = tuple(ep.labels)
        self.generation += 1

    def remove_endpoint(self, endpoint_id: int) -> None:
        ep = self.endpoints.pop(endpoint_id, None)
        if ep is not None:
            for ip in ep.ips:
                if self._by_ip.get(ip) is ep:
                    del self._by_ip[ip]
            self.generation += 1

    def set_ipcache(self, ip: str, identity: int, namespace: str = "", pod_name: str = "") -> None:
        self.ipcache[ip] = EndpointInfo(identity=identity, namespace=namespace, pod_name=pod_name)
        self.generation += 1

    def set_identity(self, identity: int, labels: Iterable[str]) -> None:
        self.identities[identity] = tuple(labels)
        self.generation += 1

    def set_interface(self, ifindex: int, name: str) -> None:
        self.interfaces[ifindex] = name
        self.generation += 1

    def set_cgroup(self, cgroup_id: int, ips: Iterable[str]) -> None:
        self.cgroups[cgroup_id] = tuple(ips)
        self.generation += 1

    def set_policy(self, cookie: int, match: PolicyMatch) -> None:
        self.policies_by_cookie[cookie] = match
        self.generation += 1

    def set_policy_explainer(
        self, explainer: Callable[[int, int, bool, int, int, int], PolicyMatch | None] | None
    ) -> None:
        """Answers policy_for_verdict from a live policy state (replaced at every policy change)."""
        self.policy_explainer = explainer
        self.generation += 1

    def set_dns_names(self, endpoint_id: int, ip: str, names: Iterable[str]) -> None:
        """Names endpoint ``endpoint_id`` looked up for ``ip`` (``endpoint_id`` 0: any endpoint)."""
        self.names[(endpoint_id, ip)] = tuple(names)
        self.generation += 1

    def set_service(self, ip: str, port: int, name: str, namespace: str = "") -> None:
        """A service frontend; ``port`` 0 matches any port of ``ip``."""
        service = {"name": name, "namespace": namespace} if namespace else {"name": name}
        self.services[(ip, port)] = service
        self.generation += 1

    def snapshot(self) -> StaticResolver:
        """A frozen copy of what the resolver answers now (same generation).

        The node's ring decodes events when a client reads them, with the snapshot that was
        current when they were captured: a pod deleted since still names itself. The policy
        explainer is shared (it answers from the policy state it was made for).
        """
        snap = StaticResolver(
            endpoints=dict(self.endpoints),
            ipcache=dict(self.ipcache),
            identities=dict(self.identities),
            interfaces=dict(self.interfaces),
            cgroups=dict(self.cgroups),
            policies_by_cookie=dict(self.policies_by_cookie),
            names=dict(self.names),
            services=dict(self.services),
            policy_explainer=self.policy_explainer,
            generation=self.generation,
        )
        snap._by_ip = dict(self._by_ip)
        return snap

    # --- Resolver protocol ---------------------------------------------------------------------
    def endpoint_by_id(self, endpoint_id: int) -> EndpointInfo | None:
        return self.endpoints.get(endpoint_id)

    def endpoint_by_ip(self, ip: str) -> EndpointInfo | None:
        ep = self._by_ip.get(ip)
        if ep is not None:
            return ep
        return self.ipcache.get(ip)

    def identity_labels(self, identity: int) -> Sequence[str] | None:
        labels = self.identities.get(identity)
        if labels is None:
            return RESERVED_IDENTITY_LABELS.get(identity)
        return labels

    def interface_name(self, ifindex: int) -> str:
        return self.interfaces.get(ifindex, "")

    def endpoint_ip_by_cgroup(self, cgroup_id: int, ipv6: bool) -> str | None:
        for ip in self.cgroups.get(cgroup_id, ()):
            if (":" in ip) == ipv6:
                return ip
        return None

    def policy_for_verdict(
        self,
        cookie: int,
        endpoint_id: int,
        ingress: bool,
        remote_identity: int,
        proto: int,
        dport: int,
    ) -> PolicyMatch | None:
        if self.policy_explainer is not None:
            return self.policy_explainer(cookie, endpoint_id, ingress, remote_identity, proto, dport)
        return self.policies_by_cookie.get(cookie) if cookie else None

    # --- optional extensions ------------------------------------------------------------------
    def dns_names(self, endpoint_id: int, ip: str) -> Sequence[str]:
        return self.names.get((endpoint_id, ip)) or self.names.get((0, ip), ())

    def service_by_addr(self, ip: str, port: int) -> dict | None:
        return self.services.get((ip, port)) or self.services.get((ip, 0))


def labels_from_mapping(source: str, labels: Mapping[str, str]) -> tuple[str, ...]:
    """Sorted ``source:key=value`` strings (``source:key`` when the value is empty)."""
    return tuple(sorted(f"{source}:{k}={v}" if v else f"{source}:{k}" for k, v in labels.items()))
