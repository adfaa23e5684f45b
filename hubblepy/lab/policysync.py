"""Policy sync of the lab node: the policy repository compiled for every pod and written to the datapath.

:class:`PolicySync` owns the applied policies (:class:`~hubblepy.policy.PolicyRepository`), the audit
settings and the CIDR identities the policies need. ``sync(pods)`` recompiles everything for the pods
given, writes only the changed policy-map entries, the enforcement and audit flags, records on each
:class:`~hubblepy.lab.pods.Pod` what it computed (shown by ``hubble lab status``), and hands the
parser's resolver an explainer for policy attribution.

With an FQDN cache (:attr:`PolicySync.names`, set by the node), toFQDNs selectors select the cached
IPs: :meth:`PolicySync.learn` applies one DNS answer incrementally (new /32 identities in the
ipcache, their policy-map entries) and :meth:`PolicySync.expire` recompiles when IPs expire.

Every policy import and removal is an agent event (``POLICY_UPDATED`` / ``POLICY_DELETED``) and every
CIDR identity written into or removed from the ipcache an ``IPCACHE_UPSERTED`` / ``IPCACHE_DELETED``
(:attr:`PolicySync.events`, :attr:`PolicySync.ipcache_events`, set by the node).

The compiler's values become datapath entries in one place, :func:`datapath_entry`; that is where
the L7 redirect port (``PolicyValue.proxy_port`` -> ``PolicyEntry.proxy_port``) passes through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hubblepy.fqdn.cache import Update
from hubblepy.fqdn.matcher import FQDNSelector
from hubblepy.fqdn.names import NameManager, host_prefix
from hubblepy.lab.errors import LabError
from hubblepy.lab.pods import Pod
from hubblepy.observer.agentevents import AgentEventPublisher, IPCacheEvents, policy_update
from hubblepy.policy import (
    ACTION_DENY,
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyRepository,
    compile_policies,
    parse_policies,
)
from hubblepy.policy.attribution import (
    ACTION_AUDIT_DENY,
    PolicySnapshot,
    policy_dict,
    policy_uid,
    port_text,
)
from hubblepy.policy.audit import (
    AuditedPolicy,
    AuditSettings,
    apply_audit,
    matching_policies,
    parse_policy_name,
)
from hubblepy.policy.cidr import policy_prefixes
from hubblepy.policy.compiler import CompiledPolicy, PolicyKey, PolicyValue, add_fqdn_identities
from hubblepy.policy.identity import cidr_labels
from hubblepy.policy.model import Policy, PolicyRef

if TYPE_CHECKING:
    from hubblepy.datapath import Datapath, PolicyEntry
    from hubblepy.parser import PolicyMatch, StaticResolver

Explainer = Callable[[int, int, bool, int, int, int], "PolicyMatch | None"]


@dataclass
class SyncStats:
    """Policy-map entries one sync wrote."""

    added: int = 0
    changed: int = 0
    removed: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def datapath_entry(key: PolicyKey, value: PolicyValue) -> PolicyEntry:
    """The datapath's policy-map entry for one compiled (key, value); L7 entries carry the proxy port."""
    from hubblepy.datapath import PolicyEntry

    return PolicyEntry(
        identity=key.identity,
        dport=key.dport,
        proto=key.proto,
        deny=value.action in (ACTION_DENY, ACTION_AUDIT_DENY),
        audit=value.action == ACTION_AUDIT_DENY,
        cookie=value.cookie,
        end_port=key.end_port,
        proxy_port=value.proxy_port,
    )


def policy_event(policy: Policy, revision: int, deleted: bool = False) -> dict[str, Any]:
    """The agent event of one policy imported (or deleted) at ``revision``, with the number of rules.

    An import carries the labels once per rule (the agent joins the labels of every rule it adds);
    a deletion carries the labels it deleted by, once.
    """
    labels = policy_dict(policy.ref, revision, policy_uid(policy.ref, policy.document))["labels"]
    rules = len(policy.specs)
    if not deleted:
        labels = labels * max(rules, 1)
    return policy_update(labels, revision, rules, deleted=deleted)


