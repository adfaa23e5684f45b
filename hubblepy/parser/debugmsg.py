"""Human text of datapath debug messages (``DebugEvent.message``), as Cilium's monitor words them.

Each DBG_* subtype formats its three 32-bit arguments its own way: some are plain numbers, some
IPv4 addresses stored in network order inside a host-order u32, some 16-bit ports in network
order. The wording is the agent's (pkg/monitor datapath debug messages); subtypes it does not know
read ``Unknown message type=<n> arg1=<a> arg2=<b>``.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

from hubblepy.parser.constants import DROP_REASON_TEXTS

_U32_NATIVE = struct.Struct("=I")

_CT_STATES = {0: "New", 1: "Established", 2: "Reply", 3: "Related"}
_CT_DIRECTIONS = {0: "egress", 1: "ingress"}


def _swap16(value: int) -> int:
    """Network-to-host swap of the low 16 bits (a port stored in network order)."""
    return socket.ntohs(value & 0xFFFF)


def _ip4(value: int) -> str:
    """A u32 holding an IPv4 address's network-order bytes in host memory order."""
    return socket.inet_ntoa(_U32_NATIVE.pack(value))


def _ip6_tail(value: int) -> str:
    """The last 32 bits of an IPv6 address as two hex groups."""
    host = socket.ntohl(value)
    return f"{host >> 16:x}:{host & 0xFFFF:x}"


def _ct_flags(flags: int) -> str:
    names = [name for bit, name in ((1, "OUT"), (2, "RELATED")) if flags & bit]
    return ", ".join(names)


def _ct_info(arg1: int, arg2: int) -> str:
    return f"sport={arg1 >> 16} dport={arg1 & 0xFFFF} nexthdr={arg2 >> 8} flags={_ct_flags(arg2 & 0xFF)}"


def _verdict_info(arg: int) -> str:
    return f"revnat={_swap16(arg)}"


def _ct_state(state: int) -> str:
    if state in _CT_STATES:
        return _CT_STATES[state]
    return DROP_REASON_TEXTS.get(state & 0xFF, str(state & 0xFF))


def _proxy_info(arg1: int, arg2: int) -> str:
    return f"sport={_swap16(arg1 >> 16)} dport={_swap16(arg1)} saddr={_ip4(arg2)}"


def _lookup4(a1: int, a2: int, a3: int) -> str:
    return f"src={_ip4(a1)}:{a3 & 0xFFFF} dst={_ip4(a2)}:{a3 >> 16}"


def _lookup6(a1: int, a2: int, a3: int) -> str:
    return f"src=[::{_ip6_tail(a1)}]:{a3 & 0xFFFF} dst=[::{_ip6_tail(a2)}]:{a3 >> 16}"


def _lookup_2(a1: int) -> str:
    return f"nexthdr={a1 >> 8} flags={a1 & 0xFF}"


def _errno_text(code: int) -> str:
    if code == 0:
        return "Success"
    try:
        text = os.strerror(code)
    except (OverflowError, ValueError):  # a u32 argument beyond the C int range
        text = ""
    if not text or text.startswith("Unknown error"):
        return f"errno {code}"  # Go's syscall.Errno text for a number it has no name for
    return text[:1].lower() + text[1:]  # Go's errno strings start lower-case


_Formatter = Callable[[int, int, int, Callable[[int], str]], str]

