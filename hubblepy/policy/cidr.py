"""CIDR peers: which prefixes policies name, and which CIDR identities a CIDR rule selects.

Every prefix a rule names (its ``cidr`` and its ``except`` holes) gets a CIDR identity
(:meth:`~hubblepy.policy.identity.IdentityAllocator.allocate_cidr`) that the node writes into the
ipcache LPM trie. A remote address then resolves to the identity of the longest prefix containing it
(pods' /32 entries win over any CIDR). A rule ``cidr`` with holes ``except`` selects every CIDR
identity whose prefix lies inside ``cidr`` and outside every hole; ``0.0.0.0/0`` (``::/0``) also
selects the plain world identities (addresses no prefix covers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from hubblepy.policy.model import CIDRRule, PeerRule, Policy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _peer_rules(policy: Policy) -> Iterable[PeerRule]:
    for spec in policy.specs:
        for rules in (spec.ingress, spec.egress, spec.ingress_deny, spec.egress_deny):
            yield from rules or ()


def policy_prefixes(policies: Iterable[Policy]) -> set[str]:
    """Every prefix (rule CIDRs and their holes) the policies name."""
    out: set[str] = set()
    for policy in policies:
        for rule in _peer_rules(policy):
            for cidr in rule.cidrs or ():
                out.add(cidr.cidr)
                out.update(cidr.excepts)
    return out


class CIDRIndex:
    """The allocated CIDR identities, for answering which of them a CIDR rule selects."""

    def __init__(self, prefixes: Mapping[str, int]) -> None:
        self._nets: list[tuple[Network, int]] = [
            (ipaddress.ip_network(prefix), identity) for prefix, identity in prefixes.items()
        ]
        self.identities = frozenset(prefixes.values())

    def select(self, rule: CIDRRule) -> set[int]:
        net = ipaddress.ip_network(rule.cidr)
        holes = [ipaddress.ip_network(h) for h in rule.excepts]
        out = set()
        for candidate, identity in self._nets:
            if candidate.version != net.version or not candidate.subnet_of(net):  # type: ignore[arg-type]
                continue
            if any(candidate.subnet_of(h) for h in holes):  # type: ignore[arg-type]
                continue
            out.add(identity)
        return out
