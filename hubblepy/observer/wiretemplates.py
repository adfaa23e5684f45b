"""GetFlows wire bytes of raw datapath samples without decoding them: one template per sample shape.

Most of a node's events repeat a few *shapes*: the same endpoints, ports, TCP flags, event type and
verdict, differing only in what the flow does not show (sequence numbers, IP IDs, checksums, TCP
timestamps, payload, skb hash, lengths). Two samples of one shape, captured under one resolver
snapshot, decode to flows that differ only in ``time`` and ``uuid``, so their serialized
``GetFlowsResponse`` differ only there too. :class:`WireTemplates` decodes and encodes the first
sample of each shape the usual way (:class:`~hubblepy.observer.records.RecordDecoder` and
:class:`~hubblepy.codec.fastwire.WireEncoder`), cuts the bytes around the two time fields and the
UUID, and builds every later sample of that shape by joining the pieces with its own time and UUID.

The shape key is computed for a whole scan at once (numpy), from the bytes the parser reads:

* the event header (trace v0-v2, drop v0-v3, policy verdict in both layouts) except the skb hash,
  the original length and the capture length;
* the Ethernet addresses; the IP version, addresses and protocol; TCP flags and NS bit, ICMP type
  and code; the TCP and UDP ports where the flow depends on them (below);
* the resolver snapshot number (a key is looked up in its snapshot's table).

A TCP or UDP port the flow shows only in its ``l4`` field is a *hole* of the template (the key
leaves it out, :func:`port_holes`), so one template serves every connection of a pair of
workloads: a short connection's new source port is no new shape. A port stays in the key where
the parser looks something up by it: a service on its address (the flow names the service of an
address and port; holes only where the resolver's services are known per address, as
``StaticResolver``'s are) and the destination port of drops and policy verdicts (the policy that
decided). The ``l4`` field (its length, the TCP or UDP message's length, the port fields, each
left out when 0, and the rest) and the flow's and response's lengths that follow from its size
are made per sample, for a whole scan at once (:func:`_l4_array`).

Only samples whose decoding provably depends on nothing else are keyed: Ethernet (IPv4 or IPv6
ethertype) or L3-device packets, no overlay, an IPv4 header without options or fragmentation, an
IPv6 header without extension headers, TCP (with options checked as the parser checks them), UDP,
ICMPv4 or ICMPv6, every length check of the parser passing. Anything else (capture and trace-sock
events, L7 records, malformed or unusual packets) takes the ordinary path. A template is checked
when it is made: rebuilding its own sample from the pieces must give the ordinary path's bytes, or
the shape is marked to take the ordinary path for good.
"""

from __future__ import annotations

import bisect
import ipaddress
import operator
import struct
import sys
from typing import Any

import numpy as np
import numpy.ma  # noqa: F401  (np.unique imports it when first called: ~35 ms of the first read)

from hubblepy.codec.fastwire import _varint
from hubblepy.parser.constants import (
    CLS_FLAG_GENEVE,
    CLS_FLAG_IPV6,
    CLS_FLAG_L3_DEV,
    CLS_FLAG_VXLAN,
    MSG_DROP,
    MSG_POLICY_VERDICT,
    MSG_TRACE,
    PV_IPV6,
    PV_L3_DEV,
)
from hubblepy.parser.resolver import StaticResolver

GATHER = 176  # bytes read from the start of each sample: header (<= 56), Ethernet, IPv6, TCP with options
HEADER = 56  # longest header kept in the key (trace v2)
KEY_BYTES = 112  # header 56, header length, first layer, IPv6, MACs 12, addresses 32, protocol, L4 6, pad
TEMPLATE_LIMIT = 8192  # templates per resolver snapshot (and about as many in all): a few MB
SEEN_LIMIT = 1 << 16  # shapes remembered as seen once before that memory is emptied
# After two scans in a row that had to make templates for more than an eighth of their samples (most
# shapes new: many new peers, or ports where they are keyed) none is made for the next COOLDOWN_SCANS
# scans: their samples take the ordinary path, whose bytes the ring caches for the next reader.
COOLDOWN_SCANS = 16
COOLDOWN_MIN_SHAPES = 16

_FIRST_ETHERNET, _FIRST_IPV4, _FIRST_IPV6 = 0, 1, 2
_FIRST_BY_FLAGS = np.array(
    [
        (_FIRST_IPV6 if f & CLS_FLAG_IPV6 else _FIRST_IPV4) if f & CLS_FLAG_L3_DEV else _FIRST_ETHERNET
        for f in range(256)
    ],
    dtype=np.int64,
)
_OVERLAY_BY_FLAGS = np.array([bool(f & (CLS_FLAG_VXLAN | CLS_FLAG_GENEVE)) for f in range(256)])
_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58
_L4_MIN = np.zeros(256, dtype=np.int64)  # bytes each keyed L4 protocol needs (0: not keyed)
_L4_MIN[[_TCP, _UDP, _ICMP, _ICMPV6]] = (20, 8, 8, 4)
_COLS = np.arange(GATHER, dtype=np.int64)
_UUID_FIELD = b"\x92\x02\x24"  # flow.uuid (field 34, length-delimited), 36 bytes
_FLOW_TIME_TAG = b"\x0a"  # flow.time (field 1)
_RESPONSE_TIME_TAG = b"\xca\x3e"  # GetFlowsResponse.time (field 1001)
_PREFIX = struct.Struct(">BI")  # gRPC message prefix: not compressed, length
_L4_TAG = b"\x32"  # flow.l4 (field 6, length-delimited)
_TCP_TAG, _UDP_TAG = 0x0A, 0x12  # Layer4.TCP (field 1), Layer4.UDP (field 2)
_REST_LIMIT = 100  # l4 bytes after the ports a template with holes takes: both lengths stay one byte
_MAX_OPTION_STEPS = 40  # TCP options: at most 40 bytes, each step consumes at least one


