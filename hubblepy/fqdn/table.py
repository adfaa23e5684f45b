"""``hubble lab fqdn cache list``: the FQDN cache as ``cilium-dbg fqdn cache list`` shows it.

One row per lookup: the IPs an endpoint learned for a name in one answer (same lookup time and
TTL) joined by commas. Table columns and JSON keys are Cilium's (``Endpoint Source FQDN TTL
ExpirationTime IPs``; ``endpoint-id``, ``source``, ``fqdn``, ``ttl``, ``lookup-time``,
``expiration-time``, ``ips``); the JSON adds ``pod`` (namespace/name) as our extension.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from hubblepy.fqdn.cache import CacheEntry

_HEADER = ("Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs")


def go_time(seconds: float) -> str:
    """Unix seconds -> ``2026-12-07T01:02:03.456Z`` (Go strfmt.DateTime, UTC, milliseconds)."""
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def lookups(entries: Iterable[CacheEntry], pods: Mapping[int, str] | None = None) -> list[dict]:
    """Cache entries grouped into Cilium's DNSLookup objects (ordered by endpoint, name, time)."""
    groups: dict[tuple, dict] = {}
    for e in entries:
        key = (e.ep_id, e.name, e.source, e.lookup_time, e.ttl)
        found = groups.get(key)
        if found is None:
            found = groups[key] = {
                "endpoint-id": e.ep_id,
                "source": e.source,
                "fqdn": e.name,
                "ttl": e.ttl,
                "lookup-time": go_time(e.lookup_time),
                "expiration-time": go_time(e.expires),
                "ips": [],
            }
            if pods is not None and e.ep_id in pods:
                found["pod"] = pods[e.ep_id]
        found["ips"].append(e.ip)
        found["expiration-time"] = max(found["expiration-time"], go_time(e.expires))
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1], k[3], k[2]))]


def render_table(rows: list[dict]) -> str:
    """Go tabwriter layout (min width 5, padding 3, every cell tab-terminated) as Cilium prints it."""
    cells = [list(_HEADER)] + [
        [
            str(r["endpoint-id"]),
            r["source"],
            r["fqdn"],
            str(r["ttl"]),
            r["expiration-time"],
            ",".join(r["ips"]),
        ]
        for r in rows
    ]
    widths = [max(5, max(len(row[i]) for row in cells) + 3) for i in range(len(_HEADER))]
    return "".join("".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n" for row in cells)


__all__ = ["go_time", "lookups", "render_table"]
