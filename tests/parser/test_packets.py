"""Packet decoding: layers, L4 fields and the Summary wording of Hubble's L3/L4 parser."""

from __future__ import annotations

import struct

import pytest

from hubblepy.parser import encode as enc
from hubblepy.parser.packet import (
    EMPTY_PACKET,
    FIRST_ETHERNET,
    FIRST_IPV4,
    FIRST_IPV6,
    OVERLAY_GENEVE,
    OVERLAY_VXLAN,
    decode_packet,
    icmp_type_code_string,
    ipv6_to_str,
    tcp_flags_summary,
)


def decode(packet: bytes, first: int = FIRST_ETHERNET, overlay: int = 0):
    return decode_packet(packet, 0, len(packet), first, overlay)


@pytest.mark.parametrize(
    ("flags", "ns", "summary", "flag_dict"),
    [
        (enc.TCP_SYN, False, "TCP Flags: SYN", {"SYN": True}),
        (enc.TCP_SYN | enc.TCP_ACK, False, "TCP Flags: SYN, ACK", {"SYN": True, "ACK": True}),
        (enc.TCP_FIN | enc.TCP_ACK, False, "TCP Flags: ACK, FIN", {"FIN": True, "ACK": True}),
        (enc.TCP_RST | enc.TCP_ACK, False, "TCP Flags: ACK, RST", {"RST": True, "ACK": True}),
        (enc.TCP_PSH | enc.TCP_ACK, False, "TCP Flags: ACK, PSH", {"PSH": True, "ACK": True}),
        (
            0xFF,
            True,
            "TCP Flags: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR, NS",
            {k: True for k in ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")},
        ),
        (0, False, "TCP Flags: ", {}),
    ],
)
def test_tcp_flags_and_summary(flags: int, ns: bool, summary: str, flag_dict: dict) -> None:
    info = decode(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(1234, 80, flags, ns=ns))))
    assert info is not None
    assert info.summary == summary
    assert info.l4 == {"TCP": {"source_port": 1234, "destination_port": 80, "flags": flag_dict}}
    assert list(info.l4["TCP"]["flags"]) == list(flag_dict)  # TCPFlags declaration order
    assert (info.source_port, info.destination_port) == (1234, 80)


def test_tcp_flags_summary_helper() -> None:
    assert tcp_flags_summary(0x12) == "TCP Flags: SYN, ACK"
    assert tcp_flags_summary(0x100) == "TCP Flags: NS"


@pytest.mark.parametrize(
    ("icmp_type", "code", "v6", "text"),
    [
        (8, 0, False, "EchoRequest"),
        (0, 0, False, "EchoReply"),
        (3, 3, False, "DestinationUnreachable(Port)"),
        (3, 99, False, "DestinationUnreachable(Code: 99)"),
        (5, 2, False, "Redirect(TOS+Net)"),
        (11, 0, False, "TimeExceeded(TTLExceeded)"),
        (8, 1, False, "EchoRequest(Code: 1)"),
        (42, 7, False, "42(7)"),
        (128, 0, True, "EchoRequest"),
        (135, 0, True, "NeighborSolicitation"),
        (1, 4, True, "DestinationUnreachable(PortUnreachable)"),
        (4, 2, True, "ParameterProblem(UnrecognizedIPv6Option)"),
        (143, 0, True, "143(0)"),
    ],
)
def test_icmp_type_code_strings(icmp_type: int, code: int, v6: bool, text: str) -> None:
    assert icmp_type_code_string(icmp_type, code, v6) == text


def test_icmp_layers() -> None:
    v4 = decode(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 1, enc.icmp4(3, 3))))
    assert v4.l4 == {"ICMPv4": {"type": 3, "code": 3}}
    assert v4.summary == "ICMPv4 DestinationUnreachable(Port)"
    echo_reply = decode(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 1, enc.icmp4(0))))
    assert echo_reply.l4 == {"ICMPv4": {}}
    assert echo_reply.summary == "ICMPv4 EchoReply"
    v6 = decode(enc.ethernet(enc.ipv6("fd00::1", "fd00::2", 58, enc.icmp6(135)), 0x86DD))
    assert v6.l4 == {"ICMPv6": {"type": 135}}
    assert v6.summary == "ICMPv6 NeighborSolicitation"


