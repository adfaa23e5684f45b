"""Python mirror of bpf/hubble_events.h: event layouts, map value layouts and constants.

Event headers are Cilium's (trace v2 = 56 bytes, drop v3 = 48 bytes, policy verdict = 40 bytes),
little-endian host order; each header is followed by ``len_cap`` packet bytes and possibly up to
7 perf padding bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# message types
NOTIFY_DROP = 1
NOTIFY_TRACE = 4
NOTIFY_POLICY_VERDICT = 5

# trace observation points / reasons
TRACE_TO_LXC = 0
TRACE_TO_PROXY = 1  # dst_id = proxy port (0 for replies to the proxy's upstream sockets)
TRACE_FROM_LXC = 5
TRACE_FROM_PROXY = 6  # the proxy's upstream connection delivered to the endpoint
CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED = 0, 1, 2, 3

# drop reasons
REASON_FORWARDED = 0
DROP_INVALID = 134
DROP_POLICY = 133
DROP_PROXY_LOOKUP_FAILED = 178  # no proxy socket (the proxy is down): fail closed
DROP_PROXY_SET_FAILED = 179  # the socket could not be assigned, or not from this hook
DROP_PROXY_UNKNOWN_PROTO = 180  # redirect asked for a protocol other than TCP and UDP
DROP_POLICY_DENY = 181

# skb marks (Cilium's magic values, bits 8-11): the datapath marks packets it steers to the proxy,
# the proxy marks its upstream sockets (SO_MARK); see hubblepy.datapath.proxy_routing
MARK_MAGIC_MASK = 0x0F00
MARK_TO_PROXY = 0x0200
MARK_FROM_PROXY = 0x0A00
HP_MARK_FROM_PROXY = MARK_FROM_PROXY  # the name bpf/hubble_events.h and the L7 contract use
PROXY_ROUTE_TABLE = 2004  # node-namespace routing table with the local default route

# directions (policy and metrics)
DIR_INGRESS = 1
DIR_EGRESS = 2
DIRECTIONS = {"ingress": DIR_INGRESS, "egress": DIR_EGRESS}

# policy match types
MATCH_NONE, MATCH_L3_ONLY, MATCH_L3_L4, MATCH_L4_ONLY, MATCH_ALL, MATCH_L3_PROTO, MATCH_PROTO_ONLY = range(7)

# endpoint flags
EP_ENFORCE_INGRESS = 0x1
EP_ENFORCE_EGRESS = 0x2
EP_AUDIT = 0x4
EP_AUDIT_DEFAULT_INGRESS = 0x10  # default deny of that direction only audited (per-policy audit)
EP_AUDIT_DEFAULT_EGRESS = 0x20
EP_HAS_RANGES = 0x8  # set by Datapath when the endpoint has port-range (endPort) entries
RANGE_FIXED_BITS = 80  # policy_ranges LPM key bits before the port

# policy actions
POLICY_ALLOW = 1
POLICY_DENY = 2
POLICY_AUDIT_DENY = 3  # deny of an audited policy: the packet passes, verdict AUDIT

# monitor aggregation levels (Cilium's numbers)
AGGREGATION_LEVELS = {"none": 0, "medium": 2}

IDENTITY_WORLD = 2
METRICS_SIZE = 1024

# -- event headers (offsets as in Cilium's pkg/monitor structs) --
COMMON = struct.Struct("<BBHIIHBB")  # type, subtype, source, hash, len_orig, len_cap, version, ext_version
TRACE_V2 = struct.Struct("<BBHIIHBBIIHBBI16sQ")
DROP_V3 = struct.Struct("<BBHIIHBBIIIHBbIB3xQ")
POLICY_VERDICT = struct.Struct("<BBHIIHBBIiHBBB3xI4x")
assert TRACE_V2.size == 56 and DROP_V3.size == 48 and POLICY_VERDICT.size == 40


class TraceEvent(NamedTuple):
    obs_point: int
    source: int
    len_orig: int
    len_cap: int
    version: int
    src_label: int
    dst_label: int
    dst_id: int
    reason: int
    flags: int
    ifindex: int
    packet: bytes


class DropEvent(NamedTuple):
    reason: int
    source: int
    len_orig: int
    len_cap: int
    version: int
    src_label: int
    dst_label: int
    dst_id: int
    line: int
    file: int
    ifindex: int
    flags: int
    packet: bytes


class PolicyVerdictEvent(NamedTuple):
    source: int
    len_orig: int
    len_cap: int
    remote_label: int
    verdict: int
    dst_port: int
    proto: int
    direction: int
    ipv6: bool
    match_type: int
    audited: bool
    cookie: int
    packet: bytes


Event = TraceEvent | DropEvent | PolicyVerdictEvent


def decode_event(data: bytes) -> Event | None:
    """Decodes one of our three event kinds; returns None for other types or short data.

    A small reference decoder for tests and benchmarks; hubblepy.parser is the full one.
    """
    if len(data) < 16:
        return None
    kind = data[0]
    if kind == NOTIFY_TRACE and len(data) >= TRACE_V2.size:
        (_, obs, src, _, lo, lc, ver, _, sl, dl, did, reason, flags, ifx, _, _) = TRACE_V2.unpack_from(data)
        return TraceEvent(obs, src, lo, lc, ver, sl, dl, did, reason, flags, ifx, data[56 : 56 + lc])
    if kind == NOTIFY_DROP and len(data) >= DROP_V3.size:
        (_, reason, src, _, lo, lc, ver, _, sl, dl, did, line, f, _, ifx, fl, _) = DROP_V3.unpack_from(data)
        return DropEvent(reason, src, lo, lc, ver, sl, dl, did, line, f, ifx, fl, data[48 : 48 + lc])
    if kind == NOTIFY_POLICY_VERDICT and len(data) >= POLICY_VERDICT.size:
        (_, _, src, _, lo, lc, _, _, remote, verdict, dport, proto, fl, _, cookie) = (
            POLICY_VERDICT.unpack_from(data)
        )
        return PolicyVerdictEvent(
            src,
            lo,
            lc,
            remote,
            verdict,
            dport,
            proto,
            fl & 0x3,
            bool(fl & 0x4),
            (fl >> 3) & 0x7,
            bool(fl & 0x40),
            cookie,
            data[40 : 40 + lc],
        )
    return None
