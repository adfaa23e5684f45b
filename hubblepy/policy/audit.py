"""Policy audit mode at three scopes: a pod, a namespace, one policy.

* **pod** and **namespace**: the endpoint's audit flag; every denial of that endpoint (explicit deny
  or default deny, either direction) passes with verdict AUDIT.
* **policy**: only the verdicts *that policy* would deny become AUDIT:

  - a deny entry whose deny rules all belong to audited policies becomes an audit-only deny
    (:data:`~hubblepy.policy.attribution.ACTION_AUDIT_DENY`). When some rule allows the packet it
    passes with verdict AUDIT; when nothing allows it, the default deny decides (next point), since
    the packet would be denied even without the audited policy. A deny rule of a policy that is not
    audited still drops, whatever else is audited;
  - a default deny passes as AUDIT only when **every** policy that engaged default deny for that
    endpoint and direction is audited; if any engaging policy is enforced, the flow stays DROPPED,
    because that policy alone would deny it;
  - allow rules of audited policies keep allowing;
  - exact and port-range (``endPort``) deny entries are treated alike.

:func:`apply_audit` turns a compile plus an :class:`AuditSettings` into what is written to the
datapath (entries with audit-only denies, per-endpoint flags) and the matching attribution snapshot.
Settings are keyed by names, not by endpoint ids, so they survive policy updates and pod recreation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from hubblepy.policy.attribution import ACTION_AUDIT_DENY, EndpointFlags, PolicySnapshot, is_deny_rule
from hubblepy.policy.compiler import ACTION_DENY, CompiledPolicy, CookieJar, PolicyKey, PolicyValue
from hubblepy.policy.model import CCNP, PolicyRef


@dataclass
class AuditSettings:
    """Audited pods (``ns/name``), namespaces, and policies as ``(namespace, name)`` ('' = cluster-wide)."""

    pods: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    policies: set[tuple[str, str]] = field(default_factory=set)

    def endpoint_scope(self, namespace: str, pod: str) -> str:
        """Why a whole endpoint is in audit mode ("pod ns/name", "namespace ns") or ''."""
        if f"{namespace}/{pod}" in self.pods:
            return f"pod {namespace}/{pod}"
        if namespace in self.namespaces:
            return f"namespace {namespace}"
        return ""

    def policy_audited(self, ref: PolicyRef) -> bool:
        return (ref.namespace, ref.name) in self.policies

    def to_json(self) -> dict:
        return {
            "pods": sorted(self.pods),
            "namespaces": sorted(self.namespaces),
            "policies": [f"{ns}/{name}" if ns else name for ns, name in sorted(self.policies)],
        }


def parse_policy_name(text: str) -> tuple[str, str]:
    """``NS/NAME`` (CiliumNetworkPolicy or NetworkPolicy) or ``NAME`` (cluster-wide) -> (ns, name)."""
    namespace, sep, name = text.strip().partition("/")
    if not sep:
        namespace, name = "", namespace
    if not name or "/" in name:
        raise ValueError(f"policy must be NAMESPACE/NAME or a cluster-wide policy's NAME, got {text!r}")
    return namespace, name


def matching_policies(refs: Iterable[PolicyRef], namespace: str, name: str) -> list[PolicyRef]:
    """Applied policies a (namespace, name) names: any namespaced kind, or a CCNP when namespace ''."""
    return [
        r
        for r in refs
        if r.name == name and r.namespace == namespace and (namespace or r.kind == CCNP or not r.namespace)
    ]


@dataclass
class AuditedPolicy:
    """What to write to the datapath for one sync."""

    entries: dict[PolicyKey, PolicyValue]
    flags: dict[int, EndpointFlags]
    snapshot: PolicySnapshot


def apply_audit(
    compiled: CompiledPolicy,
    cookies: CookieJar,
    settings: AuditSettings,
    endpoint_names: Mapping[int, tuple[str, str]],
    revision: int = 0,
    uids: Mapping[PolicyRef, str] | None = None,
) -> AuditedPolicy:
    """Entries and endpoint flags with the audit settings applied, and their attribution snapshot.

    ``endpoint_names`` maps endpoint ids to (namespace, pod name).
    """
    entries = dict(compiled.entries)
    if settings.policies:
        for key, value in compiled.entries.items():
            if value.action != ACTION_DENY:
                continue
            rules = [cookies.lookup(c) for c in compiled.contributors.get(key, [value.cookie])]
            deny_rules = [r for r in rules if r is not None and is_deny_rule(r)] or [r for r in rules if r]
            if deny_rules and all(settings.policy_audited(r.policy) for r in deny_rules):
                entries[key] = PolicyValue(ACTION_AUDIT_DENY, value.cookie)
    flags: dict[int, EndpointFlags] = {}
    for ep_id, info in compiled.endpoints.items():
        namespace, pod = endpoint_names.get(ep_id, ("", ""))
        ingress_by = list(info.ingress_default_deny_by or info.selected_by)
        egress_by = list(info.egress_default_deny_by or info.selected_by)
        flags[ep_id] = EndpointFlags(
            ingress_enforced=info.ingress_enforced,
            egress_enforced=info.egress_enforced,
            audit_scope=settings.endpoint_scope(namespace, pod),
            ingress_default_deny_by=ingress_by,
            egress_default_deny_by=egress_by,
            ingress_default_audited=_all_audited(ingress_by, settings, info.ingress_enforced),
            egress_default_audited=_all_audited(egress_by, settings, info.egress_enforced),
        )
    snapshot = PolicySnapshot(entries, compiled.contributors, flags, cookies, revision, uids)
    return AuditedPolicy(entries, flags, snapshot)


def _all_audited(refs: list[PolicyRef], settings: AuditSettings, enforced: bool) -> bool:
    return enforced and bool(refs) and all(settings.policy_audited(r) for r in refs)


__all__ = [
    "CSV_HEADER",
    "GROUPINGS",
    "AuditGroup",
    "AuditReport",
    "ExternalDestination",
    "AuditSettings",
    "AuditedPolicy",
    "apply_audit",
    "matching_policies",
    "flow_port_text",
    "is_external",
    "parse_policy_name",
]


# -- what would break: the audit report ---------------------------------------------------------

_L4_NAMES = ("TCP", "UDP", "SCTP")
_WORLD_IDENTITIES = frozenset((2, 9, 10))  # reserved:world, world-ipv4, world-ipv6
GROUPINGS = ("workload", "pod")


def _endpoint_text(endpoint: dict, ip: str, by: str = "pod") -> str:
    """``ns/workload`` (``by="workload"``: the Deployment, StatefulSet... owning the pod) or ``ns/pod``
    for pods, ``world``/``host``/... for reserved identities, else the IP."""
    pod = endpoint.get("pod_name")
    if pod:
        name = pod
        if by == "workload":
            for workload in endpoint.get("workloads") or ():
                if workload.get("name"):
                    name = workload["name"]
                    break
        return f"{endpoint.get('namespace', '')}/{name}"
    for label in endpoint.get("labels", ()):
        if label.startswith("reserved:"):
            return label[len("reserved:") :]
    return ip or f"identity {endpoint.get('identity', 0)}"


def is_external(endpoint: dict) -> bool:
    """Whether an endpoint is outside the cluster (a world identity)."""
    if endpoint.get("identity") in _WORLD_IDENTITIES:
        return True
    return any(label.startswith("reserved:world") for label in endpoint.get("labels", ()))


def flow_port_text(flow: dict) -> str:
    """``TCP/8080``, ``UDP/53``, ``ICMPv4 type 8``, or ``-``."""
    l4 = flow.get("l4") or {}
    for name in _L4_NAMES:
        if name in l4:
            return f"{name}/{l4[name].get('destination_port', 0)}"
    for name in ("ICMPv4", "ICMPv6"):
        if name in l4:
            return f"{name} type {l4[name].get('type', 0)}"
    return "-"


def _time_key(text: str) -> str:
    """RFC3339 UTC text that sorts by time whatever the number of fraction digits."""
    head, dot, frac = text.rstrip("Z").partition(".")
    return head + "." + frac.ljust(9, "0")


@dataclass
class _Seen:
    count: int = 0
    first_seen: str = ""
    last_seen: str = ""

    def see(self, when: str) -> None:
        self.count += 1
        if when:
            if not self.first_seen or _time_key(when) < _time_key(self.first_seen):
                self.first_seen = when
            if not self.last_seen or _time_key(when) > _time_key(self.last_seen):
                self.last_seen = when


@dataclass
class AuditGroup(_Seen):
    source: str = ""
    destination: str = ""
    port: str = ""
    direction: str = ""
    policies: list[str] = field(default_factory=list)
    policy_log: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "destination": self.destination,
            "port": self.port,
            "direction": self.direction,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "would_be_denied_by": self.policies,
            "policy_log": self.policy_log,
        }


@dataclass
class ExternalDestination(_Seen):
    """Audited egress to one destination outside the cluster (its DNS names when known, else its IP)."""

    destination: str = ""
    port: str = ""
    named: bool = False  # the destination is DNS names, not an IP
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "destination": self.destination,
            "port": self.port,
            "by_name": self.named,
            "count": self.count,
            "sources": self.sources,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


CSV_HEADER = (
    "source",
    "destination",
    "port",
    "direction",
    "count",
    "first_seen",
    "last_seen",
    "would_be_denied_by",
)


class AuditReport:
    """AUDIT verdicts grouped by source, destination, port (and direction): what enforcement breaks.

    Sources and destinations are workloads (``by="workload"``: the Deployment or StatefulSet a pod
    belongs to, the pod itself when the flow names no workload) or pods (``by="pod"``). Egress to
    destinations outside the cluster is also summed up per destination (by DNS name when the flow
    carries one) and port.
    """

    def __init__(self, by: str = "workload") -> None:
        if by not in GROUPINGS:
            raise ValueError(f"unknown grouping {by!r} ({', '.join(GROUPINGS)})")
        self.by = by
        self._groups: dict[tuple[str, str, str, str], AuditGroup] = {}
        self._external: dict[tuple[str, str], ExternalDestination] = {}
        self.flows = 0

    def add(self, flow: dict) -> bool:
        """Counts one flow if its verdict is AUDIT; returns whether it did."""
        if flow.get("verdict") != "AUDIT":
            return False
        ip = flow.get("IP") or {}
        direction = flow.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN")
        source = _endpoint_text(flow.get("source") or {}, ip.get("source", ""), self.by)
        destination_endpoint = flow.get("destination") or {}
        port = flow_port_text(flow)
        key = (
            source,
            _endpoint_text(destination_endpoint, ip.get("destination", ""), self.by),
            port,
            direction,
        )
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = AuditGroup(
                source=key[0], destination=key[1], port=key[2], direction=key[3]
            )
        when = flow.get("time", "")
        group.see(when)
        self.flows += 1
        for policy in [*flow.get("ingress_denied_by", ()), *flow.get("egress_denied_by", ())]:
            name = policy.get("name", "")
            if not name:
                continue
            ns = policy.get("namespace", "")
            text = f"{ns}/{name}" if ns else name
            if policy.get("kind"):
                text += f" ({policy['kind']})"
            if text not in group.policies:
                group.policies.append(text)
        for line in flow.get("policy_log", ()):
            if line not in group.policy_log:
                group.policy_log.append(line)
        if direction != "INGRESS" and is_external(destination_endpoint):
            self._add_external(flow, ip.get("destination", ""), port, source, when)
        return True

    def _add_external(self, flow: dict, ip: str, port: str, source: str, when: str) -> None:
        names = flow.get("destination_names") or []
        target = ",".join(sorted(set(names))) if names else (ip or "-")
        entry = self._external.get((target, port))
        if entry is None:
            entry = self._external[(target, port)] = ExternalDestination(
                destination=target, port=port, named=bool(names)
            )
        entry.see(when)
        if source not in entry.sources:
            entry.sources.append(source)

    def groups(self) -> list[AuditGroup]:
        """Most frequent first, then by source, destination, port."""
        return sorted(
            self._groups.values(), key=lambda g: (-g.count, g.source, g.destination, g.port, g.direction)
        )

    def external(self) -> list[ExternalDestination]:
        """Audited egress outside the cluster, most frequent first."""
        return sorted(self._external.values(), key=lambda e: (-e.count, e.destination, e.port))

    def to_json(self) -> dict:
        return {
            "audited_flows": self.flows,
            "grouped_by": self.by,
            "groups": [g.to_json() for g in self.groups()],
            "external_destinations": [e.to_json() for e in self.external()],
        }

    def csv_rows(self) -> list[list[str]]:
        """The groups as CSV rows, header first (policies joined with ``; ``)."""
        rows = [list(CSV_HEADER)]
        for g in self.groups():
            rows.append(
                [
                    g.source,
                    g.destination,
                    g.port,
                    g.direction,
                    str(g.count),
                    g.first_seen,
                    g.last_seen,
                    "; ".join(g.policies),
                ]
            )
        return rows

    def table(self, columns: Callable[[list[list[str]]], list[str]] | None = None) -> str:
        """The report as text; ``columns`` draws each table (default: plain aligned columns)."""
        columns = columns or _columns
        rows = [
            [
                "SOURCE",
                "DESTINATION",
                "PORT",
                "DIRECTION",
                "COUNT",
                "FIRST SEEN",
                "LAST SEEN",
                "WOULD BE DENIED BY",
            ]
        ]
        for g in self.groups():
            rows.append(
                [
                    g.source,
                    g.destination,
                    g.port,
                    g.direction,
                    str(g.count),
                    g.first_seen or "-",
                    g.last_seen or "-",
                    ", ".join(g.policies) or "-",
                ]
            )
        lines = columns(rows)
        groups = len(self._groups)
        lines.append(
            f"\n{self.flows} audited flow{'s' if self.flows != 1 else ''} in {groups} group"
            f"{'s' if groups != 1 else ''} would be dropped if enforcement were turned on."
        )
        external = self.external()
        if external:
            lines.append("\nAudited egress leaving the cluster (would be dropped too):")
            rows = [["DESTINATION", "PORT", "COUNT", "FROM"]]
            rows.extend([e.destination, e.port, str(e.count), ", ".join(e.sources)] for e in external)
            lines.extend(columns(rows))
        return "\n".join(lines) + "\n"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