# subtype -> formatter(arg1, arg2, arg3, interface_name)
_FORMATS: dict[int, _Formatter] = {
    1: lambda a1, a2, a3, ifn: f"No message, arg1={a1} ({a1:#x}) arg2={a2} ({a2:#x})",
    2: lambda a1, a2, a3, ifn: f"Attempting local delivery for container id {a1} from seclabel {a2}",
    3: lambda a1, a2, a3, ifn: f"Encapsulating to node {a1} ({a1:#x}) from seclabel {a2}",
    4: lambda a1, a2, a3, ifn: f"Local container found ifindex {ifn(a1)} seclabel {_swap16(a2)}",
    5: lambda a1, a2, a3, ifn: f"Policy evaluation would deny packet from {a1} to {a2}",
    6: lambda a1, a2, a3, ifn: f"CT lookup: {_ct_info(a1, a2)}",
    7: lambda a1, a2, a3, ifn: f"CT reverse lookup: {_ct_info(a1, a2)}",
    8: lambda a1, a2, a3, ifn: f"CT entry found lifetime={a1}, {_verdict_info(a2)}",
    9: lambda a1, a2, a3, ifn: f"CT created 1/2: {_ct_info(a1, a2)} {_verdict_info(a3)}",
    10: lambda a1, a2, a3, ifn: f"CT created 2/2: {_ip4(a1)} revnat={_swap16(a2)}",
    11: lambda a1, a2, a3, ifn: f"Handling ICMPv6 type={a1}",
    12: lambda a1, a2, a3, ifn: f"ICMPv6 echo request for router offset={a1}",
    13: lambda a1, a2, a3, ifn: f"ICMPv6 neighbour soliciation for address {a1:x}:{a2:x}",
    14: lambda a1, a2, a3, ifn: "Sending ICMPv6 time exceeded",
    15: lambda a1, a2, a3, ifn: f"CT verdict: {_ct_state(a1)}, {_verdict_info(a2)}",
    16: lambda a1, a2, a3, ifn: f"Tunnel decap: id={a1} flowlabel={a2:x}",
    17: lambda a1, a2, a3, ifn: f"Mapping port from={a1} to={a2}",
    18: lambda a1, a2, a3, ifn: f"BPF function {a1} returned error {a2}",
    19: lambda a1, a2, a3, ifn: f"Going to host, policy-skip={a1}",
    20: lambda a1, a2, a3, ifn: f"Going to the stack, policy-skip={a1}",
    21: lambda a1, a2, a3, ifn: f"Packet hash={a1} ({a1:#x}), selected_service={a2}",
    22: lambda a1, a2, a3, ifn: f"Frontend service lookup, addr.p4={a1:x} key.dport={_swap16(a2)}",
    23: lambda a1, a2, a3, ifn: f"Frontend service lookup failed, addr.p2={a1:x} addr.p3={a2:x}",
    24: lambda a1, a2, a3, ifn: f"Service backend slot lookup: slot={a1}, dport={_swap16(a2)}",
    25: lambda a1, a2, a3, ifn: f"Service backend slot lookup result: target.p4={a1:x} port={_swap16(a2)}",
    26: lambda a1, a2, a3, ifn: f"Service backend slot lookup failed: slot={a1}, dport={_swap16(a2)}",
    27: lambda a1, a2, a3, ifn: f"Backend service lookup failed: backend_id={a1}",
    28: lambda a1, a2, a3, ifn: f"Reverse NAT lookup, index={_swap16(a1)}",
    29: lambda a1, a2, a3, ifn: f"Performing reverse NAT, address.p4={a1:x} port={_swap16(a2)}",
    30: lambda a1, a2, a3, ifn: f"Frontend service lookup, addr={_ip4(a1)} key.dport={_swap16(a2)}",
    31: lambda a1, a2, a3, ifn: "Frontend service lookup failed",
    32: lambda a1, a2, a3, ifn: f"Service backend slot lookup: slot={a1}, dport={_swap16(a2)}",
    33: lambda a1, a2, a3, ifn: f"Service backend slot lookup result: target={_ip4(a1)} port={_swap16(a2)}",
    34: lambda a1, a2, a3, ifn: f"Service backend slot lookup failed: slot={a1}, dport={_swap16(a2)}",
    35: lambda a1, a2, a3, ifn: f"Backend service lookup failed: backend_id={a1}",
    36: lambda a1, a2, a3, ifn: f"Reverse NAT lookup, index={_swap16(a1)}",
    37: lambda a1, a2, a3, ifn: f"Performing reverse NAT, address={_ip4(a1)} port={_swap16(a2)}",
    38: lambda a1, a2, a3, ifn: f"Loopback SNAT from={_ip4(a1)} to={_ip4(a2)}",
    39: lambda a1, a2, a3, ifn: f"Loopback reverse SNAT from={_ip4(a1)} to={_ip4(a2)}",
    40: lambda a1, a2, a3, ifn: f"CT lookup address: {_ip4(a1)}",
    41: lambda a1, a2, a3, ifn: f"RR backend slot selection hash={a1} ({a1:#x}), selected_service={a2}",
    42: lambda a1, a2, a3, ifn: f"Reverse proxy lookup {_proxy_info(a1, a2)} nexthdr={a3}",
    43: lambda a1, a2, a3, ifn: f"Reverse proxy entry found, orig-daddr={_ip4(a1)} orig-dport={a2}",
    44: lambda a1, a2, a3, ifn: f"Reverse proxy updated {_proxy_info(a1, a2)} nexthdr={a3}",
    45: lambda a1, a2, a3, ifn: f"Resolved L4 policy to: {_swap16(a1)} / {_CT_DIRECTIONS.get(a2, '')}",
    46: lambda a1, a2, a3, ifn: f"Destination is inside cluster prefix, source identity: {a1}",
    47: lambda a1, a2, a3, ifn: f"Attempting encapsulation, lookup key: {_ip4(a1)}, identity: {a2}",
    48: lambda a1, a2, a3, ifn: f"Conntrack lookup 1/2: {_lookup4(a1, a2, a3)}",
    49: lambda a1, a2, a3, ifn: f"Conntrack lookup 2/2: {_lookup_2(a1)}",
    50: lambda a1, a2, a3, ifn: (
        f"Conntrack create: proxy-port={a1 >> 16} revnat={_swap16(a1)} src-identity={a2} lb={_ip4(a3)}"
    ),
    51: lambda a1, a2, a3, ifn: f"Conntrack lookup 1/2: {_lookup6(a1, a2, a3)}",
    52: lambda a1, a2, a3, ifn: f"Conntrack lookup 2/2: {_lookup_2(a1)}",
    53: lambda a1, a2, a3, ifn: (
        f"Conntrack create: proxy-port={a1 >> 16} revnat={_swap16(a1)} src-identity={a2}"
    ),
    54: lambda a1, a2, a3, ifn: f"Skipping proxy, tc_index is set={a1:x}",
    55: lambda a1, a2, a3, ifn: (
        f"Matched L4 policy; creating conntrack src={a1} dst={a2} dport={_swap16(a3 >> 16)} proto={a3 & 0xFF}"
    ),
    56: lambda a1, a2, a3, ifn: f"Failed to map addr={_ip4(a1)} to identity",
    57: lambda a1, a2, a3, ifn: f"Failed to map addr.p4=[::{_ip6_tail(a1)}] to identity",
    58: lambda a1, a2, a3, ifn: f"Successfully mapped addr={_ip4(a1)} to identity={a2}",
    59: lambda a1, a2, a3, ifn: f"Successfully mapped addr.p4=[::{_ip6_tail(a1)}] to identity={a2}",
    60: lambda a1, a2, a3, ifn: f"Stale CT entry found stale_ct.rev_nat_id={a2}, svc.rev_nat_id={a1}",
    61: lambda a1, a2, a3, ifn: f"Inheriting identity={a1} from stack",
    62: lambda a1, a2, a3, ifn: f"Socket lookup: {_lookup4(a1, a2, a3)}",
    63: lambda a1, a2, a3, ifn: f"Socket lookup: {_lookup6(a1, a2, a3)}",
    64: lambda a1, a2, a3, ifn: f"Socket assign: {_errno_text(a1)}",
    65: lambda a1, a2, a3, ifn: f"L7 LB from {_ip4(a1)} to {_ip4(a2)}: proxy port {a3}",
}


def debug_message(subtype: int, arg1: int, arg2: int, arg3: int, interface_name: Callable[[int], str]) -> str:
    """The monitor's text for one debug message; ``interface_name`` maps an ifindex to a link name."""
    fmt = _FORMATS.get(subtype)
    if fmt is None:
        return f"Unknown message type={subtype} arg1={arg1} arg2={arg2}"
    return fmt(arg1, arg2, arg3, interface_name)
