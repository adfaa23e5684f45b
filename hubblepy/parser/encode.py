"""Build datapath event samples and packets byte by byte (the inverse of the decoder).

Used by the tests, the parser benchmark (benchmarks/bench_parser.py) and anyone who needs synthetic ``cilium_events`` samples.
Header layouts follow Cilium's pkg/monitor structs (host byte order); packets are plain wire bytes
with zero checksums (nothing here validates checksums).
"""

from __future__ import annotations

import ipaddress
import struct

from hubblepy.parser import layouts

_ETH_SRC = bytes.fromhex("0a5800000001")
_ETH_DST = bytes.fromhex("0a5800000002")


# --- packets ---------------------------------------------------------------------------------------
def ethernet(payload: bytes, ethertype: int = 0x0800, src: bytes = _ETH_SRC, dst: bytes = _ETH_DST) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str, dst: str, proto: int, payload: bytes, *, frag: int = 0x4000, total_len: int | None = None
) -> bytes:
    """IPv4 header (no options) + payload. ``frag`` is the flags/fragment-offset word (DF by default)."""
    length = 20 + len(payload) if total_len is None else total_len
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        length,
        0x1234,
        frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(payload),
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + payload


TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = (1 << i for i in range(8))


def tcp(sport: int, dport: int, flags: int, *, ns: bool = False, payload: bytes = b"") -> bytes:
    return (
        struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000, (5 << 4) | int(ns), flags, 65535, 0, 0) + payload
    )


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp4(icmp_type: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1)


def icmp6(icmp_type: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1)


def sctp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHII", sport, dport, 0, 0)


def ip_bytes(ip: str | None, size: int) -> bytes:
    """Raw network-order address padded to ``size`` bytes (zeros for None)."""
    if not ip:
        return b"\x00" * size
    return ipaddress.ip_address(ip).packed.ljust(size, b"\x00")


# --- events ----------------------------------------------------------------------------------------
def _common(msg_type: int, subtype: int, source: int, cap_len: int, version: int, ext_version: int) -> bytes:
    return layouts.COMMON.pack(msg_type, subtype, source, 0xDEADBEEF, cap_len, cap_len, version, ext_version)


def trace_event(
    packet: bytes = b"",
    *,
    version: int = 2,
    obs_point: int = 5,
    source: int = 0,
    src_label: int = 0,
    dst_label: int = 0,
    dst_id: int = 0,
    reason: int = 0,
    flags: int = 0,
    ifindex: int = 0,
    orig_ip: str | None = None,
    trace_id: int = 0,
    ext_version: int = 0,
    pad: int = 0,
) -> bytes:
    """TraceNotify v0/v1/v2 + packet (+ ``pad`` zero bytes, like perf's 8-byte rounding)."""
    head = _common(4, obs_point, source, len(packet), version, ext_version)
    head += struct.pack("=IIHBBI", src_label, dst_label, dst_id, reason, flags, ifindex)
    if version >= 1:
        head += ip_bytes(orig_ip, 16)
    if version >= 2:
        head += struct.pack("=Q", trace_id)
    return head + packet + b"\x00" * pad


def drop_event(
    packet: bytes = b"",
    *,
    version: int = 3,
    reason: int = 133,
    source: int = 0,
    src_label: int = 0,
    dst_label: int = 0,
    dst_id: int = 0,
    line: int = 0,
    file: int = 0,
    ext_error: int = 0,
    ifindex: int = 0,
    flags: int = 0,
    trace_id: int = 0,
    ext_version: int = 0,
    pad: int = 0,
) -> bytes:
    """DropNotify v0/v1 (36-byte header), v2 (40) or v3 (48) + packet."""
    head = _common(1, reason, source, len(packet), version, ext_version)
    head += struct.pack("=IIIHBbI", src_label, dst_label, dst_id, line, file, ext_error, ifindex)
    if version >= 2:
        head += struct.pack("=B3x", flags)
    if version >= 3:
        head += struct.pack("=Q", trace_id)
    return head + packet + b"\x00" * pad


def policy_verdict_flags(
    direction: int, *, ipv6: bool = False, match_type: int = 0, audited: bool = False, l3: bool = False
) -> int:
    return (direction & 3) | (int(ipv6) << 2) | ((match_type & 7) << 3) | (int(audited) << 6) | (int(l3) << 7)


def policy_verdict_event(
    packet: bytes = b"",
    *,
    layout: int = 40,
    source: int = 0,
    remote_label: int = 0,
    verdict: int = 0,
    dst_port: int = 0,
    proto: int = 6,
    flags: int = 1,
    auth_type: int = 0,
    cookie: int = 0,
    ext_version: int = 0,
    pad: int = 0,
) -> bytes:
    """PolicyVerdictNotify in the 40-byte (cookie) or old 32-byte layout + packet."""
    head = _common(5, 0, source, len(packet), 1, ext_version)
    head += struct.pack("=IiHBBB3x", remote_label, verdict, dst_port, proto, flags, auth_type)
    if layout == 40:
        head += struct.pack("=I4x", cookie)
    return head + packet + b"\x00" * pad


def capture_event(
    packet: bytes = b"", *, point: int = 4, source: int = 0, arg1: int = 0, arg2: int = 0, pad: int = 0
) -> bytes:
    head = _common(3, point, source, len(packet), 1, 0) + struct.pack("=II", arg1, arg2)
    return head + packet + b"\x00" * pad


def debug_event(
    subtype: int, *, source: int = 0, hash_: int = 0, arg1: int = 0, arg2: int = 0, arg3: int = 0
) -> bytes:
    return layouts.DEBUG_MSG.pack(2, subtype, source, hash_, arg1, arg2, arg3)


def trace_sock_event(
    *,
    point: int = 1,
    l4_proto: int = 1,
    dst_ip: str = "10.96.0.1",
    dst_port: int = 443,
    cookie: int = 0,
    cgroup_id: int = 0,
) -> bytes:
    ipv6 = ":" in dst_ip
    return layouts.TRACE_SOCK.pack(
        7, point, l4_proto, int(ipv6), dst_port, cookie, cgroup_id, ip_bytes(dst_ip, 16)
    )
