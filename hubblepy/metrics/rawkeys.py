"""Batch keys of raw datapath samples: which samples of a batch decode to flows the metrics count alike.

The metric families read a few fields of a flow (type, subtype, verdict, drop reason, direction,
policy match, reply flag, endpoints and their identities, IPs, L4 protocol, ports, TCP flags, ICMP
type/code). All of them follow from the sample's header (minus the hash, lengths and trace id), the
IP protocol and addresses, and the first bytes of the L4 header, together with the resolver snapshot
the sample is decoded with. :func:`sample_keys` gathers those bytes for a whole batch with numpy, so
the metrics decode one sample per distinct key instead of every sample.

A sample gets a key only when its decode is fully decided by the key: a trace (v0-v2), drop (v0-v3)
or policy verdict on an Ethernet device (no L3-device or overlay classifier flag, extension version
0 of length 0), carrying IPv4 without options or fragmentation, or IPv6 without a hop-by-hop header,
and a TCP (with valid options), UDP, ICMPv4 or ICMPv6 header long enough to decode. Everything else
(``eligible`` False) is decoded one by one, as before.
"""

from __future__ import annotations

import sys

import numpy as np

HEADER_WORDS = 14  # u32 words of the longest flow header kept in a key (trace v2: 56 bytes)
L4_SPAN = 60  # the longest TCP header (options checked over it)
KEY_WORDS = HEADER_WORDS + 1 + 8 + 2 + 1  # header, ethertype + protocol, addresses, L4 fields, padding
_MSG_DROP, _MSG_TRACE, _MSG_POLICY_VERDICT = 1, 4, 5
_CLS_NOT_ETHERNET = 0x02 | 0x04 | 0x08  # L3 device, VXLAN, Geneve
_PV_L3_DEV = 0x80
_PROTO_TCP, _PROTO_UDP, _PROTO_ICMP, _PROTO_ICMPV6 = 6, 17, 1, 58
_HEADER_COLS = np.arange(HEADER_WORDS, dtype=np.int64)
_PACKET_HALVES = np.arange(
    6, 27, dtype=np.int64
)  # u16 at packet bytes 12..54 (Ethernet type .. IPv6 addresses)
_L4_HALVES = np.array([0, 1, 6], dtype=np.int64)  # ports, TCP data offset + flags / ICMP type + code
_L4_BYTES = np.arange(L4_SPAN, dtype=np.int64)
_TRACE_LEN = np.array([32, 48, 56, 0], dtype=np.int64)
_DROP_LEN = np.array([36, 36, 40, 48, 0], dtype=np.int64)
_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 2**63, size=KEY_WORDS, dtype=np.uint64) * 2 + 1
_LITTLE = sys.byteorder == "little"


def _tcp_options_valid(l4: np.ndarray, doff: np.ndarray) -> np.ndarray:
    """gopacket's TCP option walk (kind 0 ends, kind 1 pads, others need 2 <= length <= rest) per row."""
    n = len(doff)
    valid = np.ones(n, dtype=bool)
    pos = np.full(n, 20, dtype=np.int64)
    active = pos < doff
    rows = np.arange(n)
    while active.any():
        idx = rows[active]
        p = pos[idx]
        end = doff[idx]
        kind = l4[idx, np.minimum(p, L4_SPAN - 1)]
        stop = kind == 0
        pad = kind == 1
        other = ~(stop | pad)
        length = l4[idx, np.minimum(p + 1, L4_SPAN - 1)].astype(np.int64)
        bad = other & ((end - p < 2) | (length > end - p) | (length < 2))
        valid[idx[bad]] = False
        step = np.where(pad, 1, length)
        pos[idx] = p + step
        active[idx] = ~(stop | bad) & (pos[idx] < end)
    return valid


