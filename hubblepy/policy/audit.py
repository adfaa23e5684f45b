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
  - limitation: a deny rule with an ``endPort`` range stays enforced even when its policy is audited.

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
            if value.action != ACTION_DENY or key.end_port > key.dport:
                continue  # port-range denies stay enforced (the range trie has no audit action)
            rules = [cookies.lookup(c) for c in compiled.contributors.get(key, [value.cookie])]
            deny_rules = [r for r in rules if is_deny_rule(r)] or [r for r in rules if r]
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
    "AuditSettings",
    "AuditedPolicy",
    "apply_audit",
    "matching_policies",
    "parse_policy_name",
]
