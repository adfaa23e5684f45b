"""Decode the captured packet bytes of a datapath event into the pieces a Flow needs.

The decoder follows the layer set Hubble's L3/L4 parser uses (Cilium's pkg/hubble/parser/threefour):
Ethernet, IPv4, IPv6 (hop-by-hop header skipped, other extension headers stop decoding), TCP, UDP,
SCTP, ICMPv4, ICMPv6, VRRPv2 and IGMP, plus the VXLAN/Geneve overlay when the classifier flags ask
for it. It mirrors gopacket's decoding-layer parser:

* a layer that is not in the set (ARP, VLAN tags, IP fragments, unknown IP protocols, ...) stops
  decoding silently; the last decoded layer names the Summary ("Ethernet", "IPv4", ...);
* a layer whose header is too short or inconsistent is an error: the whole event is rejected
  (``None`` is returned) and the caller counts it as a parse error, as Hubble does (its
  DecodeLayers error aborts the flow).

The result is a plain tuple (``PacketInfo``) with shared, cached sub-dicts; callers must treat the
dicts as read-only.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

FIRST_ETHERNET = 0
FIRST_IPV4 = 1
FIRST_IPV6 = 2

OVERLAY_NONE = 0
OVERLAY_VXLAN = 1
OVERLAY_GENEVE = 2

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_TEB = 0x6558  # transparent Ethernet bridging (Geneve inner Ethernet)

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_IPV6 = 41
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_VRRP = 112
IPPROTO_SCTP = 132

_IPV4_HDR = struct.Struct("!BxHxxHxB")  # version/ihl, total length, flags/fragment, protocol
_IPV6_HDR = struct.Struct("!4xHB")  # payload length, next header
_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
_TCP_FLAGS = struct.Struct("!BB")  # data offset/NS byte, flags byte
_VNI = struct.Struct("!I")

_CACHE_LIMIT = 1 << 16


class PacketInfo(NamedTuple):
    """Decoded packet pieces. Missing parts are None."""

    ethernet: dict | None
    ip_source: str | None
    ip_destination: str | None
    ip_version: str | None  # "IPv4" / "IPv6"
    l4: dict | None
    source_port: int
    destination_port: int
    summary: str | None
    tunnel: dict | None
    udp_payload: tuple[int, int] | None = None  # (start, end) in the sample, UDP only (overlay use)


EMPTY_PACKET = PacketInfo(None, None, None, None, None, 0, 0, None, None)


# --- TCP flags: (TCPFlags dict, Summary) for every NS bit + flags byte ----------------------------
# TCPFlags declaration order in flow.proto and the bit each flag has in the flags byte.
_TCP_FLAG_DECL: tuple[tuple[str, int], ...] = (
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
)
_TCP_FLAG_DECL += (("URG", 0x20), ("ECE", 0x40), ("CWR", 0x80), ("NS", 0x100))
# Summary order used by Hubble: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR, NS.
_TCP_FLAG_SUMMARY_ORDER = (
    ("SYN", 0x02),
    ("ACK", 0x10),
    ("RST", 0x04),
    ("FIN", 0x01),
    ("PSH", 0x08),
    ("URG", 0x20),
    ("ECE", 0x40),
    ("CWR", 0x80),
    ("NS", 0x100),
)


def _build_tcp_flag_table() -> list[tuple[dict, str]]:
    table = []
    for bits in range(512):
        flags = {name: True for name, bit in _TCP_FLAG_DECL if bits & bit}
        summary = "TCP Flags: " + ", ".join(name for name, bit in _TCP_FLAG_SUMMARY_ORDER if bits & bit)
        table.append((flags, summary))
    return table


TCP_FLAG_TABLE = _build_tcp_flag_table()


def tcp_flags_summary(bits: int) -> str:
    """Summary text for a 9-bit TCP flag set (bit 8 = NS)."""
    return TCP_FLAG_TABLE[bits & 0x1FF][1]


# --- ICMP type/code names, as gopacket's TypeCode.String() prints them ---------------------------
_ICMPV4_TYPES: dict[int, tuple[str, dict[int, str] | None]] = {
    0: ("EchoReply", None),
    3: (
        "DestinationUnreachable",
        dict(
            enumerate(
                [
                    "Net",
                    "Host",
                    "Protocol",
                    "Port",
                    "FragmentationNeeded",
                    "SourceRoutingFailed",
                    "NetUnknown",
                    "HostUnknown",
                    "SourceIsolated",
                    "NetAdminProhibited",
                    "HostAdminProhibited",
                    "NetTOS",
                    "HostTOS",
                    "CommAdminProhibited",
                    "HostPrecedence",
                    "PrecedenceCutoff",
                ]
            )
        ),
    ),
    4: ("SourceQuench", None),
    5: ("Redirect", {0: "Net", 1: "Host", 2: "TOS+Net", 3: "TOS+Host"}),
    8: ("EchoRequest", None),
    9: ("RouterAdvertisement", None),
    10: ("RouterSolicitation", None),
    11: ("TimeExceeded", {0: "TTLExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    12: ("ParameterProblem", {0: "PointerIndicatesError", 1: "MissingOption", 2: "BadLength"}),
    13: ("TimestampRequest", None),
    14: ("TimestampReply", None),
    15: ("InfoRequest", None),
    16: ("InfoReply", None),
    17: ("AddressMaskRequest", None),
    18: ("AddressMaskReply", None),
}
_ICMPV6_TYPES: dict[int, tuple[str, dict[int, str] | None]] = {
    1: (
        "DestinationUnreachable",
        dict(
            enumerate(
                [
                    "NoRouteToDst",
                    "AdminProhibited",
                    "BeyondScopeOfSrc",
                    "AddressUnreachable",
                    "PortUnreachable",
                    "SrcAddressFailedPolicy",
                    "RejectRouteToDst",
                ]
            )
        ),
    ),
    2: ("PacketTooBig", None),
    3: ("TimeExceeded", {0: "HopLimitExceeded", 1: "FragmentReassemblyTimeExceeded"}),
    4: (
        "ParameterProblem",
        {0: "ErroneousHeaderField", 1: "UnrecognizedNextHeader", 2: "UnrecognizedIPv6Option"},
    ),
    128: ("EchoRequest", None),
    129: ("EchoReply", None),
    133: ("RouterSolicitation", None),
    134: ("RouterAdvertisement", None),
    135: ("NeighborSolicitation", None),
    136: ("NeighborAdvertisement", None),
    137: ("Redirect", None),
}


def icmp_type_code_string(icmp_type: int, code: int, v6: bool) -> str:
    """gopacket-style ``TypeCode.String()`` for ICMPv4 or ICMPv6."""
    info = (_ICMPV6_TYPES if v6 else _ICMPV4_TYPES).get(icmp_type)
    if info is None:
        return f"{icmp_type}({code})"
    name, codes = info
    if codes is None:
        return name if code == 0 else f"{name}(Code: {code})"
    code_name = codes.get(code)
    if code_name is None:
        return f"{name}(Code: {code})"
    return f"{name}({code_name})"


_icmp_cache: dict[int, tuple[dict, str]] = {}


def _icmp_l4(icmp_type: int, code: int, v6: bool) -> tuple[dict, str]:
    key = (icmp_type << 8 | code) | (0x10000 if v6 else 0)
    hit = _icmp_cache.get(key)
    if hit is None:
        body = {}
        if icmp_type:
            body["type"] = icmp_type
        if code:
            body["code"] = code
        if v6:
            hit = ({"ICMPv6": body}, "ICMPv6 " + icmp_type_code_string(icmp_type, code, True))
        else:
            hit = ({"ICMPv4": body}, "ICMPv4 " + icmp_type_code_string(icmp_type, code, False))
        _icmp_cache[key] = hit
    return hit


_VRRP_TYPE_NAMES = {1: "VRRPv2 Advertisement"}
_IGMP_TYPE_NAMES = {
    0x11: "IGMP Membership Query",
    0x12: "IGMPv1 Membership Report",
    0x16: "IGMPv2 Membership Report",
    0x22: "IGMPv3 Membership Report",
    0x17: "Leave Group",
}


# --- address string caches ------------------------------------------------------------------------
_v4_pair_cache: dict[bytes, tuple[str, str]] = {}
_v6_pair_cache: dict[bytes, tuple[str, str]] = {}
_eth_cache: dict[bytes, dict] = {}
_ZERO12 = b"\x00" * 12


def ipv6_to_str(addr: bytes) -> str:
    """Text form of a 16-byte address as Go's netip.Addr.String prints it.

    That is RFC 5952 text like inet_ntop, except that only IPv4-mapped addresses
    (``::ffff:a.b.c.d``) use the dotted tail: glibc also prints ``::a.b.c.d`` for the deprecated
    IPv4-compatible form, which Go writes in hex (``::102:304``).
    """
    if addr[:12] == _ZERO12 and addr[12:14] != b"\x00\x00":
        return f"::{addr[12] << 8 | addr[13]:x}:{addr[14] << 8 | addr[15]:x}"
    return socket.inet_ntop(socket.AF_INET6, addr)


def _v4_pair(key: bytes) -> tuple[str, str]:
    hit = _v4_pair_cache.get(key)
    if hit is None:
        if len(_v4_pair_cache) >= _CACHE_LIMIT:
            _v4_pair_cache.clear()
        hit = (socket.inet_ntoa(key[:4]), socket.inet_ntoa(key[4:]))
        _v4_pair_cache[key] = hit
    return hit


def _v6_pair(key: bytes) -> tuple[str, str]:
    hit = _v6_pair_cache.get(key)
    if hit is None:
        if len(_v6_pair_cache) >= _CACHE_LIMIT:
            _v6_pair_cache.clear()
        hit = (ipv6_to_str(key[:16]), ipv6_to_str(key[16:]))
        _v6_pair_cache[key] = hit
    return hit


def _ethernet(key: bytes) -> dict:
    hit = _eth_cache.get(key)
    if hit is None:
        if len(_eth_cache) >= _CACHE_LIMIT:
            _eth_cache.clear()
        hit = {"source": key[6:12].hex(":"), "destination": key[:6].hex(":")}
        _eth_cache[key] = hit
    return hit


def _options_valid(buf: bytes, off: int, end: int, min_len: int) -> bool:
    """Check IPv4/TCP options in ``buf[off:end]`` the way gopacket does while decoding them.

    Kind 0 ends the list, kind 1 is one byte of padding, any other kind needs a length byte that
    fits in what is left and is at least ``min_len`` (3 for IPv4 options, 2 for TCP options).
    """
    while off < end:
        kind = buf[off]
        if kind == 0:
            return True
        if kind == 1:
            off += 1
            continue
        if end - off < 2:
            return False
        length = buf[off + 1]
        if length > end - off or length < min_len:
            return False
        off += length
    return True


def _ports_l4(name: str, sport: int, dport: int) -> dict:
    if sport and dport:
        return {name: {"source_port": sport, "destination_port": dport}}
    body = {}
    if sport:
        body["source_port"] = sport
    if dport:
        body["destination_port"] = dport
    return {name: body}


def decode_packet(
    buf: bytes, off: int, end: int, first: int, overlay: int = OVERLAY_NONE
) -> PacketInfo | None:
    """Decode ``buf[off:end]``; ``first`` picks the first layer (FIRST_*).

    Returns EMPTY_PACKET for an empty payload and None when a supported layer is malformed.
    """
    if end <= off:
        return EMPTY_PACKET
    result = decode_layers(buf, off, end, first)
    if result is None or overlay == OVERLAY_NONE:
        return result
    return decode_overlay(buf, result, overlay)


def decode_layers(buf: bytes, off: int, end: int, first: int) -> PacketInfo | None:
    """Decode a non-empty ``buf[off:end]`` starting with layer ``first``; None when malformed."""
    ethernet = None
    if first == FIRST_ETHERNET:
        if end - off < 14:
            return None
        ethernet = _ethernet(buf[off : off + 12])
        ethertype = _U16.unpack_from(buf, off + 12)[0]
        off += 14
        if ethertype == ETH_P_IPV4:
            first = FIRST_IPV4
        elif ethertype == ETH_P_IPV6:
            first = FIRST_IPV6
        else:
            return PacketInfo(ethernet, None, None, None, None, 0, 0, "Ethernet", None)
        if off >= end:
            # gopacket treats an empty next-layer payload as "nothing more to decode".
            return PacketInfo(ethernet, None, None, None, None, 0, 0, "Ethernet", None)

    if first == FIRST_IPV4:
        avail = end - off
        if avail < 20:
            return None
        vihl, total_len, frag, proto = _IPV4_HDR.unpack_from(buf, off)
        hlen = (vihl & 0x0F) * 4
        if total_len == 0:  # segmentation offload leaves the length empty
            total_len = avail
        if total_len < 20 or hlen < 20 or hlen > total_len or hlen > avail:
            return None
        if hlen > 20 and not _options_valid(buf, off + 20, off + hlen, 3):
            return None
        key = buf[off + 12 : off + 20]
        pair = _v4_pair_cache.get(key)
        src, dst = pair if pair is not None else _v4_pair(key)
        version = "IPv4"
        l4_end = off + total_len if total_len < avail else end
        off += hlen
        if frag & 0x3FFF:  # more-fragments flag or a fragment offset: gopacket stops here
            return PacketInfo(ethernet, src, dst, version, None, 0, 0, "IPv4", None)
        summary = "IPv4"
    else:
        avail = end - off
        if avail < 40:
            return None
        payload_len, proto = _IPV6_HDR.unpack_from(buf, off)
        src, dst = _v6_pair(buf[off + 8 : off + 40])
        version = "IPv6"
        l4_end = off + 40 + payload_len if 0 < payload_len < avail - 40 else end
        off += 40
        if proto == IPPROTO_HOPOPTS:  # gopacket's IPv6 layer consumes a hop-by-hop header itself
            if l4_end - off < 8:
                return None
            proto = buf[off]
            off += (buf[off + 1] + 1) * 8
            if off > l4_end:
                return None
        summary = "IPv6"

    # Like gopacket, the L4 decoder follows the protocol number whatever the IP version.
    avail = l4_end - off
    if avail <= 0:
        return PacketInfo(ethernet, src, dst, version, None, 0, 0, summary, None)
    if proto == IPPROTO_TCP:
        if avail < 20:
            return None
        doff_ns, flag_byte = _TCP_FLAGS.unpack_from(buf, off + 12)
        doff = (doff_ns >> 4) * 4
        if doff < 20 or doff > avail:
            return None
        if doff > 20 and not _options_valid(buf, off + 20, off + doff, 2):
            return None
        sport, dport = _PORTS.unpack_from(buf, off)
        flags, summary = TCP_FLAG_TABLE[((doff_ns & 1) << 8) | flag_byte]
        if sport and dport:
            l4 = {"TCP": {"source_port": sport, "destination_port": dport, "flags": flags}}
        else:
            body = {}
            if sport:
                body["source_port"] = sport
            if dport:
                body["destination_port"] = dport
            body["flags"] = flags
            l4 = {"TCP": body}
        return PacketInfo(ethernet, src, dst, version, l4, sport, dport, summary, None)
    if proto == IPPROTO_UDP:
        if avail < 8:
            return None
        sport, dport = _PORTS.unpack_from(buf, off)
        l4 = _ports_l4("UDP", sport, dport)
        return PacketInfo(ethernet, src, dst, version, l4, sport, dport, "UDP", None, (off + 8, l4_end))
    if proto == IPPROTO_ICMP:
        if avail < 8:
            return None
        l4, summary = _icmp_l4(buf[off], buf[off + 1], False)
        return PacketInfo(ethernet, src, dst, version, l4, 0, 0, summary, None)
    if proto == IPPROTO_ICMPV6:
        if avail < 4:
            return None
        l4, summary = _icmp_l4(buf[off], buf[off + 1], True)
        return PacketInfo(ethernet, src, dst, version, l4, 0, 0, summary, None)
    if proto == IPPROTO_SCTP:
        if avail < 12:
            return None
        sport, dport = _PORTS.unpack_from(buf, off)
        return PacketInfo(
            ethernet, src, dst, version, _ports_l4("SCTP", sport, dport), sport, dport, "SCTP", None
        )
    if proto == IPPROTO_VRRP:
        # gopacket accepts only version 2, type 1 (advertisement) and at least one address.
        if avail < 8 or buf[off] != 0x21 or buf[off + 3] == 0 or avail < 8 + 4 * buf[off + 3]:
            return None
        vtype, vrid, prio = 1, buf[off + 1], buf[off + 2]
        body = {k: v for k, v in (("type", vtype), ("vrid", vrid), ("priority", prio)) if v}
        summary = "VRRP " + _VRRP_TYPE_NAMES.get(vtype, "")
        return PacketInfo(ethernet, src, dst, version, {"VRRP": body}, 0, 0, summary, None)
    if proto == IPPROTO_IGMP:
        if avail < 8:
            return None
        itype = buf[off]
        body = {}
        if itype:
            body["type"] = itype
        body["group_address"] = socket.inet_ntoa(buf[off + 4 : off + 8])  # always printed by Hubble
        summary = "IGMP " + _IGMP_TYPE_NAMES.get(itype, "")
        return PacketInfo(ethernet, src, dst, version, {"IGMP": body}, 0, 0, summary, None)
    if proto in (IPPROTO_IPIP, IPPROTO_IPV6):
        # IP-in-IP: gopacket decodes the inner header with the same layer set; the inner
        # addresses, L4 and Summary win because the last decoded layer overwrites them.
        inner = decode_layers(buf, off, l4_end, FIRST_IPV4 if proto == IPPROTO_IPIP else FIRST_IPV6)
        return None if inner is None else inner._replace(ethernet=ethernet)
    return PacketInfo(ethernet, src, dst, version, None, 0, 0, summary, None)


def decode_overlay(buf: bytes, outer: PacketInfo, overlay: int) -> PacketInfo | None:
    """Replace the outer packet by the inner one of a VXLAN/Geneve packet and fill ``tunnel``.

    Like Hubble: without an outer UDP payload the packet is reported as is; a malformed overlay
    or inner packet rejects the event; an overlay header with nothing after it gives a flow with
    only ``tunnel`` set.
    """
    if outer.udp_payload is None:
        return outer
    start, end = outer.udp_payload
    if end - start < 8:
        return None
    vni = _VNI.unpack_from(buf, start + 4)[0] >> 8
    inner_first: int | None
    if overlay == OVERLAY_VXLAN:
        inner_first, inner_off, protocol = FIRST_ETHERNET, start + 8, "VXLAN"
    else:
        opt_len = (buf[start] & 0x3F) * 4
        ptype = _U16.unpack_from(buf, start + 2)[0]
        inner_first = {ETH_P_TEB: FIRST_ETHERNET, ETH_P_IPV4: FIRST_IPV4, ETH_P_IPV6: FIRST_IPV6}.get(ptype)
        inner_off, protocol = start + 8 + opt_len, "GENEVE"
        if inner_off > end:
            return None
    inner: PacketInfo | None
    if inner_first is None or inner_off >= end:
        inner = EMPTY_PACKET
    else:
        inner = decode_layers(buf, inner_off, end, inner_first)
        if inner is None:
            return None
    tunnel: dict = {"protocol": protocol}
    ip: dict = {}
    if outer.ip_source:
        ip["source"] = outer.ip_source
    if outer.ip_destination:
        ip["destination"] = outer.ip_destination
    ip["ipVersion"] = outer.ip_version
    tunnel["IP"] = ip
    tunnel["l4"] = outer.l4
    if vni:
        tunnel["vni"] = vni
    return inner._replace(tunnel=tunnel, udp_payload=None)
