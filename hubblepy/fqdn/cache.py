"""The FQDN cache: what each endpoint's DNS lookups returned, name -> IPs with TTL and expiry.

Like Cilium's per-endpoint DNS cache (``cilium-dbg fqdn cache list``):

* an allowed answer (from the DNS proxy) records, for the endpoint that asked, every IP of the
  name with the answer's TTL raised to ``min_ttl`` (Cilium's ``--tofqdns-min-ttl``) and its
  expiry; a later answer refreshes the IPs it names and ADDS new ones: the IPs of a name that
  rotates (a CDN) accumulate until each of them expires on its own;
* :meth:`FQDNCache.gc` removes expired (name, IP) pairs, except those an endpoint still has a
  tracked connection to: those stay as "connection" entries (Cilium's zombies) until that
  connection is gone, so an open connection keeps its allow after the name's TTL ran out;
* :meth:`FQDNCache.names_for` answers "which names did this endpoint look up for this IP" for
  flows (``destination_names`` / ``source_names``).

The cache is global over endpoints for policy (a toFQDNs selector selects IPs any endpoint
learned, as in Cilium): :meth:`FQDNCache.names` and :meth:`FQDNCache.ips_of` see every endpoint.
Times are Unix seconds (a ``clock`` can be given for tests). Not thread-safe: the node calls it
under its lock.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hubblepy.fqdn.matcher import display_name, normalize_name

CILIUM_MIN_TTL = 3600  # Cilium's default --tofqdns-min-ttl
SOURCE_LOOKUP = "lookup"
SOURCE_CONNECTION = "connection"


@dataclass
class CacheEntry:
    """One (endpoint, name, IP) the endpoint learned from a DNS answer."""

    ep_id: int
    name: str  # normalised: lower case with the trailing dot
    ip: str
    lookup_time: float
    ttl: int  # the TTL in force (the answer's, raised to min_ttl)
    expires: float
    source: str = SOURCE_LOOKUP

    def to_json(self) -> dict:
        return {
            "endpoint": self.ep_id,
            "fqdn": self.name,
            "ip": self.ip,
            "ttl": self.ttl,
            "lookup_time": self.lookup_time,
            "expiration_time": self.expires,
            "source": self.source,
        }


@dataclass
class Update:
    """What one answer changed: pairs new to the whole cache (they may need policy entries)."""

    name: str
    new_ips: list[str]  # IPs this name did not map to in any endpoint's cache before
    refreshed: int  # pairs that were known and got a new expiry


class FQDNCache:
    """Per-endpoint name -> IP -> :class:`CacheEntry`, plus a global name -> IP view for policy."""

    def __init__(self, min_ttl: int = CILIUM_MIN_TTL, clock: Callable[[], float] = time.time) -> None:
        if min_ttl < 0:
            raise ValueError("min_ttl must not be negative")
        self.min_ttl = min_ttl
        self.clock = clock
        self._entries: dict[int, dict[str, dict[str, CacheEntry]]] = {}
        # global: name -> IP -> how many endpoints hold that pair
        self._global: dict[str, dict[str, int]] = {}
        self._ep_by_ip: dict[str, int] = {}  # endpoint (pod) IP -> endpoint id

    # -- endpoints ---------------------------------------------------------------------------------
    def set_endpoint(self, ep_id: int, ips: Iterable[str]) -> None:
        """Registers an endpoint's own addresses (the notify protocol names endpoints by IP)."""
        for ip in ips:
            self._ep_by_ip[ip] = ep_id

    def remove_endpoint(self, ep_id: int) -> list[tuple[str, str]]:
        """Forgets an endpoint and its entries; returns the (name, IP) pairs gone from the whole cache."""
        for ip in [ip for ip, ep in self._ep_by_ip.items() if ep == ep_id]:
            del self._ep_by_ip[ip]
        gone: list[tuple[str, str]] = []
        for name, by_ip in self._entries.pop(ep_id, {}).items():
            for ip in by_ip:
                if self._unref(name, ip):
                    gone.append((name, ip))
        return gone

    def endpoint_of(self, endpoint: int | str) -> int | None:
        """An endpoint id from an id or one of the endpoint's IPs."""
        if isinstance(endpoint, int):
            return endpoint
        return self._ep_by_ip.get(endpoint)

    # -- answers -----------------------------------------------------------------------------------
    def update(self, endpoint: int | str, name: str, ips: Iterable[str], ttl: int) -> Update:
        """Records an allowed answer of ``endpoint`` (id or IP); raises ValueError on bad input."""
        ep_id = self.endpoint_of(endpoint)
        if ep_id is None:
            raise ValueError(f"unknown endpoint {endpoint}")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
            raise ValueError(f"bad TTL {ttl!r}")
        name = normalize_name(name)
        addresses = [str(ipaddress.ip_address(ip)) for ip in ips]  # ValueError before any change
        now = self.clock()
        effective = max(ttl, self.min_ttl)
        by_name = self._entries.setdefault(ep_id, {}).setdefault(name, {})
        new_ips: list[str] = []
        refreshed = 0
        for ip in addresses:
            entry = by_name.get(ip)
            if entry is None:
                by_name[ip] = CacheEntry(ep_id, name, ip, now, effective, now + effective)
                counts = self._global.setdefault(name, {})
                if ip not in counts:
                    new_ips.append(ip)
                counts[ip] = counts.get(ip, 0) + 1
            else:
                entry.lookup_time, entry.ttl, entry.source = now, effective, SOURCE_LOOKUP
                entry.expires = max(entry.expires, now + effective)
                refreshed += 1
        return Update(name, new_ips, refreshed)

    def _unref(self, name: str, ip: str) -> bool:
        counts = self._global.get(name)
        if counts is None or ip not in counts:
            return False
        counts[ip] -= 1
        if counts[ip] > 0:
            return False
        del counts[ip]
        if not counts:
            del self._global[name]
        return True

    # -- expiry ------------------------------------------------------------------------------------
    def gc(self, in_use: Callable[[int, str], bool] | None = None) -> list[tuple[str, str]]:
        """Drops expired entries; returns the (name, IP) pairs no endpoint holds any more.

        ``in_use(ep_id, ip)`` tells whether the endpoint still has a tracked connection to the IP:
        such an expired entry is kept with source "connection" until the connection is gone.
        """
        now = self.clock()
        gone: list[tuple[str, str]] = []
        for ep_id, names in list(self._entries.items()):
            for name, by_ip in list(names.items()):
                for ip, entry in list(by_ip.items()):
                    if entry.expires > now:
                        continue
                    if in_use is not None and in_use(ep_id, ip):
                        entry.source = SOURCE_CONNECTION
                        continue
                    del by_ip[ip]
                    if self._unref(name, ip):
                        gone.append((name, ip))
                if not by_ip:
                    del names[name]
            if not names:
                del self._entries[ep_id]
        return gone

    def next_expiry(self) -> float | None:
        """The earliest expiry of a "lookup" entry (when gc has something to do), or None."""
        times = [
            e.expires
            for names in self._entries.values()
            for by_ip in names.values()
            for e in by_ip.values()
            if e.source == SOURCE_LOOKUP
        ]
        return min(times) if times else None

    # -- reads -------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every cached name (normalised), over all endpoints."""
        return sorted(self._global)

    def ips_of(self, name: str) -> set[str]:
        """Every IP any endpoint holds for a (normalised) name."""
        return set(self._global.get(name, ()))

    def names_for(self, endpoint: int | str, ip: str) -> list[str]:
        """Names (no trailing dot, sorted) endpoint ``endpoint`` (id or IP) looked up for ``ip``."""
        ep_id = self.endpoint_of(endpoint)
        names = self._entries.get(ep_id, {}) if ep_id is not None else {}
        return sorted(display_name(n) for n, by_ip in names.items() if ip in by_ip)

    def entries(self, endpoint: int | None = None, name: str = "") -> list[CacheEntry]:
        """Entries, optionally of one endpoint and/or one name, ordered by endpoint, name, IP."""
        wanted = normalize_name(name) if name else ""
        out = []
        for ep_id in sorted(self._entries):
            if endpoint is not None and ep_id != endpoint:
                continue
            for n in sorted(self._entries[ep_id]):
                if wanted and n != wanted:
                    continue
                by_ip = self._entries[ep_id][n]
                out += [by_ip[ip] for ip in sorted(by_ip, key=ipaddress.ip_address)]
        return out

    def __len__(self) -> int:
        return sum(len(by_ip) for names in self._entries.values() for by_ip in names.values())


__all__ = ["CILIUM_MIN_TTL", "CacheEntry", "FQDNCache", "SOURCE_CONNECTION", "SOURCE_LOOKUP", "Update"]
