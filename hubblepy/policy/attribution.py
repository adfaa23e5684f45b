"""Which policies decided a verdict: the datapath's policy-map lookup replayed in user space.

A :class:`PolicySnapshot` holds what one policy sync wrote to the datapath (entries with their
actions and cookies, per-endpoint enforcement and audit flags) plus what the entries came from (the
contributing rules of every entry, the policies that engaged default deny). ``explain()`` takes what
a policy-verdict or drop event carries (endpoint, direction, remote identity, protocol, port) and
returns an :class:`Explanation`: the verdict the datapath gave, the policies behind it as canonical
``flow.Policy`` dicts and ``policy_log`` lines. Wording of the log lines (docs/policy/attribution.md):

* ``allow: CiliumNetworkPolicy payments/api-allow spec.ingress[0]`` (one line per contributing rule)
* ``deny: CiliumNetworkPolicy payments/no-db spec.egressDeny[0]``
* ``default deny: no rule of [payments/default-deny (CiliumNetworkPolicy), payments/api-allow
  (CiliumNetworkPolicy)] allows ingress from identity 60001 to TCP/8080`` (egress: ``allows egress to
  identity 60001 at UDP/53``)
* an AUDIT verdict gets the line the denial would have had, prefixed with the audit scope that let it
  pass: ``audit (pod payments/api): ...``, ``audit (namespace payments): ...``, ``audit (policy
  payments/default-deny): ...``.

The lookup order is the datapath's (bpf/endpoint.c ``policy_lookup``): L3+L4, L3+proto, L3-only,
L4-only, proto-only, allow-all, then port ranges; an enforced deny at any level wins, then an audit-only
deny if some entry allows the packet (without an allow the default deny decides), then the most
specific allow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hubblepy.policy.compiler import (
    ACTION_ALLOW,
    ACTION_DENY,
    CompiledPolicy,
    CookieJar,
    PolicyKey,
    PolicyValue,
)
from hubblepy.policy.model import INGRESS, PolicyRef, RuleRef

ACTION_AUDIT_DENY = 3  # a deny entry of an audited policy: the packet passes with verdict AUDIT
DENY_RULE_OFFSET = 5000  # RuleRef.index % 10000 at or above this: an ingressDeny/egressDeny rule
RESERVED_KIND = "reserved"

FORWARDED = "FORWARDED"
DROPPED = "DROPPED"
AUDIT = "AUDIT"

_PROTO_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP"}
_ICMP_NAMES = {1: "ICMP", 58: "ICMPv6"}
_UID_NAMESPACE = uuid.UUID("5f8e3c2a-6b1d-4c7e-9a0f-2d4b6c8e0a13")


def is_deny_rule(ref: RuleRef | None) -> bool:
    return ref is not None and ref.index % 10000 >= DENY_RULE_OFFSET


def port_text(proto: int, dport: int) -> str:
    """``TCP/8080``, ``UDP/53``, ``ICMP type 8``, ``protocol 47``."""
    name = _PROTO_NAMES.get(proto)
    if name is not None:
        return f"{name}/{dport}"
    icmp = _ICMP_NAMES.get(proto)
    if icmp is not None:
        return f"{icmp} type {dport}"
    return f"protocol {proto}"


def policy_uid(ref: PolicyRef, document: object = None) -> str:
    """The document's ``metadata.uid`` when given, else a UUID derived from kind/namespace/name."""
    if isinstance(document, dict):
        meta = document.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("uid"), str) and meta["uid"]:
            return meta["uid"]
    return str(uuid.uuid5(_UID_NAMESPACE, f"{ref.kind}/{ref.namespace}/{ref.name}"))


