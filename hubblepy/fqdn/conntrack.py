"""Which remote IPs endpoints still have tracked connections to, read from the datapath's conntrack map.

The FQDN cache's GC keeps an expired (name, IP) while its endpoint has a live connection to the IP
(Cilium keeps such "zombie" entries the same way), so the connection keeps its allow. An entry is
live while it has been idle for less than its lifetime (the datapath's TCP / non-TCP / closing
lifetimes, :meth:`~hubblepy.datapath.Datapath.set_conntrack_lifetimes`); the datapath itself only
forgets entries lazily, so the idle time is what counts.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

_SEEN_FIN = 0x01
_SEEN_RST = 0x04
_DEFAULT_LIFETIMES = (21600, 60, 10)  # tcp, non-tcp, closing (seconds): the datapath's defaults


def _address(raw: Any, family: int) -> str:
    data = bytes(raw)
    return str(ipaddress.ip_address(data[:4] if family == 4 else data[:16]))


def live_connections(datapath: Any, now_ns: int | None = None) -> set[tuple[int, str]]:
    """(endpoint id, IP) for both ends of every live conntrack entry of the datapath."""
    now = time.monotonic_ns() if now_ns is None else now_ns  # bpf_ktime_get_ns is CLOCK_MONOTONIC
    tcp, other, closing = getattr(datapath, "_lifetimes", _DEFAULT_LIFETIMES)
    out: set[tuple[int, str]] = set()
    for key, value in datapath.conntrack.items():
        if key.proto == 6:
            flags = value.seen_fwd | value.seen_rev
            lifetime = closing if flags & (_SEEN_FIN | _SEEN_RST) else tcp
        else:
            lifetime = other
        if now - value.last_seen_ns > lifetime * 1_000_000_000:
            continue
        out.add((key.ep_id, _address(key.saddr, key.family)))
        out.add((key.ep_id, _address(key.daddr, key.family)))
    return out


__all__ = ["live_connections"]
