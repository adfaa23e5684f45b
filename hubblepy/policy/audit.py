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

from collections.abc import Iterable, Mapping
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
    "AuditGroup",
    "AuditReport",
    "AuditSettings",
    "AuditedPolicy",
    "apply_audit",
    "matching_policies",
    "flow_port_text",
    "parse_policy_name",
]


# -- what would break: the audit report ---------------------------------------------------------

_L4_NAMES = ("TCP", "UDP", "SCTP")


def _endpoint_text(endpoint: dict, ip: str) -> str:
    """``ns/pod`` for pods, ``world``/``host``/... for reserved identities, else the IP."""
    if endpoint.get("pod_name"):
        return f"{endpoint.get('namespace', '')}/{endpoint['pod_name']}"
    for label in endpoint.get("labels", ()):
        if label.startswith("reserved:"):
            return label[len("reserved:") :]
    return ip or f"identity {endpoint.get('identity', 0)}"


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
class AuditGroup:
    source: str
    destination: str
    port: str
    direction: str
    count: int = 0
    first_seen: str = ""
    last_seen: str = ""
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


class AuditReport:
    """AUDIT verdicts grouped by source, destination, port (and direction): what enforcement breaks."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str, str], AuditGroup] = {}
        self.flows = 0

    def add(self, flow: dict) -> bool:
        """Counts one flow if its verdict is AUDIT; returns whether it did."""
        if flow.get("verdict") != "AUDIT":
            return False
        ip = flow.get("IP") or {}
        direction = flow.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN")
        key = (
            _endpoint_text(flow.get("source") or {}, ip.get("source", "")),
            _endpoint_text(flow.get("destination") or {}, ip.get("destination", "")),
            flow_port_text(flow),
            direction,
        )
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = AuditGroup(*key)
        group.count += 1
        self.flows += 1
        when = flow.get("time", "")
        if when:
            if not group.first_seen or _time_key(when) < _time_key(group.first_seen):
                group.first_seen = when
            if not group.last_seen or _time_key(when) > _time_key(group.last_seen):
                group.last_seen = when
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
        return True

    def groups(self) -> list[AuditGroup]:
        """Most frequent first, then by source, destination, port."""
        return sorted(
            self._groups.values(), key=lambda g: (-g.count, g.source, g.destination, g.port, g.direction)
        )

    def to_json(self) -> dict:
        return {"audited_flows": self.flows, "groups": [g.to_json() for g in self.groups()]}

    def table(self) -> str:
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
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        groups = len(self._groups)
        lines.append(
            f"\n{self.flows} audited flow{'s' if self.flows != 1 else ''} in {groups} group"
            f"{'s' if groups != 1 else ''} would be dropped if enforcement were turned on."
            if self.flows
            else "\nNo audited flows: turning enforcement on would drop nothing that was seen."
        )
        return "\n".join(lines) + "\n"
