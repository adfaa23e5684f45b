"""Lookup tables that turn enum values and datapath codes into the words `hubble observe` prints.

Every table is keyed by what can appear in a canonical flow dict: enum *names* (strings) and, for
robustness, the matching enum *numbers* too. Values that are missing from a table are printed as
the bare number, like Go's generated `String()` methods do for unknown enum values.
"""

from __future__ import annotations

# Reserved security identities, printed in parentheses in compact output (cli-formats §5.3).
RESERVED_IDENTITY_NAMES: dict[int, str] = {
    0: "unknown",
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world-ipv4",
    10: "world-ipv6",
}

# Trace observation points by datapath sub_type (datapath-events §3.1). Index 0..255.
_TRACE_POINT_TEXT = {
    0: "to-endpoint",
    1: "to-proxy",
    2: "to-host",
    3: "to-stack",
    4: "to-overlay",
    5: "from-endpoint",
    6: "from-proxy",
    7: "from-host",
    8: "from-stack",
    9: "from-overlay",
    10: "from-network",
    11: "to-network",
    12: "from-crypto",
    13: "to-crypto",
}
TRACE_POINT_BY_SUBTYPE: tuple[str, ...] = tuple(_TRACE_POINT_TEXT.get(i, str(i)) for i in range(256))

# Drop reason texts by datapath code (datapath-events §3.3); unknown codes print "<code>, 0".
_DROP_REASON_TEXT = {
    0: "Success",
    2: "Invalid packet",
    3: "Interface",
    4: "Interface Decrypted",
    5: "LB, sock cgroup: No backend slot entry found",
    6: "LB, sock cgroup: No backend entry found",
    7: "LB, sock cgroup: Reverse entry update failed",
    8: "LB, sock cgroup: Reverse entry stale",
    9: "Fragmented packet",
    10: "Fragmented packet entry update failed",
    11: "Missed tail call to custom program",
    12: "Interface Decrypting",
    13: "Interface Encrypting",
    14: "LB: sock cgroup: Reverse entry delete succeeded",
    15: "MTU error message",
    130: "Invalid source mac",
    131: "Invalid destination mac",
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    136: "Fragmentation needed",
    137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol",
    140: "Missed tail call",
    141: "Error writing to packet",
    142: "Unknown L4 protocol",
    143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code",
    146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key",
    148: "Error retrieving tunnel options",
    149: "Invalid Geneve option",
    150: "Unknown L3 target address",
    151: "Stale or unroutable IP",
    152: "No matching local container found",
    153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum",
    155: "CT: Map insertion failed",
    156: "Invalid IPv6 extension header",
    157: "IP fragmentation not supported",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled",
    162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state",
    164: "Local host is unreachable",
    165: "No configuration available to perform policy decision",
    166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade",
    168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited",
    171: "Invalid identity",
    172: "Unknown sender",
    173: "NAT not needed",
    174: "Is a ClusterIP",
    175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check",
    178: "Socket lookup failed",
    179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter",
    183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer",
    185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
    189: "Authentication required",
    190: "No conntrack map found",
    191: "No nat map found",
    192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation",
    194: "No egress gateway found",
    195: "Traffic is unencrypted",
    196: "TTL exceeded",
    197: "No node ID found",
    198: "Rate limited",
    199: "IGMP handled",
    200: "IGMP subscribed",
    201: "Multicast handled",
    202: "Host datapath not ready",
    203: "Endpoint policy program not available",
    204: "No Egress IP configured",
    205: "Punt to proxy",
}
DROP_REASON_BY_CODE: tuple[str, ...] = tuple(_DROP_REASON_TEXT.get(i, f"{i}, 0") for i in range(256))

# Policy match types (Flow.policy_match_type, a plain uint32); anything else prints "unknown".
POLICY_MATCH_TEXT: dict[int, str] = {
    0: "none",
    1: "L3-Only",
    2: "L3-L4",
    3: "L4-Only",
    4: "all",
    5: "L3-Proto",
    6: "Proto-Only",
}


def _enum(names: dict[int, str]) -> dict[object, str]:
    """Map both the enum names and the enum numbers to the name."""
    table: dict[object, str] = {}
    for number, name in names.items():
        table[number] = name
        table[name] = name
    return table


VERDICT_NAMES = _enum(
    {
        0: "VERDICT_UNKNOWN",
        1: "FORWARDED",
        2: "DROPPED",
        3: "ERROR",
        4: "AUDIT",
        5: "REDIRECTED",
        6: "TRACED",
        7: "TRANSLATED",
    }
)
TRAFFIC_DIRECTION_NAMES = _enum({0: "TRAFFIC_DIRECTION_UNKNOWN", 1: "INGRESS", 2: "EGRESS"})
AUTH_TYPE_NAMES = _enum({0: "DISABLED", 1: "SPIRE", 2: "TEST_ALWAYS_FAIL"})
L7_TYPE_LOWER: dict[object, str] = {
    k: v.lower() for k, v in _enum({0: "UNKNOWN_L7_TYPE", 1: "REQUEST", 2: "RESPONSE", 3: "SAMPLE"}).items()
}
DEBUG_CAPTURE_POINT_NAMES = _enum(
    {
        0: "DBG_CAPTURE_POINT_UNKNOWN",
        4: "DBG_CAPTURE_DELIVERY",
        5: "DBG_CAPTURE_FROM_LB",
        6: "DBG_CAPTURE_AFTER_V46",
        7: "DBG_CAPTURE_AFTER_V64",
        8: "DBG_CAPTURE_PROXY_PRE",
        9: "DBG_CAPTURE_PROXY_POST",
        10: "DBG_CAPTURE_SNAT_PRE",
        11: "DBG_CAPTURE_SNAT_POST",
    }
)
# Trace-sock TYPE: the four known points get short words, everything else its enum name.
SOCK_XLATE_TEXT: dict[object, str] = _enum({0: "SOCK_XLATE_POINT_UNKNOWN"})
for _number, _name, _word in (
    (1, "SOCK_XLATE_POINT_PRE_DIRECTION_FWD", "pre-xlate-fwd"),
    (2, "SOCK_XLATE_POINT_POST_DIRECTION_FWD", "post-xlate-fwd"),
    (3, "SOCK_XLATE_POINT_PRE_DIRECTION_REV", "pre-xlate-rev"),
    (4, "SOCK_XLATE_POINT_POST_DIRECTION_REV", "post-xlate-rev"),
):
    SOCK_XLATE_TEXT[_number] = _word
    SOCK_XLATE_TEXT[_name] = _word
LOST_EVENT_SOURCE_NAMES = _enum(
    {
        0: "UNKNOWN_LOST_EVENT_SOURCE",
        1: "PERF_EVENT_RING_BUFFER",
        2: "OBSERVER_EVENTS_QUEUE",
        3: "HUBBLE_RING_BUFFER",
    }
)
NODE_STATE_NAMES = _enum(
    {0: "UNKNOWN_NODE_STATE", 1: "NODE_CONNECTED", 2: "NODE_UNAVAILABLE", 3: "NODE_GONE", 4: "NODE_ERROR"}
)


def enum_text(table: dict[object, str], value: object, default: str) -> str:
    """The printed name of an enum value: `default` when absent, the bare number when unknown."""
    if value is None:
        return default
    text = table.get(value)
    if text is not None:
        return text
    return str(value)