def test_udp_sctp_and_bare_ip() -> None:
    udp = decode(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(5353, 53, b"query"))))
    assert (udp.l4, udp.summary) == ({"UDP": {"source_port": 5353, "destination_port": 53}}, "UDP")
    sctp = decode(enc.ipv4("10.0.0.1", "10.0.0.2", 132, enc.sctp(5000, 6000)), FIRST_IPV4)
    assert (sctp.l4, sctp.summary, sctp.ethernet) == (
        {"SCTP": {"source_port": 5000, "destination_port": 6000}},
        "SCTP",
        None,
    )
    gre = decode(enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 47, b"\x00" * 8)))
    assert (gre.l4, gre.summary, gre.ip_source) == (None, "IPv4", "10.0.0.1")
    zero_port = decode(enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(0, 53)), FIRST_IPV4)
    assert zero_port.l4 == {"UDP": {"destination_port": 53}}


def test_ethernet_fields_and_non_ip_ethertype() -> None:
    info = decode(enc.ethernet(b"\x00" * 28, 0x0806, src=bytes.fromhex("AABBCCDDEEFF"), dst=b"\xff" * 6))
    assert info.ethernet == {"source": "aa:bb:cc:dd:ee:ff", "destination": "ff:ff:ff:ff:ff:ff"}
    assert (info.ip_source, info.summary) == (None, "Ethernet")


def test_ipv4_fragments_stop_after_ip() -> None:
    more_fragments = decode(enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(1, 2, 2), frag=0x2000), FIRST_IPV4)
    assert (more_fragments.l4, more_fragments.summary) == (None, "IPv4")
    later_fragment = decode(enc.ipv4("10.0.0.1", "10.0.0.2", 6, b"\x00" * 20, frag=0x0010), FIRST_IPV4)
    assert later_fragment.l4 is None


def test_ipv6_hop_by_hop_is_skipped_and_addresses_are_canonical() -> None:
    hop_by_hop = bytes([58, 0]) + b"\x00" * 6  # next header ICMPv6, 8 bytes
    info = decode(enc.ipv6("fd00:0:0::1", "::ffff:10.0.0.2", 0, hop_by_hop + enc.icmp6(143)), FIRST_IPV6)
    assert info.ip_source == "fd00::1"
    assert info.ip_destination == "::ffff:10.0.0.2"  # Go's netip keeps the mapped form
    assert info.ip_version == "IPv6"
    assert info.summary == "ICMPv6 143(0)"


@pytest.mark.parametrize(
    ("hex_addr", "text"),
    [
        ("00000000000000000000ffff01020304", "::ffff:1.2.3.4"),
        ("00000000000000000000000001020304", "::102:304"),  # glibc would print ::1.2.3.4
        ("00000000000000000000000000000001", "::1"),
        ("0000000000000000000000000000ffff", "::ffff"),
        ("20010db8000000000000ffff00000001", "2001:db8::ffff:0:1"),
    ],
)
def test_ipv6_text_like_go_netip(hex_addr: str, text: str) -> None:
    assert ipv6_to_str(bytes.fromhex(hex_addr)) == text