def _tcp_options_valid(options: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The parser's TCP option check (``packet._options_valid`` with a minimum length of 2) for each
    row of ``options`` (40 bytes) over its first ``length`` bytes."""
    m = len(length)
    # what Linux's segments carry (after the handshake: NOP NOP timestamps; SYN and SYN-ACK: MSS,
    # SACK permitted, timestamps, NOP, window scale) is valid without the walk below
    words = np.ascontiguousarray(options).view("<u4")
    common = ((length == 12) & (words[:, 0] == _NOP_NOP_TIMESTAMP_WORD)) | (
        (length == 20) & (options[:, _SYN_AT] == _SYN_OPTIONS).all(axis=1)
    )
    if common.all():
        return common
    pos = np.zeros(m, dtype=np.int64)
    valid = np.ones(m, dtype=bool)
    active = (pos < length) & ~common
    for _ in range(_MAX_OPTION_STEPS + 1):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        p, end = pos[rows], length[rows]
        kind = options[rows, np.minimum(p, 39)]
        ended = kind == 0
        nop = kind == 1
        other = ~ended & ~nop
        size = options[rows, np.minimum(p + 1, 39)].astype(np.int64)
        bad = other & ((end - p < 2) | (size > end - p) | (size < 2))
        valid[rows[bad]] = False
        step = np.where(nop, 1, np.where(other & ~bad, size, 0))
        pos[rows] = p + step
        active[rows] = ~ended & ~bad & (p + step < end)
    return valid


_NOP_NOP_TIMESTAMP_WORD = int.from_bytes(bytes((1, 1, 8, 10)), "little")
_SYN_AT = np.array([0, 1, 4, 5, 6, 7, 16, 17, 18], dtype=np.int64)  # kinds, sizes and NOP of a Linux SYN
_SYN_OPTIONS = np.array([2, 4, 4, 2, 8, 10, 1, 3, 3], dtype=np.uint8)


def shape_keys(g: np.ndarray, lengths: np.ndarray, pv_layout: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(keyed, keys)`` for samples whose first GATHER bytes are the rows of ``g`` and whose lengths
    are ``lengths``: which samples have a shape key (see the module docstring) and the keys
    (KEY_BYTES each; rows not keyed hold garbage)."""
    n = len(g)
    size = lengths.astype(np.int64)
    kind, version, ext = g[:, 0], g[:, 14].astype(np.int64), g[:, 15]
    cap = g[:, 12].astype(np.int64) | g[:, 13].astype(np.int64) << 8  # host order (little-endian)
    trace, drop, verdict = kind == MSG_TRACE, kind == MSG_DROP, kind == MSG_POLICY_VERDICT
    header = np.zeros(n, dtype=np.int64)
    header[trace] = np.select([version == 0, version == 1, version == 2], [32, 48, 56], 0)[trace]
    header[drop] = np.select([version <= 1, version == 2, version == 3], [36, 40, 48], 0)[drop]
    if pv_layout is not None:
        header[verdict] = pv_layout
    else:
        rest = size - cap
        header[verdict] = np.where((rest >= 32) & (rest < 40), 32, np.where(size >= 40, 40, 32))[verdict]
    keyed = (header > 0) & (ext == 0) & (size >= header)
    cls_flags = np.where(trace, g[:, 27], np.where(drop & (version >= 2), g[:, 36], 0))
    first = _FIRST_BY_FLAGS[cls_flags]
    keyed &= ~(_OVERLAY_BY_FLAGS[cls_flags] & (trace | drop))
    pflags = g[:, 27]
    pv_first = np.where(pflags & PV_IPV6, _FIRST_IPV6, _FIRST_IPV4)
    pv_l3 = (header == 40) & ((pflags & PV_L3_DEV) > 0)
    first = np.where(verdict, np.where(pv_l3, pv_first, _FIRST_ETHERNET), first)
    end = np.minimum(header + cap, size)
    keyed &= end > header

    keys = np.zeros((n, KEY_BYTES), dtype=np.uint8)
    # the header, without the skb hash, lengths and packet bytes (a header shorter than HEADER)
    keys[:, :HEADER] = g[:, :HEADER]
    counts = np.bincount(header, minlength=HEADER)
    for start in np.flatnonzero(counts[:HEADER]).tolist():  # the packet, not the header
        if counts[start] == n:  # (one header length for all: the usual scan)
            keys[:, start:HEADER] = 0
        else:
            keys[header == start, start:HEADER] = 0
    keys[:, 4:14] = 0  # skb hash, original length, capture length
    keys[:, 56] = header
    keys[:, 57] = first
    eth = first == _FIRST_ETHERNET
    link = _aligned(g, header, 14)  # Ethernet header (rows with one)
    ethertype = link[:, 12].astype(np.int64) << 8 | link[:, 13]
    keyed &= ~eth | ((end - header > 14) & ((ethertype == 0x0800) | (ethertype == 0x86DD)))
    keys[:, 59:71] = link[:, :12]
    if not eth.all():
        keys[~eth, 59:71] = 0
    v6 = np.where(eth, ethertype == 0x86DD, first == _FIRST_IPV6)
    keys[:, 58] = v6
    l3 = header + 14 * eth
    ip = _aligned(g, l3, 40)
    avail = end - l3
    # IPv6: payload length and next header; IPv4: no options, not a fragment
    payload = ip[:, 4].astype(np.int64) << 8 | ip[:, 5]
    total = ip[:, 2].astype(np.int64) << 8 | ip[:, 3]
    total = np.where(total == 0, avail, total)
    v4_ok = (ip[:, 0] == 0x45) & (avail >= 20) & (total >= 20) & ((ip[:, 6] & 0x3F) == 0) & (ip[:, 7] == 0)
    keyed &= np.where(v6, avail >= 40, v4_ok)
    proto = np.where(v6, ip[:, 6], ip[:, 9])
    l4_avail = np.where(
        v6,
        np.where((payload > 0) & (payload < avail - 40), payload, avail - 40),
        np.minimum(total, avail) - 20,
    )
    if v6.any():
        keys[v6, 71:103] = ip[v6, 8:40]
        keys[~v6, 71:79] = ip[~v6, 12:20]
    else:
        keys[:, 71:79] = ip[:, 12:20]
    keys[:, 103] = proto
    need = _L4_MIN[proto]
    keyed &= (need > 0) & (l4_avail >= need)
    l4 = _aligned(g, l3 + 20 + 20 * v6, 60)
    tcp = proto == _TCP
    icmp = (proto == _ICMP) | (proto == _ICMPV6)
    keys[:, 104:106] = l4[:, 0:2]
    keys[:, 106:108] = l4[:, 2:4]
    if icmp.any():
        keys[icmp, 106:108] = 0  # ICMP: type and code only
    offset_byte = l4[:, 12]
    keys[:, 108] = np.where(tcp, offset_byte & 1, 0)
    keys[:, 109] = np.where(tcp, l4[:, 13], 0)
    doff = (offset_byte >> 4).astype(np.int64) * 4
    keyed &= ~tcp | ((doff >= 20) & (doff <= l4_avail))
    with_options = np.flatnonzero(keyed & tcp & (doff > 20))
    if len(with_options):
        keyed[with_options] &= _tcp_options_valid(l4[with_options, 20:60], doff[with_options] - 20)
    return keyed, keys


def _aligned(g: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes (even) of each row of ``g`` from its own start (``starts``: a few distinct
    values, at most GATHER - width), copied in 16-bit units when all are even."""
    n = len(g)
    counts = np.bincount(starts, minlength=GATHER)
    present = np.flatnonzero(counts)
    if len(present) == 1:
        start = int(present[0])
        return g[:, start : start + width]
    if (present & 1).any():  # (no layout has an odd length)
        out = np.empty((n, width), dtype=np.uint8)
        for start in present.tolist():
            rows = np.flatnonzero(starts == start)
            out[rows] = g[rows, start : start + width]
        return out
    units = g.view("<u2")
    out = np.empty((n, width // 2), dtype="<u2")
    for start in present.tolist():
        rows = np.flatnonzero(starts == start)
        out[rows] = units[rows, start // 2 : (start + width) // 2]
    return out.view(np.uint8)


def port_holes(keys: np.ndarray, keyed: np.ndarray, services: Any) -> np.ndarray:
    """Make the TCP and UDP ports of the ``keyed`` rows holes where the flow does not depend on
    them: ``(source ports, destination ports)`` of all rows (from the keys as they were), whose
    key bytes are zeroed (and marked at byte 110, which is 0 before) where they are holes.
    ``services`` is :meth:`WireTemplates.service_ips` of the rows' snapshot: a port is not a hole
    when its address has a service (the flow names the service of an address and port); None: no
    holes. The destination port of drops and policy verdicts is never a hole (a policy is looked
    up by it)."""
    ports = keys[:, 104:108].astype(np.int64)
    sport, dport = ports[:, 0] << 8 | ports[:, 1], ports[:, 2] << 8 | ports[:, 3]
    if services is None:
        return np.stack([sport, dport])
    proto = keys[:, 103]
    candidate = keyed & ((proto == _TCP) | (proto == _UDP))
    if not candidate.any():
        return np.stack([sport, dport])
    src_free = candidate.copy()
    dst_free = candidate & (keys[:, 0] == MSG_TRACE)
    if services:
        v6 = keys[:, 58] == 1
        for free, at in ((src_free, 71), (dst_free, 75)):
            v4_words = np.ascontiguousarray(keys[:, at : at + 4]).view("<u4").ravel()
            free &= v6 | ~np.isin(v4_words, services[0])
        for free, at in ((src_free, 71), (dst_free, 87)):
            halves = np.ascontiguousarray(keys[:, at : at + 16]).view("<u8")
            free &= ~v6 | ~(np.isin(halves[:, 0], services[1]) & np.isin(halves[:, 1], services[2]))
    keys[src_free, 104:106] = 0
    keys[dst_free, 106:108] = 0
    keys[:, 110] |= (src_free | dst_free << 1).astype(np.uint8)
    return np.stack([sport, dport])


def gather(objs: list[Any], offsets: np.ndarray) -> np.ndarray:
    """The first GATHER bytes of each sample ``objs[i][offsets[i]:]`` as rows (bytes past the end
    of a buffer read as zeros or its last bytes: the sample lengths make them unused)."""
    n = len(objs)
    if not n:
        return np.empty((0, GATHER), dtype=np.uint8)
    ids = np.fromiter(map(id, objs), dtype=np.int64, count=n)
    bounds = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), n]
    return gather_runs([objs[lo] for lo in bounds[:-1]], bounds, offsets)


def gather_runs(buffers: list[Any], bounds: list[int], offsets: np.ndarray) -> np.ndarray:
    """:func:`gather` of samples that come in runs: rows ``bounds[k] .. bounds[k+1]-1`` are samples
    of ``buffers[k]`` (``bounds`` starts at 0 and ends at the number of samples)."""
    out = np.empty((bounds[-1], GATHER), dtype=np.uint8)
    words = out.view(np.uint32)
    for data, lo, hi in zip(buffers, bounds[:-1], bounds[1:], strict=True):
        offs = offsets[lo:hi]
        if not (offs & 3).any() and int(offs.max()) + GATHER <= len(data):  # 4-byte aligned (the reader's)
            buf = np.frombuffer(data, dtype=np.uint32, count=len(data) >> 2)
            rows = np.lib.stride_tricks.as_strided(  # every GATHER-byte window, as a row (no copy)
                buf, shape=(len(buf) - _WORDS + 1, _WORDS), strides=(4, 4), writeable=False
            )
            words[lo:hi] = rows[offs >> 2]
        else:
            raw = np.frombuffer(data, dtype=np.uint8)
            out[lo:hi] = raw[np.minimum(offs[:, None] + _COLS, len(raw) - 1)]
    return out


_WORDS = GATHER // 4


def _fields(buf: bytes) -> list[tuple[int, int, int]] | None:
    """``(field number, start, end)`` of each top-level field of serialized protobuf ``buf``."""
    out = []
    pos, n = 0, len(buf)
    while pos < n:
        start = pos
        tag, pos = _read_varint(buf, pos)
        if pos < 0:
            return None
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            pos = pos + size if pos >= 0 else -1
        else:
            return None
        if pos < 0 or pos > n:
            return None
        out.append((tag >> 3, start, pos))
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf) and shift < 70:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return 0, -1


def _timestamp_body(time_ns: int) -> bytes:
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    body = b"\x08" + _varint(seconds) if seconds else b""
    return body + b"\x10" + _varint(nanos) if nanos else body


class TimeFields:
    """The two time fields of a response at ``time_ns`` (the flow's and the response's)."""

    __slots__ = ("flow", "response")

    def __init__(self, time_ns: int) -> None:
        body = _timestamp_body(time_ns)
        size = _varint(len(body))
        self.flow = _FLOW_TIME_TAG + size + body
        self.response = _RESPONSE_TIME_TAG + size + body


class Template:
    """The serialized response of one shape cut around its times and UUID (see the module docstring).

    A framed response is ``head(time) + flow time + middle + UUID + tail + response time + after``,
    where ``middle`` ends with the UUID's tag and length and ``tail`` holds the flow fields after the
    UUID and the response fields before its time; ``head`` is the gRPC prefix and the flow's tag
    and length, which depend on the size of the time fields only.

    With port holes (``l4_kind`` set: the shape key left the TCP or UDP ports out) the response is
    ``head(time, size of the l4 field) + flow time + middle + l4 field + post + UUID + ...``: the
    flow's ``l4`` field (:meth:`l4_field`: its tag and length, the TCP or UDP tag and length, the
    source and destination port fields, each left out when 0, and ``rest``, the TCP flags) is made
    per sample, and ``post`` (the flow fields between it and the UUID) ends with the UUID's tag.
    """

    __slots__ = ("middle", "tail", "after", "l4_kind", "rest", "post", "_fixed", "_heads")

    def __init__(self, middle: bytes, flow_tail: bytes, before_time: bytes, after_time: bytes) -> None:
        self.middle = middle + _UUID_FIELD
        self.tail = flow_tail + before_time
        self.after = after_time
        self.l4_kind = 0  # the TCP or UDP tag in the l4 field when the ports are holes, else 0
        self.rest = b""  # with holes: the l4 message's bytes after the ports
        self.post = b""  # with holes: the flow's bytes from the l4 field to the UUID
        flow_fixed = len(self.middle) + 36 + len(flow_tail)  # flow bytes besides its time (and l4) field
        self._fixed = (flow_fixed, len(before_time) + len(after_time))
        self._heads: dict[int, bytes] = {}

    def head(self, time: TimeFields, l4_size: int = 0) -> bytes:
        """The gRPC prefix and the flow's tag and length for responses with ``time`` (and, with port
        holes, an l4 field of ``l4_size`` bytes)."""
        flow_time = len(time.flow)
        got = self._heads.get(flow_time << 16 | l4_size)
        if got is None:
            flow_fixed, response_fixed = self._fixed
            flow_len = flow_time + flow_fixed + l4_size
            flow_head = b"\x0a" + _varint(flow_len)
            total = len(flow_head) + flow_len + response_fixed + len(time.response)
            got = b"\x00" + total.to_bytes(4, "big") + flow_head
            self._heads[flow_time << 16 | l4_size] = got
        return got

    def l4_field(self, sport: int, dport: int) -> bytes:
        """The flow's l4 field with these ports (a template with port holes; the slow way)."""
        body = _port_fields(sport, dport) + self.rest
        inner = bytes((self.l4_kind,)) + _varint(len(body)) + body
        return _L4_TAG + _varint(len(inner)) + inner

    def framed(self, time: TimeFields, uuid: bytes, ports: tuple[int, int] = (0, 0)) -> bytes:
        """One framed response (the slow way: for checks); ``ports`` fill the port holes."""
        if not self.l4_kind:
            return self.head(time) + time.flow + self.middle + uuid + self.tail + time.response + self.after
        l4 = self.l4_field(*ports)
        return (
            self.head(time, len(l4))
            + time.flow
            + self.middle
            + l4
            + self.post
            + uuid
            + self.tail
            + time.response
            + self.after
        )

    @classmethod
    def cut(
        cls, wire: bytes, time_ns: int, uuid: str, ports: tuple[int, int] | None = None
    ) -> Template | None:
        """The template of a response serialized as ``wire`` with ``time_ns`` and ``uuid``, or None
        when its bytes are not laid out as expected. With ``ports`` (the sample's TCP or UDP source
        and destination ports) the template has port holes."""
        top = _fields(wire)
        if not top or top[0][0] != 1 or wire[0] != 0x0A or [f for f, _, _ in top].count(1) != 1:
            return None
        _, start, end = top[0]
        _, body_at = _read_varint(wire, start + 1)
        flow = wire[body_at:end]
        inner = _fields(flow)
        time = TimeFields(time_ns)
        if not inner or inner[0][0] != 1 or flow[: inner[0][2]] != time.flow:
            return None
        uuids = [(s, e) for f, s, e in inner if f == 34]
        if len(uuids) != 1 or [f for f, _, _ in inner].count(1) != 1:
            return None
        u_start, u_end = uuids[0]
        if flow[u_start:u_end] != _UUID_FIELD + uuid.encode():
            return None
        rest = wire[end:]
        times = [(s, e) for f, s, e in (_fields(rest) or []) if f == 1001]
        if len(times) != 1 or rest[times[0][0] : times[0][1]] != time.response:
            return None
        time_end = inner[0][2]
        if ports is None:
            template = cls(flow[time_end:u_start], flow[u_end:], rest[: times[0][0]], rest[times[0][1] :])
        else:
            l4s = [(s, e) for f, s, e in inner if f == 6]
            if len(l4s) != 1 or not time_end <= l4s[0][0] < u_start:
                return None
            l4_start, l4_end = l4s[0]
            template = cls(flow[time_end:l4_start], flow[u_end:], rest[: times[0][0]], rest[times[0][1] :])
            if not template._make_holes(flow[l4_start:l4_end], flow[l4_end:u_start], ports):
                return None
        framed = template.framed(time, uuid.encode(), ports or (0, 0))
        if int.from_bytes(framed[1:5], "big") != len(wire) or framed[5:] != wire:
            return None  # the pieces must rebuild the ordinary path's bytes
        return template

    def _make_holes(self, field: bytes, post: bytes, ports: tuple[int, int]) -> bool:
        """Cut the ports out of ``field`` (the flow's l4 field, ``post`` after it); False when it
        is not laid out as :meth:`l4_field` makes it."""
        ports_bytes = _port_fields(*ports)
        if (
            len(field) < 4
            or field[0] != _L4_TAG[0]
            or field[2] not in (_TCP_TAG, _UDP_TAG)
            or field[1] != len(field) - 2  # both lengths fit in one byte
            or field[3] != len(field) - 4
            or field[4 : 4 + len(ports_bytes)] != ports_bytes
            or len(field) - 4 - len(ports_bytes) > _REST_LIMIT
        ):
            return False
        self.l4_kind = field[2]
        self.rest = field[4 + len(ports_bytes) :]
        self.middle = self.middle[: -len(_UUID_FIELD)]
        self.post = post + _UUID_FIELD
        flow_fixed, response_fixed = self._fixed
        self._fixed = (flow_fixed + len(post), response_fixed)
        return self.l4_field(*ports) == field