def redirect_text(key: PolicyKey, proxy_port: int) -> str:
    """``ingress TCP/8080 from identity 256 -> proxy 15001`` (``from any`` for every peer)."""
    direction = "ingress" if key.direction == INGRESS else "egress"
    peer = f"identity {key.identity}" if key.identity else "any"
    where = "from" if key.direction == INGRESS else "to"
    return f"{direction} {port_text(key.proto, key.dport)} {where} {peer} -> proxy {proxy_port}"


def explainer(snapshot: PolicySnapshot) -> Explainer:
    """The parser resolver's ``policy_for_verdict`` over one policy sync (attribution)."""
    from hubblepy.parser import PolicyMatch

    def explain(
        cookie: int, ep_id: int, ingress: bool, remote: int, proto: int, dport: int
    ) -> PolicyMatch | None:
        found = snapshot.explain(ep_id, INGRESS if ingress else EGRESS, remote, proto, dport)
        if found is None:
            return None
        return PolicyMatch(policies=found.policies, log=found.log, verdict=found.verdict)

    return explain


class PolicySync:
    """Applied policies, audit settings and CIDR identities, and their sync to the datapath."""

    def __init__(
        self,
        identities: IdentityAllocator,
        resolver: StaticResolver,
        datapath: Datapath | None = None,
    ) -> None:
        self.identities = identities
        self.resolver = resolver
        self.datapath = datapath
        self.cookies = CookieJar()
        self.repo = PolicyRepository()
        self.audit = AuditSettings()  # by names: survives policy updates and pod recreation
        self.stats = SyncStats()
        # called after every sync with the compile and the policies' uids (the node's L7 proxy state)
        self.on_sync: Callable[[CompiledPolicy, dict[PolicyRef, str]], None] | None = None
        self.compiled: CompiledPolicy | None = None
        # toFQDNs: the names learned from DNS answers (set by the node when it has an FQDN cache)
        self.names: NameManager | None = None
        self.fqdn_stats = {"incremental": 0, "full": 0, "unchanged": 0}
        self._pods: list[Pod] = []
        self._audited: AuditedPolicy | None = None
        self._uids: dict[PolicyRef, str] = {}
        # agent events: policy changes, and the CIDR identities' ipcache entries (set by the node)
        self.events = AgentEventPublisher()
        self.ipcache_events = IPCacheEvents(self.events)

    # -- sync -------------------------------------------------------------------------------------
    def sync(self, pods: Iterable[Pod]) -> SyncStats:
        """Recompiles every policy for every pod and writes only the changed map entries."""
        pods = self._pods = list(pods)
        if self.names is not None:
            self.names.set_selectors(self._fqdn_selectors())
        self._sync_cidr_identities()
        endpoints = [Endpoint(p.ep_id, p.identity, p.labels, p.ports) for p in pods]
        named: dict[int, list[tuple[str, int, int]]] = {}
        for p in pods:
            named.setdefault(p.identity, []).extend(p.ports)
        policies = self.repo.policies()
        compiled = compile_policies(
            policies,
            endpoints,
            dict(self.identities.items()),
            self.cookies,
            named_ports=named,
            fqdn_identities=self.names.identities() if self.names is not None else None,
        )
        uids = {p.ref: policy_uid(p.ref, p.document) for p in policies}
        audited = apply_audit(
            compiled,
            self.cookies,
            self.audit,
            {p.ep_id: (p.namespace, p.name) for p in pods},
            self.repo.revision,
            uids,
        )
        redirects: dict[int, list[str]] = {}
        for key, value in compiled.entries.items():
            if value.proxy_port:
                redirects.setdefault(key.ep_id, []).append(redirect_text(key, value.proxy_port))
        grouped: dict[tuple[int, int], list[tuple[PolicyKey, PolicyValue]]] = {}
        for key, value in audited.entries.items():
            grouped.setdefault((key.ep_id, key.direction), []).append((key, value))
        stats = SyncStats()
        for pod in pods:
            info = compiled.endpoints[pod.ep_id]
            flags = audited.flags[pod.ep_id]
            pod.ingress_enforced, pod.egress_enforced = info.ingress_enforced, info.egress_enforced
            pod.policies = [str(ref) for ref in info.selected_by]
            pod.redirects = sorted(redirects.get(pod.ep_id, []))
            pod.audit = bool(flags.audit_scope)
            pod.audit_scope = flags.audit_scope
            pod.default_deny_audited = [
                d
                for d, on in (
                    ("ingress", flags.ingress_default_audited),
                    ("egress", flags.egress_default_audited),
                )
                if on
            ]
            if self.datapath is None:
                continue
            for direction in (INGRESS, EGRESS):
                entries = [datapath_entry(k, v) for k, v in grouped.get((pod.ep_id, direction), [])]
                diff = self.datapath.set_policy_entries(pod.ep_id, direction, entries)
                stats.added += diff.added
                stats.changed += diff.changed
                stats.removed += diff.removed
            self.datapath.set_enforcement(
                pod.ep_id, ingress=info.ingress_enforced, egress=info.egress_enforced
            )
            self.datapath.set_audit(pod.ep_id, bool(flags.audit_scope))
            self.datapath.set_default_audit(
                pod.ep_id, flags.ingress_default_audited, flags.egress_default_audited
            )
        self.resolver.set_policy_explainer(explainer(audited.snapshot))
        self.stats = stats
        self.compiled = compiled
        self._audited = audited
        self._uids = uids
        if self.on_sync is not None:
            self.on_sync(compiled, uids)
        return stats

    def _sync_cidr_identities(self) -> None:
        """CIDR identities for every prefix the policies name, written into the ipcache (LPM trie)."""
        wanted = set(policy_prefixes(self.repo.policies()))
        if self.names is not None:
            wanted |= self.names.prefixes().keys()
        current = self.identities.cidr_identities()
        for prefix in sorted(wanted - current.keys()):
            identity = self.identities.allocate_cidr(prefix)
            if self.datapath is not None:
                self.datapath.set_ipcache(prefix, identity)
            self.resolver.set_identity(identity, self.identities.labels_of(identity) or ())
            self.ipcache_events.upsert(prefix, identity)
        for prefix in sorted(current.keys() - wanted):
            if self.datapath is not None:
                self.datapath.delete_ipcache(prefix)
            self.identities.release(current[prefix])
            self.ipcache_events.delete(prefix)

    # -- toFQDNs -----------------------------------------------------------------------------------
    def _fqdn_selectors(self) -> set[FQDNSelector]:
        return {
            sel
            for p in self.repo.policies()
            for spec in p.specs
            for rule in spec.egress or ()
            for sel in rule.fqdns or ()
        }

    def allocate_fqdn_ip(self, ip: str) -> int:
        """The /32 identity of an IP a toFQDNs selector selects, installed in the ipcache."""
        prefix = host_prefix(ip)
        known = self.identities.lookup(cidr_labels(prefix))
        if known is not None:
            return known
        identity = self.identities.allocate_cidr(prefix)
        if self.datapath is not None:
            self.datapath.set_ipcache(prefix, identity)
        self.resolver.set_identity(identity, self.identities.labels_of(identity) or ())
        self.ipcache_events.upsert(prefix, identity)
        return identity

    def learn(self, update: Update) -> str:
        """Applies one DNS answer: "unchanged", "incremental" (new entries written) or "full" (resynced).

        When this returns, every policy-map entry the answer's IPs need is in the datapath.
        """
        names = self.names
        if names is None:
            return "unchanged"
        additions = names.learn(update)
        if not additions:
            self.fqdn_stats["unchanged"] += 1
            return "unchanged"
        compiled, audited = self.compiled, self._audited
        result = add_fqdn_identities(compiled, additions, names.identity_ip) if compiled is not None else None
        if result is None or audited is None:
            self.sync(self._pods)
            self.fqdn_stats["full"] += 1
            return "full"
        touched: dict[tuple[int, int], list[PolicyEntry]] = {}
        for key, value in result.entries.items():
            audited.entries[key] = value
            touched.setdefault((key.ep_id, key.direction), []).append(datapath_entry(key, value))
        if self.datapath is not None:
            for (ep_id, direction), changed in touched.items():
                self.datapath.upsert_policy_entries(ep_id, direction, changed)
        if result.l7 and self.on_sync is not None:
            self.on_sync(compiled, self._uids)  # type: ignore[arg-type]
        self.fqdn_stats["incremental"] += 1
        return "incremental"

    def names_gone(self, gone: Iterable[tuple[str, str]]) -> None:
        """(name, IP) pairs a removed endpoint alone held: forgotten now, compiled at the next sync."""
        if self.names is not None:
            self.names.forget(gone)

    def expire(self, gone: Iterable[tuple[str, str]]) -> bool:
        """(name, IP) pairs gone from the FQDN cache: recompiles when a selector lost an IP."""
        if self.names is None or not self.names.forget(gone):
            return False
        self.sync(self._pods)
        return True

    # -- requests ---------------------------------------------------------------------------------
    def apply_policies(self, policies: Iterable[Policy]) -> list[PolicyRef]:
        """Adds or replaces validated policies (no sync); one ``POLICY_UPDATED`` event per policy."""
        batch = list(policies)
        refs = self.repo.apply(batch)
        for policy in batch:
            self.events.publish(policy_event(policy, self.repo.revision))
        return refs

    def delete_policies(self, refs: Iterable[PolicyRef]) -> list[PolicyRef]:
        """Removes the policies that exist (no sync); one ``POLICY_DELETED`` event per policy removed."""
        before = {p.ref: p for p in self.repo.policies()}
        removed = self.repo.delete(refs)
        for ref in removed:
            self.events.publish(policy_event(before[ref], self.repo.revision, deleted=True))
        return removed

    def apply_text(
        self, text: str, filename: str, pods: Iterable[Pod], delete: bool = False
    ) -> dict[str, Any]:
        """Applies (or deletes) the policies of one file whole, then syncs; PolicyError applies nothing."""
        policies = parse_policies(text, filename)
        if delete:
            refs = self.delete_policies([p.ref for p in policies])
            missing = [str(p.ref) for p in policies if p.ref not in refs]
            names = [str(r) for r in refs]
        else:
            names = [str(r) for r in self.apply_policies(policies)]
            missing = []
        stats = self.sync(pods)
        return {
            "policies": names,
            "missing": missing,
            "entries": stats.to_json(),
            "warnings": [w for p in policies for w in p.warnings] if not delete else [],
        }

    def set_audit(
        self,
        on: bool,
        pods: dict[str, Pod],
        namespaces: Iterable[str],
        pod: str = "",
        namespace: str = "",
        policy: str = "",
    ) -> dict[str, Any]:
        """Audit mode for a pod (``ns/name``), a namespace, or one policy (``ns/name`` or a CCNP name).

        The setting is kept by name and applied at every policy sync, so it holds across policy
        updates and pod recreation; disabling what was not enabled is not an error.
        """
        if self.datapath is None:
            raise LabError("the lab runs without the datapath (--no-datapath): no audit mode")
        if sum(bool(x) for x in (pod, namespace, policy)) != 1:
            raise LabError("audit needs exactly one of a pod, a namespace or a policy")
        if pod:
            if pod not in pods:
                raise LabError(f"no pod {pod} in the lab")
            (self.audit.pods.add if on else self.audit.pods.discard)(pod)
            scope = f"pod {pod}"
        elif namespace:
            known = {p.namespace for p in pods.values()} | set(namespaces)
            if on and namespace not in known:
                raise LabError(f"no namespace {namespace} in the lab")
            (self.audit.namespaces.add if on else self.audit.namespaces.discard)(namespace)
            scope = f"namespace {namespace}"
        else:
            try:
                key = parse_policy_name(policy)
            except ValueError as exc:
                raise LabError(str(exc)) from None
            found = matching_policies([p.ref for p in self.repo.policies()], *key)
            if on and not found:
                raise LabError(f"no policy {policy} is applied (see: hubble lab status)")
            (self.audit.policies.add if on else self.audit.policies.discard)(key)
            scope = "policy " + (", ".join(f"{r} ({r.kind})" for r in found) or policy)
        self.sync(pods.values())
        return {"scope": scope, "audit": on, "settings": self.audit.to_json()}

    def state(self) -> dict[str, Any]:
        """The policy part of ``state.json``."""
        return {
            "cidr_identities": self.identities.cidr_identities(),
            "policies": [
                {"ref": str(p.ref), "kind": p.ref.kind, "source": p.source} for p in self.repo.policies()
            ],
            "policy_revision": self.repo.revision,
            "audit": self.audit.to_json(),
        }


__all__ = ["PolicySync", "SyncStats", "datapath_entry", "explainer", "policy_event", "redirect_text"]