def test_vrrp_and_igmp() -> None:
    vrrp = bytes([0x21, 7, 100, 1, 0, 1, 0, 0]) + bytes([10, 0, 0, 254])
    info = decode(enc.ipv4("10.0.0.1", "224.0.0.18", 112, vrrp), FIRST_IPV4)
    assert info.l4 == {"VRRP": {"type": 1, "vrid": 7, "priority": 100}}
    assert info.summary == "VRRP VRRPv2 Advertisement"
    assert decode(enc.ipv4("10.0.0.1", "224.0.0.18", 112, b"\x31" + vrrp[1:]), FIRST_IPV4) is None
    query = bytes([0x11, 100, 0, 0, 0, 0, 0, 0])
    info = decode(enc.ipv4("10.0.0.1", "224.0.0.1", 2, query), FIRST_IPV4)
    assert info.l4 == {"IGMP": {"type": 17, "group_address": "0.0.0.0"}}
    assert info.summary == "IGMP IGMP Membership Query"
    report = bytes([0x16, 0, 0, 0, 239, 1, 2, 3])
    info = decode(enc.ipv4("10.0.0.1", "239.1.2.3", 2, report), FIRST_IPV4)
    assert info.l4 == {"IGMP": {"type": 22, "group_address": "239.1.2.3"}}
    assert info.summary == "IGMP IGMPv2 Membership Report"


def test_ip_length_bounds_the_l4_payload() -> None:
    # Trailing bytes beyond the IPv4 total length are not part of the UDP datagram.
    packet = enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(1, 2)) + b"\x01" * 5
    assert decode(packet, FIRST_IPV4).l4 == {"UDP": {"source_port": 1, "destination_port": 2}}


@pytest.mark.parametrize(
    "packet",
    [
        enc.ethernet(b"")[:13],  # short Ethernet header
        enc.ipv4("10.0.0.1", "10.0.0.2", 6, b"")[:19],  # short IPv4 header
        enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(1, 2, 2))[:30],  # TCP header cut
        enc.ipv4("10.0.0.1", "10.0.0.2", 17, b"\x00" * 4),  # UDP header cut
        enc.ipv4("10.0.0.1", "10.0.0.2", 1, b"\x08\x00\x00\x00"),  # ICMPv4 < 8 bytes
        b"\x44" + enc.ipv4("10.0.0.1", "10.0.0.2", 6, b"")[1:],  # IHL 4
    ],
)
def test_malformed_supported_layers_reject_the_packet(packet: bytes) -> None:
    first = FIRST_ETHERNET if len(packet) < 14 else FIRST_IPV4
    assert decode(packet, first) is None


def test_bad_tcp_data_offset_rejects() -> None:
    tcp = bytearray(enc.tcp(1, 2, 2))
    tcp[12] = 0x30  # data offset 3 words
    assert decode(enc.ipv4("10.0.0.1", "10.0.0.2", 6, bytes(tcp)), FIRST_IPV4) is None


def test_empty_payload() -> None:
    assert decode_packet(b"abc", 3, 3, FIRST_ETHERNET) is EMPTY_PACKET


def test_vxlan_overlay_reports_inner_packet_and_tunnel() -> None:
    inner = enc.ethernet(enc.ipv4("10.244.1.5", "10.244.2.6", 6, enc.tcp(33000, 8080, enc.TCP_SYN)))
    vxlan = struct.pack("!BxxxI", 0x08, 4242 << 8) + inner
    outer = enc.ethernet(enc.ipv4("172.18.0.2", "172.18.0.3", 17, enc.udp(50000, 8472, vxlan)))
    info = decode(outer, FIRST_ETHERNET, OVERLAY_VXLAN)
    assert (info.ip_source, info.ip_destination) == ("10.244.1.5", "10.244.2.6")
    assert info.summary == "TCP Flags: SYN"
    assert info.tunnel == {
        "protocol": "VXLAN",
        "IP": {"source": "172.18.0.2", "destination": "172.18.0.3", "ipVersion": "IPv4"},
        "l4": {"UDP": {"source_port": 50000, "destination_port": 8472}},
        "vni": 4242,
    }


def test_geneve_overlay_with_options() -> None:
    inner = enc.ethernet(enc.ipv4("10.244.1.5", "10.244.2.6", 17, enc.udp(1, 53)))
    geneve = struct.pack("!BBHI", 0x01, 0, 0x6558, 7 << 8) + b"\xaa" * 4 + inner  # 1 option word
    outer = enc.ipv4("172.18.0.2", "172.18.0.3", 17, enc.udp(50000, 6081, geneve))
    info = decode(outer, FIRST_IPV4, OVERLAY_GENEVE)
    assert info.summary == "UDP"
    assert info.tunnel["protocol"] == "GENEVE"
    assert info.tunnel["vni"] == 7


