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

HEADER_SPAN = 56  # the longest flow header kept in a key (trace v2)
L4_SPAN = 60  # the longest TCP header (options checked over it)
KEY_BYTES = HEADER_SPAN + 2 + 1 + 32 + 6
_MSG_DROP, _MSG_TRACE, _MSG_POLICY_VERDICT = 1, 4, 5
_CLS_NOT_ETHERNET = 0x02 | 0x04 | 0x08  # L3 device, VXLAN, Geneve
_PV_L3_DEV = 0x80
_PROTO_TCP, _PROTO_UDP, _PROTO_ICMP, _PROTO_ICMPV6 = 6, 17, 1, 58
_HEADER_COLS = np.arange(HEADER_SPAN, dtype=np.int64)
_PACKET_COLS = np.arange(54, dtype=np.int64)
_L4_COLS = np.arange(L4_SPAN, dtype=np.int64)
# header bytes that never reach a counted field: hash (4..8), len_orig (8..12), len_cap (12..14)
_HEADER_KEEP = np.ones(HEADER_SPAN, dtype=bool)
_HEADER_KEEP[4:14] = False
_LITTLE = sys.byteorder == "little"


def _gather(buf: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take(buf, index, mode="clip")


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
    """``(keys, eligible)`` for samples ``data[offsets[i] : offsets[i] + lengths[i]]``.

    ``keys`` is an ``(n, KEY_BYTES)`` uint8 array; two eligible samples with equal rows (and equal
    resolver snapshots) decode to flows that every metric family counts alike. ``pv_layout`` is
    the parser's forced policy-verdict header length, if any.
    """
    n = len(offsets)
    keys = np.zeros((n, KEY_BYTES), dtype=np.uint8)
    eligible = np.zeros(n, dtype=bool)
    if not n or not _LITTLE:
        return keys, eligible
    buf = np.frombuffer(data, dtype=np.uint8)
    off = offsets.astype(np.int64)
    size = lengths.astype(np.int64)
    head = _gather(buf, off[:, None] + _HEADER_COLS)
    mtype, version, ext = head[:, 0], head[:, 14], head[:, 15]
    cap = head[:, 12].astype(np.int64) | (head[:, 13].astype(np.int64) << 8)

    hlen = np.zeros(n, dtype=np.int64)
    ether = np.zeros(n, dtype=bool)
    trace = mtype == _MSG_TRACE
    hlen[trace] = np.array([32, 48, 56, 0], dtype=np.int64)[np.minimum(version[trace], 3)]
    ether[trace] = (head[trace, 27] & _CLS_NOT_ETHERNET) == 0
    drop = mtype == _MSG_DROP
    hlen[drop] = np.array([36, 36, 40, 48, 0], dtype=np.int64)[np.minimum(version[drop], 4)]
    drop_flags = np.where(version[drop] >= 2, head[drop, 36], 0)
    ether[drop] = (drop_flags & _CLS_NOT_ETHERNET) == 0
    pv = mtype == _MSG_POLICY_VERDICT
    if pv.any():
        if pv_layout is not None:
            pv_len = np.full(int(pv.sum()), pv_layout, dtype=np.int64)
        else:
            rest = size[pv] - cap[pv]
            pv_len = np.where((rest >= 32) & (rest < 40), 32, np.where(size[pv] >= 40, 40, 32))
        hlen[pv] = pv_len
        ether[pv] = (pv_len != 40) | ((head[pv, 27] & _PV_L3_DEV) == 0)
    ok = (hlen > 0) & ether & (ext == 0) & (size >= hlen)

    # packet: Ethernet, then IPv4 (no options, not fragmented) or IPv6 (no hop-by-hop header)
    start = off + hlen
    end = off + np.minimum(size, hlen + cap)
    pkt = _gather(buf, start[:, None] + _PACKET_COLS)
    ethertype = (pkt[:, 12].astype(np.int64) << 8) | pkt[:, 13]
    ip_avail = end - (start + 14)
    v4 = ok & (ethertype == 0x0800) & (ip_avail >= 20)
    v6 = ok & (ethertype == 0x86DD) & (ip_avail >= 40)
    total = (pkt[:, 16].astype(np.int64) << 8) | pkt[:, 17]
    frag = (pkt[:, 20].astype(np.int64) << 8) | pkt[:, 21]
    v4 &= ((pkt[:, 14] & 0x0F) == 5) & ((total == 0) | (total >= 20)) & ((frag & 0x3FFF) == 0)
    payload = (pkt[:, 18].astype(np.int64) << 8) | pkt[:, 19]
    proto = np.where(v4, pkt[:, 23], np.where(v6, pkt[:, 20], 0))
    l4_start = start + 14 + np.where(v6, 40, 20)
    l4_end = np.where(
        v4,
        np.where((total != 0) & (total < ip_avail), start + 14 + total, end),
        np.where((payload > 0) & (payload < ip_avail - 40), l4_start + payload, end),
    )
    l4_avail = l4_end - l4_start
    l4 = _gather(buf, l4_start[:, None] + _L4_COLS)
    ip_ok = v4 | v6
    tcp = ip_ok & (proto == _PROTO_TCP) & (l4_avail >= 20)
    doff = (l4[:, 12] >> 4).astype(np.int64) * 4
    tcp &= (doff >= 20) & (doff <= l4_avail)
    with_options = np.flatnonzero(tcp & (doff > 20))
    if len(with_options):
        tcp[with_options] = _tcp_options_valid(l4[with_options], doff[with_options])
    udp = ip_ok & (proto == _PROTO_UDP) & (l4_avail >= 8)
    icmp = ip_ok & (((proto == _PROTO_ICMP) & (l4_avail >= 8)) | ((proto == _PROTO_ICMPV6) & (l4_avail >= 4)))
    eligible = tcp | udp | icmp

    # the key: header (minus hash, lengths, trace ids), ethertype, protocol, addresses, L4 fields
    col = np.arange(HEADER_SPAN)
    keep = (col[None, :] < hlen[:, None]) & _HEADER_KEEP[None, :]
    keep[(trace & (version == 2)), 48:56] = False
    keep[(drop & (version == 3)), 40:48] = False
    keys[:, :HEADER_SPAN] = np.where(keep, head, 0)
    at = HEADER_SPAN
    keys[:, at : at + 2] = pkt[:, 12:14]
    keys[:, at + 2] = proto
    at += 3
    keys[v4, at : at + 8] = pkt[v4, 26:34]
    keys[v6, at : at + 32] = pkt[v6, 22:54]
    at += 32
    ports = tcp | udp
    keys[ports, at : at + 4] = l4[ports, 0:4]
    keys[tcp, at + 4] = l4[tcp, 12] & 1
    keys[tcp, at + 5] = l4[tcp, 13]
    keys[icmp, at : at + 2] = l4[icmp, 0:2]
    keys[~eligible] = 0
    return keys, eligible
