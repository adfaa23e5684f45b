"""Lookup tables that turn enum values and datapath codes into the words `hubble observe` prints.

Every table is keyed by what can appear in a canonical flow dict: enum *names* (strings) and, for
robustness, the matching enum *numbers* too. Values that are missing from a table are printed as
the bare number, like Go's generated `String()` methods do for unknown enum values.
"""

from __future__ import annotations

from hubblepy.identities import RESERVED_IDENTITIES
from hubblepy.parser.constants import DROP_REASON_TEXTS

# Reserved security identities, printed in parentheses in compact output (upstream hubble 1.19).
RESERVED_IDENTITY_NAMES: dict[int, str] = {0: "unknown"} | {
    number: name for name, number in RESERVED_IDENTITIES.items()
}

# Trace observation points by datapath sub_type (Cilium's pkg/monitor/api). Index 0..255.
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

# Drop reason texts by datapath code (Cilium's pkg/monitor/api); unknown codes print "<code>, 0".
DROP_REASON_BY_CODE: tuple[str, ...] = tuple(DROP_REASON_TEXTS.get(i, f"{i}, 0") for i in range(256))

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