def sample_keys(
    data: bytes, offsets: np.ndarray, lengths: np.ndarray, pv_layout: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, eligible)`` for samples ``data[offsets[i] : offsets[i] + lengths[i]]`` (4-byte aligned).

    ``keys`` is an ``(n, KEY_WORDS)`` uint32 array; two eligible samples with equal rows (and equal
    resolver snapshots) decode to flows that every metric family counts alike. ``pv_layout`` is
    the parser's forced policy-verdict header length, if any. Rows of samples without a key are 0.
    """
    n = len(offsets)
    keys = np.zeros((n, KEY_WORDS), dtype=np.uint32)
    if not n or not _LITTLE or (offsets & 3).any():
        return keys, np.zeros(n, dtype=bool)
    size = len(data)
    words = np.frombuffer(data, dtype=np.uint32, count=size >> 2)
    halves = np.frombuffer(data, dtype=np.uint16, count=size >> 1)
    off = offsets.astype(np.int64)
    length = lengths.astype(np.int64)
    head = np.take(words, (off >> 2)[:, None] + _HEADER_COLS, mode="clip")
    w0, w3, w6 = head[:, 0], head[:, 3], head[:, 6]
    mtype = w0 & 0xFF
    cap = (w3 & 0xFFFF).astype(np.int64)
    version = (w3 >> 16) & 0xFF
    ext = w3 >> 24

    trace = mtype == _MSG_TRACE
    drop = mtype == _MSG_DROP
    pv = mtype == _MSG_POLICY_VERDICT
    hlen = np.zeros(n, dtype=np.int64)
    hlen[trace] = _TRACE_LEN[np.minimum(version[trace], 3)]
    hlen[drop] = _DROP_LEN[np.minimum(version[drop], 4)]
    cls = np.where(trace, w6 >> 24, np.where(drop & (version >= 2), head[:, 9] & 0xFF, 0))
    ether = (cls & _CLS_NOT_ETHERNET) == 0
    if pv.any():
        if pv_layout is not None:
            pv_len = np.full(int(pv.sum()), pv_layout, dtype=np.int64)
        else:
            rest = length[pv] - cap[pv]
            pv_len = np.where((rest >= 32) & (rest < 40), 32, np.where(length[pv] >= 40, 40, 32))
        hlen[pv] = pv_len
        ether[pv] = (pv_len != 40) | (((w6[pv] >> 24) & _PV_L3_DEV) == 0)
    ok = (hlen > 0) & ether & (ext == 0) & (length >= hlen)

    # packet: Ethernet, then IPv4 (no options, not fragmented) or IPv6 (no hop-by-hop header)
    start = off + hlen
    end = off + np.minimum(length, hlen + cap)
    pkt = np.take(halves, (start >> 1)[:, None] + _PACKET_HALVES, mode="clip")
    fields = pkt[:, :6].astype(np.int64)  # packet bytes 12..24
    swapped = ((fields & 0xFF) << 8) | (fields >> 8)  # network order values
    ethertype, vihl, total, frag = swapped[:, 0], fields[:, 1] & 0xFF, swapped[:, 2], swapped[:, 4]
    payload = swapped[:, 3]  # IPv6 payload length
    ip_avail = end - (start + 14)
    v4 = ok & (ethertype == 0x0800) & (ip_avail >= 20)
    v4 &= ((vihl & 0x0F) == 5) & ((total == 0) | (total >= 20)) & ((frag & 0x3FFF) == 0)
    v6 = ok & (ethertype == 0x86DD) & (ip_avail >= 40)
    proto = np.where(v4, fields[:, 5] >> 8, np.where(v6, fields[:, 4] & 0xFF, 0))
    l4_start = start + np.where(v6, 54, 34)
    l4_end = np.where(
        v4,
        np.where((total != 0) & (total < ip_avail), start + 14 + total, end),
        np.where((payload > 0) & (payload < ip_avail - 40), l4_start + payload, end),
    )
    l4_avail = l4_end - l4_start
    l4 = np.take(halves, (l4_start >> 1)[:, None] + _L4_HALVES, mode="clip")
    ip_ok = v4 | v6
    tcp = ip_ok & (proto == _PROTO_TCP) & (l4_avail >= 20)
    doff = ((l4[:, 2] & 0xFF) >> 4).astype(np.int64) * 4
    tcp &= (doff >= 20) & (doff <= l4_avail)
    with_options = np.flatnonzero(tcp & (doff > 20))
    if len(with_options):
        raw = np.frombuffer(data, dtype=np.uint8)
        window = np.take(raw, l4_start[with_options, None] + _L4_BYTES, mode="clip")
        tcp[with_options] = _tcp_options_valid(window, doff[with_options])
    udp = ip_ok & (proto == _PROTO_UDP) & (l4_avail >= 8)
    icmp = ip_ok & (((proto == _PROTO_ICMP) & (l4_avail >= 8)) | ((proto == _PROTO_ICMPV6) & (l4_avail >= 4)))
    eligible = tcp | udp | icmp
    rows = np.flatnonzero(eligible)
    if not len(rows):
        return keys, eligible

    # the key: header (minus hash, lengths, trace ids), ethertype, protocol, addresses, L4 fields
    h = head[rows]
    hl = hlen[rows]
    h[:, 1:3] = 0
    h[:, 3] &= 0xFFFF0000
    h[_HEADER_COLS[None, :] * 4 >= hl[:, None]] = 0
    tv, dv = trace[rows] & (version[rows] == 2), drop[rows] & (version[rows] == 3)
    h[tv, 12:14] = 0
    h[dv, 10:12] = 0
    keys[rows, :HEADER_WORDS] = h
    keys[rows, HEADER_WORDS] = (ethertype[rows] | (proto[rows] << 16)).astype(np.uint32)
    addrs = pkt[rows, 5:21]  # packet bytes 22..54
    addrs[v4[rows][:, None] & ((np.arange(16) < 2) | (np.arange(16) >= 6))[None, :]] = 0  # IPv4: 26..34
    keys[rows, HEADER_WORDS + 1 : HEADER_WORDS + 9] = np.ascontiguousarray(addrs).view(np.uint32)
    lr = l4[rows].astype(np.uint32)
    t, u, c = tcp[rows], udp[rows], icmp[rows]
    keys[rows, HEADER_WORDS + 9] = np.where(t | u, lr[:, 0] | (lr[:, 1] << 16), np.where(c, lr[:, 0], 0))
    keys[rows, HEADER_WORDS + 10] = np.where(t, lr[:, 2] & 0xFF01, 0)  # NS bit, flags byte
    return keys, eligible


def group_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, counts)``: index of the first row of each distinct row of ``keys`` (from
    :func:`sample_keys`) and how many rows equal it (exact: rows are grouped by a 64-bit hash, then
    checked against their group's first row; a collision falls back to grouping the rows)."""
    wide = np.ascontiguousarray(keys).view(np.uint64)  # KEY_WORDS is even: pairs of words
    h = (wide * _MULTIPLIERS[: wide.shape[1]]).sum(axis=1, dtype=np.uint64)
    _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    if not (wide == wide[first[inverse]]).all():
        _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    return first, counts