def test_overlay_errors_and_empty_inner() -> None:
    def outer(payload: bytes) -> bytes:
        return enc.ipv4("172.18.0.2", "172.18.0.3", 17, enc.udp(50000, 8472, payload))

    assert decode(outer(b"\x08\x00\x00"), FIRST_IPV4, OVERLAY_VXLAN) is None  # short VXLAN header
    bad_inner = struct.pack("!BxxxI", 0x08, 1 << 8) + enc.ethernet(b"\x45\x00")  # cut inner IPv4
    assert decode(outer(bad_inner), FIRST_IPV4, OVERLAY_VXLAN) is None
    only_header = decode(outer(struct.pack("!BxxxI", 0x08, 9 << 8)), FIRST_IPV4, OVERLAY_VXLAN)
    assert (only_header.ip_source, only_header.l4, only_header.summary) == (None, None, None)
    assert only_header.tunnel["vni"] == 9
    tcp_outer = decode(enc.ipv4("172.18.0.2", "172.18.0.3", 6, enc.tcp(1, 2, 2)), FIRST_IPV4, OVERLAY_VXLAN)
    assert tcp_outer.tunnel is None and tcp_outer.summary == "TCP Flags: SYN"


def test_ip_in_ip_reports_the_inner_packet() -> None:
    inner = enc.ipv4("10.1.0.1", "10.1.0.2", 17, enc.udp(7, 9))
    info = decode(enc.ethernet(enc.ipv4("192.0.2.1", "192.0.2.2", 4, inner)))
    assert (info.ip_source, info.ip_destination, info.summary) == ("10.1.0.1", "10.1.0.2", "UDP")
    assert info.ethernet is not None
    six_in_four = decode(
        enc.ipv4("192.0.2.1", "192.0.2.2", 41, enc.ipv6("fd00::1", "fd00::2", 58, enc.icmp6(128))), FIRST_IPV4
    )
    assert (six_in_four.ip_version, six_in_four.summary) == ("IPv6", "ICMPv6 EchoRequest")
    assert decode(enc.ipv4("192.0.2.1", "192.0.2.2", 4, inner[:10]), FIRST_IPV4) is None


def with_tcp_options(options: bytes) -> bytes:
    tcp = bytearray(enc.tcp(1, 2, enc.TCP_SYN) + options)
    tcp[12] = ((20 + len(options)) // 4) << 4
    return enc.ipv4("10.0.0.1", "10.0.0.2", 6, bytes(tcp))


def with_ip_options(options: bytes) -> bytes:
    ip = bytearray(enc.ipv4("10.0.0.1", "10.0.0.2", 17, enc.udp(1, 2)))
    ip[0] = 0x40 | (5 + len(options) // 4)
    packet = bytes(ip[:20]) + options + bytes(ip[20:])
    return packet[:2] + len(packet).to_bytes(2, "big") + packet[4:]


def test_tcp_and_ip_options_are_checked_like_gopacket() -> None:
    mss_sack_ts = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\x00" * 8 + b"\x01\x03\x03\x07"
    assert decode(with_tcp_options(mss_sack_ts), FIRST_IPV4).summary == "TCP Flags: SYN"
    assert decode(with_tcp_options(b"\x02\x00\x00\x00"), FIRST_IPV4) is None  # length 0
    assert decode(with_tcp_options(b"\x02\x08\x00\x00"), FIRST_IPV4) is None  # runs past the header
    assert decode(with_tcp_options(b"\x00\xff\xff\xff"), FIRST_IPV4) is not None  # end of list
    trace_id_option = b"\x88\x04\xc8\x22"  # option 136, 4 bytes
    assert decode(with_ip_options(trace_id_option), FIRST_IPV4).summary == "UDP"
    assert decode(with_ip_options(b"\x88\x02\x00\x00"), FIRST_IPV4) is None  # IPv4 needs length > 2
