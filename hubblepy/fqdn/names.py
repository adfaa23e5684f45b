"""toFQDNs selectors -> the IPs they select in the FQDN cache, and those IPs' identities.

Like Cilium's name manager: a selector selects every IP that any endpoint's cache holds for a name
it matches; each selected IP gets a node-local CIDR identity (``cidr:<ip>/32``, ``reserved:world``)
that the node writes into the ipcache. IPs of names no selector matches get no identity: they stay
``world`` (so a name the DNS rules let through but no toFQDNs selects is still denied).

:meth:`NameManager.learn` is the incremental step for one answer: which (selector, identity)
pairs are new, for :func:`hubblepy.policy.compiler.add_fqdn_identities`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hubblepy.fqdn.cache import FQDNCache, Update
from hubblepy.fqdn.matcher import FQDNSelector


def host_prefix(ip: str) -> str:
    """``192.0.2.7`` -> ``192.0.2.7/32`` (``/128`` for IPv6)."""
    return f"{ip}/{128 if ':' in ip else 32}"


class NameManager:
    """Selectors of the applied policies, the IPs each selects, and those IPs' identities.

    ``allocate(ip)`` gives (and installs: ipcache, resolver) the identity of a newly selected IP.
    """

    def __init__(self, cache: FQDNCache, allocate: Callable[[str], int]) -> None:
        self.cache = cache
        self.allocate = allocate
        self.selected: dict[FQDNSelector, set[str]] = {}
        self.ip_identity: dict[str, int] = {}
        self.identity_ip: dict[int, str] = {}

    def set_selectors(self, selectors: Iterable[FQDNSelector]) -> None:
        """The selectors of the applied policies (after a policy change): recomputes what they select."""
        wanted = set(selectors)
        names = self.cache.names()
        self.selected = {}
        for selector in wanted:
            ips: set[str] = set()
            for name in names:
                if selector.matches(name):
                    ips |= self.cache.ips_of(name)
            self.selected[selector] = ips
        self._assign()

    def _assign(self) -> None:
        wanted = set().union(*self.selected.values()) if self.selected else set()
        for ip in sorted(wanted - self.ip_identity.keys()):
            self._put(ip, self.allocate(ip))
        for ip in self.ip_identity.keys() - wanted:
            self.identity_ip.pop(self.ip_identity.pop(ip), None)

    def _put(self, ip: str, identity: int) -> None:
        self.ip_identity[ip] = identity
        self.identity_ip[identity] = ip

    def learn(self, update: Update) -> list[tuple[FQDNSelector, int]]:
        """The (selector, identity) pairs an answer added (identities allocated as needed)."""
        if not update.new_ips:
            return []
        added: list[tuple[FQDNSelector, int]] = []
        for selector, ips in self.selected.items():
            if not selector.matches(update.name):
                continue
            for ip in update.new_ips:
                if ip in ips:
                    continue
                ips.add(ip)
                identity = self.ip_identity.get(ip)
                if identity is None:
                    identity = self.allocate(ip)
                    self._put(ip, identity)
                added.append((selector, identity))
        return added

    def forget(self, gone: Iterable[tuple[str, str]]) -> bool:
        """(name, IP) pairs no endpoint holds any more; True when a selector lost an IP."""
        lost = False
        for name, ip in gone:
            for selector, ips in self.selected.items():
                if ip not in ips or not selector.matches(name):
                    continue
                still = any(
                    selector.matches(other) and ip in self.cache.ips_of(other) for other in self.cache.names()
                )
                if not still:
                    ips.discard(ip)
                    lost = True
        if lost:
            self._assign()
        return lost

    def identities(self) -> dict[FQDNSelector, frozenset[int]]:
        """selector -> the identities of the IPs it selects (the compiler's ``fqdn_identities``)."""
        return {sel: frozenset(self.ip_identity[ip] for ip in ips) for sel, ips in self.selected.items()}

    def prefixes(self) -> dict[str, int]:
        """``ip/32`` -> identity of every selected IP."""
        return {host_prefix(ip): identity for ip, identity in self.ip_identity.items()}

    def selectors_of(self, ip: str) -> list[FQDNSelector]:
        return sorted(sel for sel, ips in self.selected.items() if ip in ips)


__all__ = ["NameManager", "host_prefix"]
