"""Policies + endpoints -> per-endpoint policy-map entries over numeric identities.

Semantics (Kubernetes additive allow, as Cilium):

* A direction of an endpoint is *enforced* (default deny) when at least one selecting rule has a
  non-empty list for that direction (``- {}`` counts) and does not turn ``enableDefaultDeny`` off.
  Endpoints selected by nothing, or only for the other direction, allow everything that way.
* Every selecting rule adds allows; the result is their union. A rule with peers and ports gives
  L3+L4 entries ``(identity, port, proto)``; peers without ports give L3-only ``(identity, 0, 0)``;
  ports without peers give L4-only ``(0, port, proto)``; ``fromEntities: [all]`` without ports gives
  allow-all ``(0, 0, 0)``. Protocol ANY with a port expands to TCP, UDP and SCTP.
* CiliumNetworkPolicy selectors (endpointSelector and peers) only match the policy's namespace unless
  a peer selector names ``k8s:io.kubernetes.pod.namespace`` itself; cluster-wide policies are not
  scoped. Peer selectors never match the world identities (use fromEntities/toEntities: world), and
  match other reserved identities (host, ...) only when they name a ``reserved:`` label.
* With ``allow_localhost`` (Cilium's default) an enforced ingress also allows the host identity.
* ``ingressDeny``/``egressDeny`` rules engage default deny like allow rules and give entries with
  action deny; a deny replaces an allow on the same key, and the datapath lets a deny at any
  specificity win over every allow. Deny rules of a policy with ``enableDefaultDeny`` off still deny:
  when nothing else enforces that direction it gets an allow-all entry under the denies.
  NetworkPolicy ``policyTypes`` isolate a direction even without
  rules. CIDR peers select CIDR identities (:mod:`.cidr`); the ``world`` entity includes them.
* ``endPort`` gives range entries (``end_port`` > ``dport``); named ports resolve against the
  endpoint's own container ports (ingress) or the peers' (egress); an unknown name allows nothing.
* L7 (``toPorts[].rules.http``, :mod:`.l7`; ``rules.dns``, :mod:`.dns`): the entries of such a port
  carry the HTTP (or DNS) proxy's port
  (``PolicyValue.proxy_port``): the datapath sends those connections through the proxy. Where two
  allows meet on one key, a redirect wins (Cilium's merge). An identity whose own allow is less
  specific (L3-only) than a redirected any-peer port entry gets an explicit redirected L3+L4 entry, so
  the datapath's lookup (identity first) still picks a redirect. For every endpoint direction with a
  redirect, :attr:`CompiledPolicy.l7` (HTTP) / :attr:`CompiledPolicy.dns` keep every allow contribution
  for the proxies: a request (a query) passes if
  any contribution matching its peer and port at L3/L4 allows it (an L3/L4-only allow for that peer
  allows every request: its L7 is wildcarded, as Cilium merges them).

* ``toFQDNs`` (:mod:`hubblepy.fqdn`) selects the CIDR identities (``cidr:<ip>/32``) of the IPs the
  FQDN cache holds for matching names (``fqdn_identities``). :attr:`CompiledPolicy.fqdn_rules` keeps
  what each selector's rules give a peer, so :func:`add_fqdn_identities` adds the entries of a newly
  learned IP without recompiling (the DNS proxy's answer waits for them).

Every entry carries the cookie of the first rule (in policy order) that produced it; all contributing
cookies are kept in :attr:`CompiledPolicy.contributors` for attribution. Cookies are stable for a
:class:`CookieJar`'s lifetime and can be saved with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from hubblepy.fqdn.matcher import FQDNSelector
from hubblepy.policy.cidr import CIDRIndex
from hubblepy.policy.dns import DNSRule, is_dns_rules, split_tables
from hubblepy.policy.identity import LOCAL_SCOPE, RESERVED_IDENTITIES, WORLD_IDENTITIES, cidr_of
from hubblepy.policy.l7 import DNS_PROXY_PORT, HTTP_PROXY_PORT, Contribution, HTTPRule, L7Table
from hubblepy.policy.labels import NAMESPACE_KEY, LabelSet
from hubblepy.policy.model import (
    ANY_PROTOCOLS,
    CNP,
    DENY_INDEX_OFFSET,
    EGRESS,
    INGRESS,
    PROTOCOLS,
    CIDRRule,
    PeerRule,
    Policy,
    PolicyRef,
    PortRule,
    RuleRef,
)
from hubblepy.policy.selector import IdentityIndex, Requirement, Selector

ACTION_ALLOW = 1
ACTION_DENY = 2
WILDCARD_IDENTITY = 0
ALLOW_LOCALHOST = RuleRef(PolicyRef("reserved", "", "allow-localhost"), INGRESS, 0)
# deny rules of policies with enableDefaultDeny off, where nothing else enforces the direction: the
# direction is judged with an allow-all entry under the denies (everything but the denied passes)
ALLOW_ALL_UNDER_DENY = {
    INGRESS: RuleRef(PolicyRef("reserved", "", "allow-all-under-deny"), INGRESS, 0),
    EGRESS: RuleRef(PolicyRef("reserved", "", "allow-all-under-deny"), EGRESS, 0),
}
_WORLD = sorted(WORLD_IDENTITIES)


class PolicyKey(NamedTuple):
    """A policy-map key: endpoint, direction, remote identity (0 any), port (0 any), protocol (0 any)."""

    ep_id: int
    direction: int
    identity: int
    dport: int
    proto: int
    end_port: int = 0  # > dport: the entry covers the port range dport..end_port


class PolicyValue(NamedTuple):
    action: int
    cookie: int
    proxy_port: int = 0  # != 0: the connection goes through the L7 proxy listening on this port


class Endpoint(NamedTuple):
    """A local endpoint the compiler computes entries for."""

    ep_id: int
    identity: int
    labels: LabelSet
    # container ports by name, for named ports in toPorts: (name, port, protocol number)
    named_ports: tuple[tuple[str, int, int], ...] = ()


@dataclass
class EndpointPolicy:
    ingress_enforced: bool = False
    egress_enforced: bool = False
    selected_by: list[PolicyRef] = field(default_factory=list)
    # policies that put a direction in default deny (a selecting rule with a non-empty list for it),
    # in policy order: attribution names them when no rule allowed a flow
    ingress_default_deny_by: list[PolicyRef] = field(default_factory=list)
    egress_default_deny_by: list[PolicyRef] = field(default_factory=list)


class FQDNRule(NamedTuple):
    """What one allow rule with ``toFQDNs`` gives each identity its selectors select."""

    ep_id: int
    direction: int
    # (port, end port, protocol, proxy port, http rules or None) per compiled port
    ports: tuple[tuple[int, int, int, int, tuple[HTTPRule, ...] | None], ...]
    cookie: int


@dataclass
class CompiledPolicy:
    entries: dict[PolicyKey, PolicyValue]
    endpoints: dict[int, EndpointPolicy]
    contributors: dict[PolicyKey, list[int]]
    l7: L7Table = field(default_factory=L7Table)  # the HTTP proxy's rule table
    dns: L7Table = field(default_factory=L7Table)  # the DNS proxy's (contributions carry DNSRule tuples)
    # toFQDNs selector -> the rules (per endpoint) that allow what it selects
    fqdn_rules: dict[FQDNSelector, list[FQDNRule]] = field(default_factory=dict)
    # a rule selects the world entity (every CIDR identity), or CIDR peers (these prefixes): a new
    # /32 identity inside them may change what they allow, so add_fqdn_identities refuses it
    world_peers: bool = False
    cidr_peers: tuple[str, ...] = ()

    def redirects(self) -> dict[PolicyKey, int]:
        """Entries that send their connections to the proxy: key -> proxy port."""
        return {k: v.proxy_port for k, v in self.entries.items() if v.proxy_port}


class PolicyDiff(NamedTuple):
    upserts: dict[PolicyKey, PolicyValue]
    deletes: list[PolicyKey]

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)


class CookieJar:
    """Rule reference <-> 32-bit cookie, stable while the jar lives (cookie 0 means none)."""

    def __init__(self, saved: Mapping[int, RuleRef] | None = None) -> None:
        self._by_ref: dict[RuleRef, int] = {}
        self._by_cookie: dict[int, RuleRef] = {}
        self._next = 1
        self.cookie(ALLOW_LOCALHOST)
        for cookie, ref in (saved or {}).items():
            self._by_ref[ref] = int(cookie)
            self._by_cookie[int(cookie)] = ref
            self._next = max(self._next, int(cookie) + 1)

    def cookie(self, ref: RuleRef) -> int:
        found = self._by_ref.get(ref)
        if found is None:
            found = self._next
            self._next += 1
            self._by_ref[ref] = found
            self._by_cookie[found] = ref
        return found

    def lookup(self, cookie: int) -> RuleRef | None:
        return self._by_cookie.get(cookie)

    def to_json(self) -> list[list]:
        return [
            [c, ref.policy.kind, ref.policy.namespace, ref.policy.name, ref.direction, ref.index]
            for c, ref in sorted(self._by_cookie.items())
        ]

    @classmethod
    def from_json(cls, rows: Iterable[list]) -> CookieJar:
        return cls({int(c): RuleRef(PolicyRef(k, ns, n), int(d), int(i)) for c, k, ns, n, d, i in rows})


def _scoped(selector: Selector, policy: PolicyRef, peer: bool) -> Selector:
    if policy.kind != CNP:
        return selector
    if peer and selector.mentions(("k8s", NAMESPACE_KEY)):
        return selector
    return selector.with_requirement(Requirement("k8s", NAMESPACE_KEY, "In", frozenset({policy.namespace})))


class _PeerResolver:
    """Selector / entity -> identities, cached per compile."""

    def __init__(
        self,
        identities: Mapping[int, LabelSet],
        fqdn_identities: Mapping[FQDNSelector, Iterable[int]] | None = None,
    ) -> None:
        self.index = IdentityIndex(identities)
        self.fqdn = {sel: sorted(ids) for sel, ids in (fqdn_identities or {}).items()}
        cidr_ids = {
            prefix: n
            for n, labels in identities.items()
            if n >= LOCAL_SCOPE and (prefix := cidr_of(labels)) is not None
        }
        self.cidr = CIDRIndex(cidr_ids)
        # CIDR identities are part of the world: peer selectors never match them
        self.world = frozenset(WORLD_IDENTITIES) | self.cidr.identities
        self.reserved = frozenset(
            n for n, labels in identities.items() if labels and labels[0].startswith("reserved:")
        )
        self.cluster = sorted(
            n
            for n, labels in identities.items()
            if n not in WORLD_IDENTITIES and any(lab.startswith("k8s:") for lab in labels)
        )
        self.cidr_prefixes = cidr_ids
        self._cache: dict[Selector, list[int]] = {}

    def cidr_rule(self, rule: CIDRRule) -> set[int]:
        found = self.cidr.select(rule)
        if rule.cidr.endswith("/0"):  # the whole address family: addresses no prefix covers too
            found |= {RESERVED_IDENTITIES["world"]}
            found.add(RESERVED_IDENTITIES["world-ipv4" if "." in rule.cidr else "world-ipv6"])
        return found

    def selected(self, selector: Selector) -> frozenset[int]:
        """Identities an endpointSelector selects."""
        return self.index.select(selector)

    def select(self, selector: Selector) -> list[int]:
        """Identities a peer selector allows (never world; reserved ones only when named)."""
        found = self._cache.get(selector)
        if found is None:
            ids = self.index.select(selector) - self.world
            if not any(r.source == "reserved" for r in selector.requirements):
                ids = ids - self.reserved
            found = sorted(ids)
            self._cache[selector] = found
        return found

    def entity(self, name: str) -> list[int]:
        if name == "all":
            return [WILDCARD_IDENTITY]
        if name == "world":
            return sorted(self.world)
        if name in ("world-ipv4", "world-ipv6"):
            version = "." if name == "world-ipv4" else ":"
            prefixed = [n for p, n in self.cidr_prefixes.items() if version in p]
            return sorted([RESERVED_IDENTITIES[name], RESERVED_IDENTITIES["world"], *prefixed])
        if name == "cluster":
            reserved = [
                RESERVED_IDENTITIES[n]
                for n in ("host", "remote-node", "kube-apiserver", "health", "init", "ingress")
            ]
            return sorted(set(self.cluster) | set(reserved))
        return [RESERVED_IDENTITIES[name]]


def _rule_peers(rule: PeerRule, policy: PolicyRef, resolver: _PeerResolver) -> list[int]:
    if not rule.has_peer_field:
        # `- {}` selects no peer; a rule with only toPorts selects every peer (L4-only)
        return [WILDCARD_IDENTITY] if rule.ports is not None else []
    peers: set[int] = set()
    for sel in rule.selectors or ():
        peers.update(resolver.select(_scoped(sel, policy, peer=True)))
    for name in rule.entities or ():
        peers.update(resolver.entity(name))
    for cidr in rule.cidrs or ():
        peers.update(resolver.cidr_rule(cidr))
    for fqdn in rule.fqdns or ():
        peers.update(resolver.fqdn.get(fqdn, ()))
    return sorted(peers)


# a compiled port: (port, end_port, proto, http rules or None) or, for a named port,
# (name, 0, proto (0 = any), http rules or None)
_Port = tuple[int | str, int, int, tuple[HTTPRule, ...] | tuple[DNSRule, ...] | None]


def _rule_ports(rule: PeerRule) -> list[_Port]:
    if rule.ports is None:
        return [(0, 0, 0, None)]
    out: dict[_Port, None] = {}
    for port in rule.ports:
        number: int | str = port.name or port.port
        if port.protocol == "ANY":
            if number == 0:
                out[(0, 0, 0, _l7_of(port))] = None
            elif port.name:
                out[(port.name, 0, 0, _l7_of(port))] = None
            else:
                out.update(((number, port.end_port, p, _l7_of(port)), None) for p in ANY_PROTOCOLS)
        else:
            out[(number, port.end_port, PROTOCOLS[port.protocol], _l7_of(port))] = None
    return sorted(out, key=lambda p: str(p[:3]))


def _l7_of(port: PortRule) -> tuple[HTTPRule, ...] | tuple[DNSRule, ...] | None:
    return port.http if port.http is not None else port.dns


def _named(ports: list[_Port], named: Mapping[str, list[tuple[int, int]]]) -> list[_Port]:
    """Resolves named ports against a container port table (unknown names allow nothing)."""
    out: list[_Port] = []
    for port, end, proto, http in ports:
        if isinstance(port, str):
            out += [(p, 0, pr, http) for p, pr in named.get(port, ()) if proto in (0, pr)]
        else:
            out.append((port, end, proto, http))
    return out


def compile_policies(
    policies: Iterable[Policy],
    endpoints: Iterable[Endpoint],
    identities: Mapping[int, LabelSet],
    cookies: CookieJar,
    allow_localhost: bool = True,
    named_ports: Mapping[int, Iterable[tuple[str, int, int]]] | None = None,
    http_proxy_port: int = HTTP_PROXY_PORT,
    dns_proxy_port: int = DNS_PROXY_PORT,
    fqdn_identities: Mapping[FQDNSelector, Iterable[int]] | None = None,
) -> CompiledPolicy:
    """Computes the full policy-map contents for ``endpoints``.

    ``identities`` are every identity a peer selector may match (pods of all nodes, the reserved
    ones and the CIDR identities); endpoints' own identities must be among them. ``named_ports``
    (identity -> (name, port, protocol)) resolves named ports of egress rules against the peers'
    container ports; ingress named ports resolve against the endpoint's own ``named_ports``.
    Entries of ports with HTTP rules carry ``http_proxy_port``, of ports with DNS rules ``dns_proxy_port``. ``fqdn_identities``
    are the identities each toFQDNs selector selects now (the cached IPs of matching names).
    """
    ordered = sorted(policies, key=lambda p: (p.ref.kind, p.ref.namespace, p.ref.name))
    resolver = _PeerResolver(identities, fqdn_identities)
    fqdn_rules: dict[FQDNSelector, list[FQDNRule]] = {}
    world_peers = False
    cidr_peers: set[str] = set()
    entries: dict[PolicyKey, PolicyValue] = {}
    contributors: dict[PolicyKey, list[int]] = {}
    allows: dict[tuple[int, int], list[Contribution]] = {}  # (endpoint, direction) -> allow contributions
    state: dict[int, EndpointPolicy] = {}
    selecting = [
        (p, spec, _scoped(spec.endpoint_selector, p.ref, peer=False)) for p in ordered for spec in p.specs
    ]
    known = resolver.index.all
    endpoint_list = sorted(endpoints)
    by_identity: dict[int, list[int]] = {}
    for position, ep in enumerate(endpoint_list):
        by_identity.setdefault(ep.identity, []).append(position)
    # which specs select each endpoint, in policy order (set operations, not a walk per pair)
    specs_of: list[list[int]] = [[] for _ in endpoint_list]
    for spec_no, (_, _, selector) in enumerate(selecting):
        ids = resolver.selected(selector)
        for identity in ids & by_identity.keys():
            for position in by_identity[identity]:
                specs_of[position].append(spec_no)
    for position, ep in enumerate(endpoint_list):
        if ep.identity not in known:  # not in the identity table: match its own labels
            specs_of[position] = [i for i, (_, _, sel) in enumerate(selecting) if sel.matches(ep.labels)]
    compiled_rules: dict[tuple[PolicyRef, int, int], tuple[list[int], list[_Port], int]] = {}
    peer_ports: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for identity, named_table in (named_ports or {}).items():
        for name, port, proto in named_table:
            peer_ports.setdefault(identity, {}).setdefault(name, []).append((port, proto))
    any_peer_ports: dict[str, list[tuple[int, int]]] = {}
    for peer_table in peer_ports.values():
        for name, named_found in peer_table.items():
            any_peer_ports.setdefault(name, []).extend(named_found)
    localhost_cookie = cookies.cookie(ALLOW_LOCALHOST)
    ports_of = {False: http_proxy_port, True: dns_proxy_port}  # is_dns_rules(rules) -> proxy port
    for position, ep in enumerate(endpoint_list):
        info = EndpointPolicy()
        state[ep.ep_id] = info
        rules: dict[int, list[tuple[PolicyRef, int, PeerRule, bool]]] = {INGRESS: [], EGRESS: []}
        denies_only: set[int] = set()  # directions with deny rules but no default deny
        for spec_no in specs_of[position]:
            policy, spec, _ = selecting[spec_no]
            if policy.ref not in info.selected_by:
                info.selected_by.append(policy.ref)
            for direction, peer_rules, deny_rules, isolate, default_deny in (
                (INGRESS, spec.ingress, spec.ingress_deny, spec.isolate_ingress, spec.default_deny_ingress),
                (EGRESS, spec.egress, spec.egress_deny, spec.isolate_egress, spec.default_deny_egress),
            ):
                if not (peer_rules or deny_rules or isolate):
                    continue
                if default_deny:
                    engaged = (
                        info.ingress_default_deny_by if direction == INGRESS else info.egress_default_deny_by
                    )
                    if policy.ref not in engaged:
                        engaged.append(policy.ref)
                    if direction == INGRESS:
                        info.ingress_enforced = True
                    else:
                        info.egress_enforced = True
                elif deny_rules:
                    denies_only.add(direction)
                base = spec.spec_index * 10000
                rules[direction] += [(policy.ref, base + r.index, r, False) for r in peer_rules or ()]
                rules[direction] += [
                    (policy.ref, base + DENY_INDEX_OFFSET + r.index, r, True) for r in deny_rules or ()
                ]
        for direction, enforced in ((INGRESS, info.ingress_enforced), (EGRESS, info.egress_enforced)):
            if not enforced and direction in denies_only:
                enforced = True
                if direction == INGRESS:
                    info.ingress_enforced = True
                else:
                    info.egress_enforced = True
                cookie = cookies.cookie(ALLOW_ALL_UNDER_DENY[direction])
                _add(entries, contributors, PolicyKey(ep.ep_id, direction, WILDCARD_IDENTITY, 0, 0), cookie)
                allows.setdefault((ep.ep_id, direction), []).append(
                    Contribution(WILDCARD_IDENTITY, 0, 0, 0, None, cookie)
                )
            if not enforced:
                continue
            contributions = allows.setdefault((ep.ep_id, direction), [])
            if direction == INGRESS and allow_localhost:
                _add(
                    entries,
                    contributors,
                    PolicyKey(ep.ep_id, INGRESS, RESERVED_IDENTITIES["host"], 0, 0),
                    localhost_cookie,
                )
                contributions.append(
                    Contribution(RESERVED_IDENTITIES["host"], 0, 0, 0, None, localhost_cookie)
                )
            own_ports: dict[str, list[tuple[int, int]]] = {}
            for name, port, proto in ep.named_ports:
                own_ports.setdefault(name, []).append((port, proto))
            for ref, index, rule, deny in rules[direction]:
                key = (ref, direction, index)
                found = compiled_rules.get(key)
                if found is None:
                    found = (
                        _rule_peers(rule, ref, resolver),
                        _rule_ports(rule),
                        cookies.cookie(RuleRef(ref, direction, index)),
                    )
                    compiled_rules[key] = found
                peers, ports, cookie = found
                if any(e.startswith("world") for e in rule.entities or ()):
                    world_peers = True
                cidr_peers.update(c.cidr for c in rule.cidrs or ())
                if rule.fqdns and not deny:
                    fqdn_rule = FQDNRule(
                        ep.ep_id,
                        direction,
                        tuple(
                            (p, end, proto, 0 if http is None else ports_of[is_dns_rules(http)], http)  # type: ignore[misc]
                            for p, end, proto, http in _named(ports, {})
                        ),
                        cookie,
                    )
                    for fqdn_selector in rule.fqdns:
                        fqdn_rules.setdefault(fqdn_selector, []).append(fqdn_rule)
                has_names = any(isinstance(p[0], str) for p in ports)
                resolved = _named(ports, own_ports) if has_names and direction == INGRESS else ports
                for identity in peers:
                    if has_names and direction == EGRESS:
                        port_table = (
                            any_peer_ports if identity == WILDCARD_IDENTITY else peer_ports.get(identity, {})
                        )
                        resolved = _named(ports, port_table)
                    for first_port, end, proto, http in resolved:
                        _add(
                            entries,
                            contributors,
                            # first_port is an int here: names were resolved by _named above
                            PolicyKey(ep.ep_id, direction, identity, first_port, proto, end),  # type: ignore[arg-type]
                            cookie,
                            ACTION_DENY if deny else ACTION_ALLOW,
                            0 if deny or http is None else ports_of[is_dns_rules(http)],
                        )
                        if not deny:
                            contributions.append(Contribution(identity, first_port, end, proto, http, cookie))  # type: ignore[arg-type]
    l7 = _l7_redirects(entries, contributors, allows, ports_of)
    http_table, dns_table = split_tables(l7)
    return CompiledPolicy(
        entries,
        state,
        contributors,
        http_table,
        dns_table,
        fqdn_rules=fqdn_rules,
        world_peers=world_peers,
        cidr_peers=tuple(sorted(cidr_peers)),
    )


class FQDNUpdate(NamedTuple):
    """What :func:`add_fqdn_identities` changed."""

    entries: dict[PolicyKey, PolicyValue]  # new or changed entries
    l7: bool  # the proxy's rule table changed (the HTTP proxy must reload)


def add_fqdn_identities(
    compiled: CompiledPolicy,
    additions: Iterable[tuple[FQDNSelector, int]],
    addresses: Mapping[int, str] | None = None,
) -> FQDNUpdate | None:
    """Adds, in place, the entries a full compile would give identities newly selected by toFQDNs.

    ``additions`` are (selector, identity) pairs; ``addresses`` the IP of each new identity. Returns
    None when only a full compile can tell (a rule selects the world entity, or CIDR peers covering
    a new IP (or IPs unknown), which the new /32 identity takes addresses from; or an L7 rule
    applies to an endpoint direction whose proxy table the compile did not keep). The
    proxies' tables get the new identities' contributions where a proxy will see their connections.
    """
    additions = list(additions)
    if compiled.world_peers:
        return None
    if compiled.cidr_peers:
        if addresses is None:
            return None
        nets = [ipaddress.ip_network(c) for c in compiled.cidr_peers]
        for _, identity in additions:
            ip = ipaddress.ip_address(addresses[identity])
            if any(ip.version == n.version and ip in n for n in nets):
                return None
    changed: dict[PolicyKey, PolicyValue] = {}
    l7_changed = False
    touched: dict[tuple[int, int], list[tuple[PolicyKey, Contribution]]] = {}
    for selector, identity in additions:
        for rule in compiled.fqdn_rules.get(selector, ()):
            where = (rule.ep_id, rule.direction)
            for port, end, proto, proxy_port, rules in rule.ports:
                contribution = Contribution(identity, port, end, proto, rules, rule.cookie)
                if rules is not None:
                    table = (compiled.dns if is_dns_rules(rules) else compiled.l7).tables.get(where)
                    if table is None:
                        return None
                    table.append(contribution)
                    l7_changed = True
                key = PolicyKey(rule.ep_id, rule.direction, identity, port, proto, end)
                _add(compiled.entries, compiled.contributors, key, rule.cookie, ACTION_ALLOW, proxy_port)
                changed[key] = compiled.entries[key]
                touched.setdefault(where, []).append((key, contribution))
    for where, keys in touched.items():
        for kind in (compiled.l7, compiled.dns):
            table = kind.tables.get(where)
            for c in list(table or ()):
                if c.rules is None or c.identity != WILDCARD_IDENTITY:
                    continue
                # the any-peer L7 port's redirect (see _l7_redirects) applies to the new identities too
                wildcard = compiled.entries.get(
                    PolicyKey(where[0], where[1], WILDCARD_IDENTITY, c.port, c.proto)
                )
                port = wildcard.proxy_port if wildcard is not None else 0
                if not port:
                    continue
                for key, contribution in keys:
                    value = compiled.entries[key]
                    if value.action != ACTION_ALLOW:
                        continue
                    if key.dport == c.port and key.proto == c.proto and not key.end_port:
                        if not value.proxy_port:
                            compiled.entries[key] = changed[key] = value._replace(proxy_port=port)
                    elif key.dport == 0 and key.proto in (0, c.proto):
                        exact = PolicyKey(key.ep_id, key.direction, key.identity, c.port, c.proto)
                        if exact in compiled.entries:
                            continue
                        compiled.entries[exact] = changed[exact] = PolicyValue(ACTION_ALLOW, c.cookie, port)
                        compiled.contributors[exact] = list(
                            dict.fromkeys([c.cookie, *compiled.contributors[key]])
                        )
                    else:
                        continue
                    if contribution.rules is None and table is not None and contribution not in table:
                        table.append(contribution)  # the proxy now sees this peer: its L3/L4 allow
                        l7_changed = True
    return FQDNUpdate(changed, l7_changed)


def _l7_redirects(
    entries: dict[PolicyKey, PolicyValue],
    contributors: dict[PolicyKey, list[int]],
    allows: dict[tuple[int, int], list[Contribution]],
    proxy_ports: Mapping[bool, int],
) -> L7Table:
    """Completes the redirects of endpoint directions with L7 rules; their contributions for the proxy."""
    with_l7 = {k: v for k, v in allows.items() if any(c.rules is not None for c in v)}
    if not with_l7:
        return L7Table()
    by_direction: dict[tuple[int, int], list[PolicyKey]] = {}
    for key in entries:
        if (key.ep_id, key.direction) in with_l7:
            by_direction.setdefault((key.ep_id, key.direction), []).append(key)
    for where, contributions in with_l7.items():
        keys = by_direction.get(where, [])
        for c in contributions:
            if c.rules is None or c.identity != WILDCARD_IDENTITY:
                continue
            # any-peer L7 port: an identity's own allow on that port, or a less specific one
            # (L3-only, L3+protocol) the datapath would pick first, must redirect too
            for key in keys:
                value = entries[key]
                if value.action != ACTION_ALLOW or key.identity == WILDCARD_IDENTITY:
                    continue
                proxy_port = proxy_ports[is_dns_rules(c.rules)]
                if key.dport == c.port and key.proto == c.proto and not key.end_port:
                    if not value.proxy_port:
                        entries[key] = value._replace(proxy_port=proxy_port)
                elif key.dport == 0 and key.proto in (0, c.proto):
                    exact = PolicyKey(key.ep_id, key.direction, key.identity, c.port, c.proto)
                    if exact not in entries:
                        entries[exact] = PolicyValue(ACTION_ALLOW, c.cookie, proxy_port)
                        contributors[exact] = list(dict.fromkeys([c.cookie, *contributors[key]]))
    return L7Table(with_l7)


def _add(
    entries: dict,
    contributors: dict,
    key: PolicyKey,
    cookie: int,
    action: int = ACTION_ALLOW,
    proxy_port: int = 0,
) -> None:
    found = entries.get(key)
    if found is not None:
        if action == ACTION_DENY and found.action != ACTION_DENY:  # a deny replaces an allow
            entries[key] = PolicyValue(ACTION_DENY, cookie)
            contributors[key] = [cookie]
        elif action == found.action:
            if cookie not in contributors[key]:
                contributors[key].append(cookie)
            if proxy_port and not found.proxy_port:  # two allows: a redirect wins
                entries[key] = found._replace(proxy_port=proxy_port)
        return
    entries[key] = PolicyValue(action, cookie, proxy_port)
    contributors[key] = [cookie]


def diff_entries(old: Mapping[PolicyKey, PolicyValue], new: Mapping[PolicyKey, PolicyValue]) -> PolicyDiff:
    """What to write (new or changed values) and what to delete so the map goes from ``old`` to ``new``."""
    upserts = {k: v for k, v in new.items() if old.get(k) != v}
    deletes = [k for k in old if k not in new]
    return PolicyDiff(upserts, deletes)