def _port_fields(sport: int, dport: int) -> bytes:
    """TCP/UDP ``source_port`` and ``destination_port`` fields (proto3: left out when 0)."""
    return (b"\x08" + _varint(sport) if sport else b"") + (b"\x10" + _varint(dport) if dport else b"")


class WireTemplates:
    """Templates of one ring's decoder, per resolver snapshot (thread-safe).

    :func:`plan_frames` finds the templates of a scan's raw samples with :meth:`lookup`;
    :meth:`prune` forgets the snapshots the ring no longer refers to.
    """

    def __init__(self, decoder: Any, encoder: Any) -> None:
        self.decoder = decoder
        self.encoder = encoder  # WireEncoder of GetFlowsResponse: the ordinary path's bytes
        parser = decoder.parser
        self.pv_layout = parser._pv_layout
        self.enabled = sys.byteorder == "little" and decoder.can_snapshot and parser._ext_lengths.get(0) == 0
        # per snapshot: key hash -> (key bytes, template or None when the shape cannot have one)
        self._tables: dict[int, dict[int, tuple[bytes, Template | None]]] = {}
        self._seen: dict[int, int] = {}  # key hash -> snapshot, of shapes seen once
        self._services: dict[int, Any] = {}  # snapshot -> service_ips()
        self.cooldown = 0  # scans left during which no template is made
        self.strikes = 0  # scans in a row that had to make templates for most of their samples
        self.built = 0  # shapes seen (templates made or refused), for benchmarks
        self.hits = 0  # samples served from a template

    def prune(self, oldest: int) -> None:
        """Forget the templates of snapshots older than ``oldest`` (the writer calls this while
        readers may add tables: the keys are copied first, in one step)."""
        for number in [n for n in list(self._tables) if n < oldest]:
            self._tables.pop(number, None)
        for number in [n for n in list(self._services) if n < oldest]:
            self._services.pop(number, None)

    def service_ips(self, snapshot: int) -> Any:
        """The addresses that have a service in resolver ``snapshot``, for :func:`port_holes`: ``()``
        when there is no service, else ``(IPv4 addresses as u32, IPv6 high halves, low halves)``
        (network bytes read little-endian, as the keys hold them); None when the flows' services
        cannot be told from addresses alone (no port holes then)."""
        got = self._services.get(snapshot, False)
        if got is not False:
            return got
        parser = self.decoder._parsers.get(snapshot)
        got = None
        if parser is not None and parser._service_by_addr is None:
            got = ()
        elif parser is not None and type(parser._resolver).service_by_addr is StaticResolver.service_by_addr:
            v4: list[bytes] = []
            v6: list[bytes] = []
            for ip, _ in list(parser._resolver.services):
                try:
                    packed = ipaddress.ip_address(ip).packed
                except ValueError:
                    continue  # never equal to an address the parser prints
                (v4 if len(packed) == 4 else v6).append(packed)
            if v4 or v6:
                six = np.frombuffer(b"".join(v6), dtype="<u8").reshape(-1, 2)
                got = (np.frombuffer(b"".join(v4), dtype="<u4"), six[:, 0].copy(), six[:, 1].copy())
            else:
                got = ()
        self._services[snapshot] = got
        return got

    def lookup(self, keys: np.ndarray, snapshot: int, make: Any) -> tuple[list[Template | None], np.ndarray]:
        """``(templates, index)``: the template of row ``i`` of ``keys`` (all under resolver
        ``snapshot``) is ``templates[index[i]]``, made with ``make(i)`` -> ``(wire, time_ns, uuid)``
        (or None) the first time its shape is seen."""
        hashes = _hash_rows(keys)
        distinct, first, index, counts = np.unique(
            hashes, return_index=True, return_inverse=True, return_counts=True
        )
        index = index.ravel()
        firsts = keys[first]
        table = self._tables.get(snapshot)
        if table is None:  # a new snapshot: the older ones' templates stay within TEMPLATE_LIMIT in all
            numbers = sorted(list(self._tables))
            while numbers and sum(len(self._tables.get(n, ())) for n in numbers) > TEMPLATE_LIMIT:
                self._tables.pop(numbers.pop(0), None)
            table = self._tables.setdefault(snapshot, {})
        hashes_list = distinct.tolist()
        got = [table.get(h) for h in hashes_list]
        seen = self._seen
        made_now = 0
        for i, hit in enumerate(got):
            if hit is not None and hit[0] == firsts[i].tobytes():
                continue
            h = hashes_list[i]
            if self.cooldown:  # most shapes were new lately: the ordinary path is cheaper for them
                got[i] = (b"", None)
                continue
            if counts[i] < 2 and seen.get(h) != snapshot:  # templated the second time it is seen: one-off
                if len(seen) >= SEEN_LIMIT:  # shapes (a scan of addresses) cost no more
                    seen.clear()
                seen[h] = snapshot
                got[i] = (b"", None)
                continue
            made = make(int(first[i]))
            hit = (firsts[i].tobytes(), Template.cut(*made) if made is not None else None)
            if len(table) >= TEMPLATE_LIMIT:  # forget the older half
                for stale in list(table)[: TEMPLATE_LIMIT // 2]:
                    table.pop(stale, None)  # another reader may be evicting too
            table[h] = hit
            got[i] = hit
            self.built += 1
            made_now += 1
        if self.cooldown:
            self.cooldown -= 1
        elif made_now > max(COOLDOWN_MIN_SHAPES, len(keys) // 8):
            self.strikes += 1  # a cold ring's first scan makes many too: only a second one in a row counts
            if self.strikes >= 2:
                self.cooldown, self.strikes = COOLDOWN_SCANS, 0
        else:
            self.strikes = 0
        found = [hit[1] for hit in got]  # type: ignore[index]
        same = (keys.view("<u8") == firsts.view("<u8")[index]).all(axis=1)
        if not same.all():  # two shapes with one hash in this scan: the others take the slow path
            found.append(None)
            index = np.where(same, index, len(found) - 1)
        return found, index


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ROW_MULTIPLIERS = (np.arange(KEY_BYTES // 8, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C16)) | np.uint64(1)


def _hash_rows(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key row (the rows are compared in full afterwards)."""
    x = (keys.view("<u8") * _ROW_MULTIPLIERS).sum(axis=1, dtype=np.uint64)
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


class _Empty:
    middle = tail = after = rest = post = b""
    l4_kind = 0

    def head(self, time: TimeFields, l4_size: int = 0) -> bytes:
        return b""


_EMPTY = _Empty()


class FramePlan:
    """The raw samples of a scan that templates serve (``fast``, over the scan's sequences) and
    their gRPC-framed bytes (:meth:`frames`); ``slow`` lists the sequences left to the ordinary path.

    The framed responses of all fast samples are one buffer (``data``, in scan order) with each
    response's end in ``ends`` (``ends[0]`` is 0): a run of them is a slice, its sizes a difference.
    """

    __slots__ = ("fast", "slow", "times", "_data", "_ends", "_index")

    def __init__(
        self, fast: np.ndarray, slow: list[int], times: np.ndarray, data: Any, ends: np.ndarray
    ) -> None:
        self.fast = fast
        self.slow = slow
        self.times = times  # per sequence of the scan (meaningful where fast)
        self._data = memoryview(data).cast("B")  # the framed responses of the fast samples, in order
        self._ends = ends  # where each of them ends in ``data``, after a leading 0
        self._index = np.cumsum(fast) - 1  # position among the fast samples, per scan position

    def runs(self) -> list[tuple[int, int, bool]]:
        """``(start, stop, fast)`` runs of scan positions, in order."""
        cuts = np.flatnonzero(self.fast[1:] != self.fast[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(self.fast)]
        flags = self.fast[bounds[:-1]].tolist()
        return [(lo, hi, flag) for lo, hi, flag in zip(bounds[:-1], bounds[1:], flags, strict=True)]

    def frames(self, start: int, stop: int) -> memoryview:
        """The framed responses of scan positions ``start .. stop-1`` (all fast): a view of the
        plan's buffer (``bytes()`` or ``Frames()`` of it copies it once)."""
        lo = int(self._index[start])
        hi = lo + stop - start
        return self._data[int(self._ends[lo]) : int(self._ends[hi])]

    def sizes(self, start: int, stop: int) -> np.ndarray:
        """The framed size of each response of scan positions ``start .. stop-1`` (all fast)."""
        lo = int(self._index[start])
        hi = lo + stop - start
        return np.diff(self._ends[lo : hi + 1])


def _pick(items: list[Any], index: list[int]) -> list[Any]:
    """``[items[i] for i in index]``, taken in C."""
    if len(index) > 1:
        return list(operator.itemgetter(*index)(items))
    return [items[i] for i in index]


def plan_frames(
    ring: Any, templates: WireTemplates, seqs: np.ndarray | list[int], exact: Any = None
) -> FramePlan | None:
    """Which of ``seqs`` (ascending, already written) go out as framed bytes made here: raw samples
    whose bytes the ring caches (an earlier reader's) and raw samples with a template; None when
    none. The caller checks afterwards that the writer has not lapped ``seqs[0]`` (the columns and
    bytes read here could then be a newer entry's: templates stay right, the output does not).

    ``exact`` (a filtered request: :func:`~hubblepy.observer.records.compile_exact_column_filter`)
    limits this to the raw samples its columns prove the request's filter accepts; the others are
    left to the ordinary path (decoded and tested)."""
    from hubblepy.observer.ring import KIND_RAW

    positions = np.asarray(seqs, dtype=np.int64)
    slots = positions & ring._mask
    eligible = ring.kind[slots] == KIND_RAW
    if exact is not None:
        eligible &= exact(ring, slots)
    raw = np.flatnonzero(eligible)
    if not len(raw):
        return None
    rs = slots[raw]
    cache = ring._cache
    hits = _pick(cache, rs.tolist())
    wires: list[bytes | None] = [None] * len(hits)
    raw_seqs = positions[raw]
    cached = np.zeros(len(hits), dtype=bool)
    if hits.count(None) != len(hits):  # none in a ring nobody read yet
        for i in [i for i, hit in enumerate(hits) if hit is not None]:
            seq, entry = hits[i]
            if seq == raw_seqs[i] and entry is not None and entry.wire is not None:
                wires[i] = entry.wire
                cached[i] = True
    todo = np.flatnonzero(~cached)  # positions in ``raw`` that need a template
    todo_slots = rs[todo]
    offsets = ring.offset[todo_slots]
    lengths = ring.length[todo_slots]
    times = ring.time[rs]
    snapshots = ring.snapshot[todo_slots]
    # the samples come in runs of one write_raw call's bytes: one object per run, taken once here,
    # so that a sample's key (gathered now) and its template (made below) read the same bytes
    batches = ring.batch[todo_slots]
    bounds = [0, *(np.flatnonzero(batches[1:] != batches[:-1]) + 1).tolist(), len(todo)] if len(todo) else [0]
    buffers = _pick(ring._objs, todo_slots[bounds[:-1]].tolist())
    keyed, keys = shape_keys(gather_runs(buffers, bounds, offsets), lengths, templates.pv_layout)
    rows = np.flatnonzero(keyed)  # positions in ``todo``
    snaps = snapshots[rows]
    ports = np.zeros((2, len(todo)), dtype=np.int64)  # source and destination ports, per ``todo``
    distinct_snaps = np.unique(snaps).tolist()
    for i, snapshot in enumerate(distinct_snaps):  # almost always one
        mask = keyed if len(distinct_snaps) == 1 else keyed & (snapshots == snapshot)
        got = port_holes(keys, mask, templates.service_ips(snapshot))
        if not i:  # the first call saw all keys unchanged
            ports = got
    decoder, encoder = templates.decoder, templates.encoder

    def make(i: int) -> tuple[bytes, int, str, tuple[int, int] | None] | None:
        row = int(rows[i])
        start = int(offsets[row])
        payload = buffers[bisect.bisect_right(bounds, row) - 1][start : start + int(lengths[row])]
        time_ns = int(times[todo[row]])
        seq = int(positions[raw[todo[row]]])
        entry = decoder([(seq, time_ns, KIND_RAW, payload, int(snapshots[row]))])[0]
        if entry is None or entry.flow is None or type(entry.flow.get("uuid")) is not str:
            return None
        entry.wire = encoder.encode(entry.response)
        ring._cache[seq & ring._mask] = (seq, entry)  # as read_many caches it (tagged with its seq)
        holes = (int(ports[0, row]), int(ports[1, row])) if keys[row, 110] else None
        return entry.wire, time_ns, entry.flow["uuid"], holes

    found: list[Template | None] = []
    index = np.empty(len(rows), dtype=np.int64)
    for snapshot in np.unique(snaps).tolist():  # almost always one
        part = np.flatnonzero(snaps == snapshot)
        made, where = templates.lookup(keys[rows[part]], snapshot, lambda i, part=part: make(int(part[i])))
        index[part] = where + len(found)
        found += made
    usable = np.array([t is not None for t in found], dtype=bool)[index]
    row_ports = ports[:, rows[usable]]
    rows, index = todo[rows[usable]], index[usable]  # now positions in ``raw``
    if not len(rows) and not cached.any():
        return None
    fast = np.zeros(len(seqs), dtype=bool)
    fast[raw[rows]] = True
    fast[raw[cached]] = True
    all_times = np.zeros(len(seqs), dtype=np.int64)
    all_times[raw] = times
    distinct, when = np.unique(times[rows], return_inverse=True)
    when = when.ravel()
    stamps = [TimeFields(t) for t in distinct.tolist()]
    shapes = [t if t is not None else _EMPTY for t in found]
    if any(t.l4_kind for t in shapes):
        l4, l4_sizes = _l4_array(shapes, index, row_ports)
    else:
        l4, l4_sizes = None, np.zeros(len(rows), dtype=np.int64)
    uuids = np.frombuffer(decoder.uuid_text(positions[raw[rows]]), dtype=np.uint8).reshape(-1, 36)
    framed = [_PREFIX.pack(0, len(w)) + w for w in wires if w is not None]
    data, ends = _assemble(
        shapes, stamps, index, when, l4, l4_sizes, uuids, rows, np.flatnonzero(cached), framed
    )
    templates.hits += len(rows)
    slow = positions[~fast].tolist()
    return FramePlan(fast, slow, all_times, data, ends)


# responses of one layout are written run by run while there are at most RUNS_MIN runs or 1/RUNS_SHARE
# as many runs as responses (else each layout's apart, then joined in scan order)
RUNS_MIN = 8
RUNS_SHARE = 8


def _assemble(
    shapes: list[Any],
    stamps: list[TimeFields],
    index: np.ndarray,
    when: np.ndarray,
    l4: np.ndarray | None,
    l4_sizes: np.ndarray,
    uuids: np.ndarray,
    rows: np.ndarray,
    cached: np.ndarray,
    framed: list[bytes],
) -> tuple[Any, np.ndarray]:
    """The framed responses of a scan's fast samples in one buffer, and where each ends (after a 0).

    ``rows`` (ascending positions among the scan's raw samples) are templated: template
    ``shapes[index[i]]``, time ``stamps[when[i]]``, l4 field ``l4[i, :l4_sizes[i]]`` (with port
    holes), UUID ``uuids[i]``; ``cached`` (ascending positions too, none in ``rows``) have their
    ``framed`` bytes. The templated responses of one *layout* (template, time and l4 size) differ
    only in the l4 field and the UUID, at fixed places: they are written as rows of a matrix that
    starts as the layout's bytes. Runs of one layout in scan order are written in place, one
    numpy assignment per part; when the layouts alternate more often than that pays, each layout's
    rows are made apart and joined in scan order."""
    n_stamps = len(stamps)
    layout_keys = (index.astype(np.int64) * n_stamps + when) << 8 | l4_sizes  # an l4 field is < 256 bytes
    distinct, layout = np.unique(layout_keys, return_inverse=True)
    layout = layout.ravel()
    fills: list[tuple[np.ndarray, int, int, int]] = []  # per layout: its bytes, l4 at, l4 size, UUID at
    for key in distinct.tolist():
        size, which = key & 0xFF, key >> 8
        shape, stamp = shapes[which // n_stamps], stamps[which % n_stamps]
        front = shape.head(stamp, size) + stamp.flow + shape.middle
        uuid_at = len(front) + size + len(shape.post)
        row = front + bytes(size) + shape.post + bytes(36) + shape.tail + stamp.response + shape.after
        fills.append((np.frombuffer(row, dtype=np.uint8), len(front), size, uuid_at))
    row_lengths = np.array([len(f[0]) for f in fills], dtype=np.int64)[layout]
    if len(cached):  # merge in scan order; a cached sample is a layout of its own (-1)
        order = np.argsort(np.concatenate([rows, cached]), kind="stable")
        kinds = np.concatenate([layout, np.full(len(cached), -1, dtype=np.int64)])[order]
        lengths = np.concatenate([row_lengths, [len(f) for f in framed]]).astype(np.int64)[order]
        row_at: np.ndarray | None = np.cumsum(kinds >= 0) - 1  # each item's position among ``rows``
        cached_at: np.ndarray | None = np.cumsum(kinds < 0) - 1  # ... or among ``cached``
    else:
        kinds, lengths = layout, row_lengths
        row_at = cached_at = None
    items = len(kinds)
    ends = np.zeros(items + 1, dtype=np.int64)
    np.cumsum(lengths, out=ends[1:])
    cuts = np.flatnonzero(kinds[1:] != kinds[:-1]) + 1
    if len(cuts) < max(RUNS_MIN, items // RUNS_SHARE):
        out = np.empty(int(ends[-1]), dtype=np.uint8)
        bounds = [0, *cuts.tolist(), items]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            which = int(kinds[lo])
            if which < 0:
                got = int(cached_at[lo]) if cached_at is not None else 0
                out[ends[lo] : ends[hi]] = np.frombuffer(
                    b"".join(framed[got : got + hi - lo]), dtype=np.uint8
                )
                continue
            first = int(row_at[lo]) if row_at is not None else lo
            _fill(
                out[ends[lo] : ends[hi]].reshape(hi - lo, -1),
                fills[which],
                l4,
                uuids,
                slice(first, first + hi - lo),
            )
        return out, ends
    pieces: list[Any] = [None] * items
    for which, fill in enumerate(fills):
        at = np.flatnonzero(kinds == which)  # items of this layout
        picks = row_at[at] if row_at is not None else at
        width = len(fill[0])
        matrix = np.empty((len(at), width), dtype=np.uint8)
        _fill(matrix, fill, l4, uuids, picks)
        block = matrix.data.cast("B")
        for j, item in enumerate(at.tolist()):
            pieces[item] = block[j * width : (j + 1) * width]
    if len(cached):
        for item, wire in zip(np.flatnonzero(kinds < 0).tolist(), framed, strict=True):
            pieces[item] = wire
    return b"".join(pieces), ends


def _fill(
    out: np.ndarray,
    fill: tuple[np.ndarray, int, int, int],
    l4: np.ndarray | None,
    uuids: np.ndarray,
    rows: Any,
) -> None:
    """Write responses of one layout as the rows of ``out``: its bytes, then each row's l4 field and
    UUID (``rows`` of ``l4`` and ``uuids``: a slice or an index array)."""
    row, l4_at, size, uuid_at = fill
    out[:] = row
    if size:
        assert l4 is not None
        out[:, l4_at : l4_at + size] = l4[rows, :size]
    out[:, uuid_at : uuid_at + 36] = uuids[rows]


def _port_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per port value: the source and destination port fields (tag and varint, little-endian in a
    u32; 0 for port 0, which is left out) and their size in bytes."""
    port = np.arange(1 << 16, dtype=np.uint32)
    size = np.where(port == 0, 0, np.where(port < 128, 2, np.where(port < 16384, 3, 4))).astype(np.int64)
    varint = (port & 0x7F) | (port >= 128) << 7  # the first byte
    varint |= np.where(size >= 3, ((port >> 7) & 0x7F | (port >= 16384) << 7) << 8, 0).astype(np.uint32)
    varint |= np.where(size == 4, (port >> 14) << 16, 0).astype(np.uint32)
    fields = [np.where(size > 0, (varint << 8) | tag, 0).astype(np.uint64) for tag in (0x08, 0x10)]
    return fields[0], fields[1], size


_SOURCE_PORT_FIELDS, _DESTINATION_PORT_FIELDS, _PORT_FIELD_SIZES = _port_tables()


def _l4_array(shapes: list[Any], index: np.ndarray, ports: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (template ``shapes[index[i]]``, ports ``ports[:, i]``): the flow's l4 field in the
    first ``sizes[i]`` bytes of row ``i`` of the returned matrix, and ``sizes`` (0 for a template
    without port holes). Made for all rows at once, as :meth:`Template.l4_field` makes one: a u32
    of the field's four first bytes, a u64 of the port fields, then the rest (the template's bytes
    after the ports) per size of the port fields."""
    n = len(index)
    kind = np.array([t.l4_kind for t in shapes], dtype=np.uint32)[index]
    rest_len = np.array([len(t.rest) for t in shapes], dtype=np.int64)
    widest = max(1, int(rest_len.max()) if len(rest_len) else 1)
    rest_table = np.zeros((len(shapes), widest), dtype=np.uint8)  # the rest, zero-padded
    for i, t in enumerate(shapes):
        if t.l4_kind and t.rest:
            rest_table[i, : len(t.rest)] = np.frombuffer(t.rest, dtype=np.uint8)
    rest_len = rest_len[index]
    sport, dport = ports[0], ports[1]
    s_width = _PORT_FIELD_SIZES[sport]
    port_width = s_width + _PORT_FIELD_SIZES[dport]
    body = port_width + rest_len  # the TCP or UDP message (< 128 bytes: one-byte lengths)
    width = -(-(4 + 8 + widest) // 8) * 8
    out = np.zeros((n, width), dtype=np.uint8)
    words = out.view("<u4")
    words[:, 0] = _L4_TAG[0] | (body + 2) << 8 | kind << 16 | body << 24
    fields = _SOURCE_PORT_FIELDS[sport] | _DESTINATION_PORT_FIELDS[dport] << (8 * s_width).astype(np.uint64)
    words[:, 1] = fields & 0xFFFFFFFF
    words[:, 2] = fields >> 32
    for size in np.flatnonzero(np.bincount(port_width, minlength=9)).tolist():
        rows = np.flatnonzero(port_width == size)
        out[rows, 4 + size : 4 + size + widest] = rest_table[index[rows]]
    return out, np.where(kind > 0, body + 4, 0)
