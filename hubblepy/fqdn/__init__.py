"""DNS-aware egress: the FQDN cache, toFQDNs selectors and the node's notify server.

* :mod:`.matcher`: ``matchName`` / ``matchPattern`` with Cilium's semantics;
* :mod:`.cache`: per-endpoint name -> IPs with TTL, expiry and min-ttl (``cilium-dbg fqdn cache``);
* :mod:`.names`: toFQDNs selectors -> the IPs (and their CIDR identities) they select;
* :mod:`.conntrack`: which IPs endpoints still have tracked connections to (cache GC);
* :mod:`.notify`: the node's end of the DNS proxy's notify protocol (allow before answer);
* :mod:`.table`: ``hubble lab fqdn cache list`` output.
"""

from hubblepy.fqdn.cache import CILIUM_MIN_TTL, CacheEntry, FQDNCache, Update
from hubblepy.fqdn.matcher import FQDNSelector, display_name, normalize_name

__all__ = [
    "CILIUM_MIN_TTL",
    "CacheEntry",
    "FQDNCache",
    "FQDNSelector",
    "Update",
    "display_name",
    "normalize_name",
]