def policy_dict(ref: PolicyRef, revision: int, uid: str = "") -> dict:
    """A canonical ``flow.Policy`` dict with Cilium's derived-from/name/namespace/uid labels."""
    if ref.kind == RESERVED_KIND:
        return {"labels": [f"reserved:{ref.name}-ingress"], "revision": str(revision)}
    labels = [
        f"k8s:io.cilium.k8s.policy.derived-from={ref.kind}",
        f"k8s:io.cilium.k8s.policy.name={ref.name}",
    ]
    out: dict = {"name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
        labels.append(f"k8s:io.cilium.k8s.policy.namespace={ref.namespace}")
    labels.append(f"k8s:io.cilium.k8s.policy.uid={uid or policy_uid(ref)}")
    out["labels"] = sorted(labels)
    if revision:
        out["revision"] = str(revision)
    out["kind"] = ref.kind
    return out


def ref_text(ref: PolicyRef) -> str:
    """``payments/api-allow (CiliumNetworkPolicy)``."""
    return f"{ref} ({ref.kind})"


@dataclass
class EndpointFlags:
    """What the datapath knows about one endpoint's policy state."""

    ingress_enforced: bool = False
    egress_enforced: bool = False
    audit_scope: str = ""  # "pod ns/name" or "namespace ns" when the whole endpoint is in audit mode
    ingress_default_deny_by: list[PolicyRef] = field(default_factory=list)
    egress_default_deny_by: list[PolicyRef] = field(default_factory=list)
    ingress_default_audited: bool = False  # every policy engaging default deny is audited
    egress_default_audited: bool = False

    def enforced(self, direction: int) -> bool:
        return self.ingress_enforced if direction == INGRESS else self.egress_enforced

    def default_deny_by(self, direction: int) -> list[PolicyRef]:
        return self.ingress_default_deny_by if direction == INGRESS else self.egress_default_deny_by

    def default_audited(self, direction: int) -> bool:
        return self.ingress_default_audited if direction == INGRESS else self.egress_default_audited


@dataclass(frozen=True)
class Explanation:
    """A verdict and what decided it. ``policies`` are canonical ``flow.Policy`` dicts."""

    verdict: str  # FORWARDED, DROPPED or AUDIT
    policies: tuple[dict, ...]
    log: tuple[str, ...]
    match: str  # "allow", "deny" or "default-deny"


class PolicySnapshot:
    """The policy state of one sync, answering "what decided this verdict?"."""

    def __init__(
        self,
        entries: Mapping[PolicyKey, PolicyValue],
        contributors: Mapping[PolicyKey, list[int]],
        endpoints: Mapping[int, EndpointFlags],
        cookies: CookieJar,
        revision: int = 0,
        uids: Mapping[PolicyRef, str] | None = None,
    ) -> None:
        self.entries = entries
        self.contributors = contributors
        self.endpoints = endpoints
        self.cookies = cookies
        self.revision = revision
        self.uids = dict(uids or {})
        self._dicts: dict[PolicyRef, dict] = {}
        # port-range entries (endPort) per (endpoint, direction): looked up after the exact keys
        self._ranges: dict[tuple[int, int], list[PolicyKey]] = {}
        for key in entries:
            if key.end_port > key.dport:
                self._ranges.setdefault((key.ep_id, key.direction), []).append(key)

    @classmethod
    def from_compiled(
        cls,
        compiled: CompiledPolicy,
        cookies: CookieJar,
        revision: int = 0,
        uids: Mapping[PolicyRef, str] | None = None,
    ) -> PolicySnapshot:
        """A snapshot of a compile with no audit mode anywhere."""
        flags = {
            ep: EndpointFlags(
                ingress_enforced=info.ingress_enforced,
                egress_enforced=info.egress_enforced,
                ingress_default_deny_by=list(info.ingress_default_deny_by or info.selected_by),
                egress_default_deny_by=list(info.egress_default_deny_by or info.selected_by),
            )
            for ep, info in compiled.endpoints.items()
        }
        return cls(compiled.entries, compiled.contributors, flags, cookies, revision, uids)

    # -- the lookup -----------------------------------------------------------------------------
    def lookup(self, ep_id: int, direction: int, remote: int, proto: int, dport: int) -> PolicyKey | None:
        """The entry the datapath would pick (deny > audit deny > most specific allow), or None."""
        entries = self.entries
        allow = audit = None
        for identity, port, protocol in (
            (remote, dport, proto),
            (remote, 0, proto),
            (remote, 0, 0),
            (0, dport, proto),
            (0, 0, proto),
            (0, 0, 0),
        ):
            key = PolicyKey(ep_id, direction, identity, port, protocol)
            value = entries.get(key)
            if value is None:
                continue
            if value.action == ACTION_DENY:
                return key
            if value.action == ACTION_AUDIT_DENY:
                if audit is None:
                    audit = key
            elif allow is None:
                allow = key
        ranges = self._ranges.get((ep_id, direction))
        if ranges and proto:
            # as the datapath: range denies (this peer, then any peer) win; then audit-only range
            # denies when no exact one matched; range allows count when no exact entry allowed
            deny = self._range(ranges, ACTION_DENY, remote, proto, dport)
            if deny is not None:
                return deny
            if audit is None:
                audit = self._range(ranges, ACTION_AUDIT_DENY, remote, proto, dport)
            if allow is None:
                allow = self._range(ranges, ACTION_ALLOW, remote, proto, dport)
        # an audit-only deny decides only when something allows: otherwise default deny decides
        return audit if audit is not None and allow is not None else allow

    def _range(
        self, ranges: list[PolicyKey], action: int, remote: int, proto: int, dport: int
    ) -> PolicyKey | None:
        for identity in (remote, 0):
            for key in ranges:
                if (
                    key.identity == identity
                    and key.proto == proto
                    and key.dport <= dport <= key.end_port
                    and self.entries[key].action == action
                ):
                    return key
        return None

    def explain(self, ep_id: int, direction: int, remote: int, proto: int, dport: int) -> Explanation | None:
        """What decided a new connection of endpoint ``ep_id``; None when no policy applies."""
        flags = self.endpoints.get(ep_id)
        if flags is None or not flags.enforced(direction):
            return None
        key = self.lookup(ep_id, direction, remote, proto, dport)
        if key is None:
            engaged = flags.default_deny_by(direction)
            line = self._default_deny_line(engaged, direction, remote, proto, dport)
            policies = tuple(self._policy(ref) for ref in engaged)
            if flags.audit_scope:
                return Explanation(AUDIT, policies, (f"audit ({flags.audit_scope}): {line}",), "default-deny")
            if flags.default_audited(direction):
                scope = _policies_scope(engaged)
                return Explanation(AUDIT, policies, (f"audit ({scope}): {line}",), "default-deny")
            return Explanation(DROPPED, policies, (line,), "default-deny")
        value = self.entries[key]
        rules = [r for r in (self.cookies.lookup(c) for c in self.contributors.get(key, [value.cookie])) if r]
        if value.action == ACTION_ALLOW:
            rules = [r for r in rules if not is_deny_rule(r)] or rules
            allow_lines = tuple(_rule_line("allow", r) for r in rules)
            return Explanation(FORWARDED, self._policies(rules), allow_lines, "allow")
        deny_rules = [r for r in rules if is_deny_rule(r)] or rules
        lines = [_rule_line("deny", r) for r in deny_rules]
        policies = self._policies(deny_rules)
        if value.action == ACTION_AUDIT_DENY:
            scope = _policies_scope(_unique(r.policy for r in deny_rules))
            return Explanation(AUDIT, policies, tuple(f"audit ({scope}): {x}" for x in lines), "deny")
        if flags.audit_scope:
            return Explanation(
                AUDIT, policies, tuple(f"audit ({flags.audit_scope}): {x}" for x in lines), "deny"
            )
        return Explanation(DROPPED, policies, tuple(lines), "deny")

    # -- helpers --------------------------------------------------------------------------------
    def _policy(self, ref: PolicyRef) -> dict:
        found = self._dicts.get(ref)
        if found is None:
            found = policy_dict(ref, self.revision, self.uids.get(ref, ""))
            self._dicts[ref] = found
        return found

    def _policies(self, rules: Iterable[RuleRef]) -> tuple[dict, ...]:
        return tuple(self._policy(ref) for ref in _unique(r.policy for r in rules))

    @staticmethod
    def _default_deny_line(
        engaged: list[PolicyRef], direction: int, remote: int, proto: int, dport: int
    ) -> str:
        names = ", ".join(ref_text(r) for r in engaged)
        if direction == INGRESS:
            what = f"ingress from identity {remote} to {port_text(proto, dport)}"
        else:
            what = f"egress to identity {remote} at {port_text(proto, dport)}"
        return f"default deny: no rule of [{names}] allows {what}"


def _rule_line(action: str, ref: RuleRef) -> str:
    if ref.policy.kind == RESERVED_KIND:
        return f"{action}: the host may always reach its endpoints ({ref.policy.name})"
    return f"{action}: {ref.describe()}"


def _unique(refs: Iterable[PolicyRef]) -> list[PolicyRef]:
    seen: dict[PolicyRef, None] = {}
    for ref in refs:
        seen.setdefault(ref, None)
    return list(seen)


def _policies_scope(refs: list[PolicyRef]) -> str:
    names = ", ".join(str(r) for r in refs)
    return f"policy {names}" if len(refs) == 1 else f"policies {names}"


__all__ = [
    "ACTION_AUDIT_DENY",
    "AUDIT",
    "DROPPED",
    "FORWARDED",
    "EndpointFlags",
    "Explanation",
    "PolicySnapshot",
    "is_deny_rule",
    "policy_dict",
    "policy_uid",
    "port_text",
    "ref_text",
]
