"""Tiny decoders for the packet bytes appended to events (Ethernet + IPv4 + TCP/UDP/ICMP)."""

from __future__ import annotations

import socket
from typing import NamedTuple

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class Packet(NamedTuple):
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    tcp_flags: int
    payload_len: int


def parse(frame: bytes) -> Packet | None:
    if len(frame) >= 58 and frame[12:14] == b"\x86\xdd":
        return _parse6(frame)
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = int.from_bytes(ip[2:4], "big")
    proto = ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    l4 = ip[ihl:]
    sport = dport = flags = 0
    payload = total - ihl
    if proto in (6, 17) and len(l4) >= 4:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
    if proto == 6 and len(l4) >= 14:
        flags = l4[13]
        payload = total - ihl - (l4[12] >> 4) * 4
    elif proto == 17:
        payload = total - ihl - 8
    return Packet(src, dst, proto, sport, dport, flags, payload)


def _parse6(frame: bytes) -> Packet:
    ip = frame[14:]
    plen, proto = int.from_bytes(ip[4:6], "big"), ip[6]
    src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
    l4 = ip[40:]
    sport = dport = flags = 0
    payload = plen
    if proto in (6, 17) and len(l4) >= 4:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
    if proto == 6 and len(l4) >= 14:
        flags = l4[13]
        payload = plen - (l4[12] >> 4) * 4
    return Packet(src, dst, proto, sport, dport, flags, payload)
