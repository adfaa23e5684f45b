"""Debug message texts (DebugEvent.message) for the argument encodings the datapath uses."""

from __future__ import annotations

import socket
import struct

import pytest

from hubblepy.parser.debugmsg import debug_message


def ip_arg(ip: str) -> int:
    """An IPv4 address the way BPF passes it: network-order bytes read as a host u32."""
    return struct.unpack("=I", socket.inet_aton(ip))[0]


def port_arg(port: int) -> int:
    return socket.htons(port)


@pytest.mark.parametrize(
    ("subtype", "args", "text"),
    [
        (1, (16, 255, 0), "No message, arg1=16 (0x10) arg2=255 (0xff)"),
        (6, (40000 << 16 | 80, 6 << 8 | 1, 0), "CT lookup: sport=40000 dport=80 nexthdr=6 flags=OUT"),
        (
            7,
            (1 << 16 | 2, 17 << 8 | 3, 0),
            "CT reverse lookup: sport=1 dport=2 nexthdr=17 flags=OUT, RELATED",
        ),
        (15, (2, port_arg(7), 0), "CT verdict: Reply, revnat=7"),
        (15, (133, 0, 0), "CT verdict: Policy denied, revnat=0"),
        (58, (ip_arg("10.0.0.1"), 42, 0), "Successfully mapped addr=10.0.0.1 to identity=42"),
        (
            48,
            (ip_arg("10.0.0.1"), ip_arg("10.0.0.2"), 8080 << 16 | 40000),
            "Conntrack lookup 1/2: src=10.0.0.1:40000 dst=10.0.0.2:8080",
        ),
        (45, (port_arg(8080), 1, 0), "Resolved L4 policy to: 8080 / ingress"),
        (64, (0, 0, 0), "Socket assign: Success"),
        (66, (1, 2, 3), "Unknown message type=66 arg1=1 arg2=2"),
        (200, (0, 0, 0), "Unknown message type=200 arg1=0 arg2=0"),
    ],
)
def test_debug_message_texts(subtype: int, args: tuple[int, int, int], text: str) -> None:
    assert debug_message(subtype, *args, lambda ifindex: "") == text


def test_lxc_found_uses_interface_name() -> None:
    text = debug_message(4, 7, port_arg(300), 0, {7: "lxc-a"}.get)
    assert text == "Local container found ifindex lxc-a seclabel 300"
