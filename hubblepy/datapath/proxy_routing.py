"""Node-namespace routing for the transparent proxy redirect (Cilium's proxy rules, with pyroute2).

The endpoint programs steer a redirected packet to the proxy's socket with ``bpf_sk_assign`` and
mark it ``MARK_TO_PROXY``; they mark the server's replies to the proxy's upstream connections the
same way. ``bpf_sk_assign`` only takes effect when the node delivers the packet locally, but these
packets are addressed to pods. So the node namespace gets one policy-routing rule and one table:

    ip rule add fwmark 0x200/0xf00 lookup 2004 pref 9
    ip route add local 0.0.0.0/0 dev lo table 2004

(and the IPv6 pair when asked). A packet with the mark is then "local" whatever its destination,
and reaches the socket the program assigned (or, for replies, the proxy's transparent upstream
socket bound to the client's address). Nothing else changes: unmarked traffic is routed as before.
Replies that enter the node through an interface without endpoint programs (the lab's world
veth) are marked by ``Datapath.attach_outside(interface, netns)``'s program.

The proxy side (not here): a listener with IP_TRANSPARENT bound to 0.0.0.0:<proxy_port>, without
SO_REUSEPORT (``bpf_sk_assign`` refuses reuseport listeners); its upstream sockets IP_TRANSPARENT,
bound to the client's address, with SO_MARK = ``MARK_FROM_PROXY``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from pyroute2.netlink.exceptions import NetlinkError

from hubblepy.datapath import layout, tc

RULE_PRIORITY = 9  # before the main table (32766); the local table (0) only knows the node's own addresses


def _rule_args(family: int) -> dict[str, int]:
    return {
        "family": family,
        "table": layout.PROXY_ROUTE_TABLE,
        "priority": RULE_PRIORITY,
        "fwmark": layout.MARK_TO_PROXY,
        "fwmask": layout.MARK_MAGIC_MASK,
    }


def _route_args(family: int, lo: int) -> dict[str, object]:
    return {
        "family": family,
        "dst": "0.0.0.0/0" if family == socket.AF_INET else "::/0",
        "type": "local",
        "oif": lo,
        "table": layout.PROXY_ROUTE_TABLE,
        "scope": 254 if family == socket.AF_INET else 0,  # host
    }


def _families(ipv6: bool) -> tuple[int, ...]:
    return (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,)


def _call(
    where: str | None, tolerated: tuple[int, ...], fn: Callable[..., object], *args: object, **kw: object
) -> None:
    try:
        fn(*args, **kw)
    except NetlinkError as exc:
        if exc.code not in tolerated:
            raise OSError(exc.code, f"proxy routing in {where or 'this namespace'}: {exc}") from None


def install(netns: str | None = None, ipv6: bool = False) -> None:
    """Adds the proxy rule and local route in ``netns`` (None = this namespace). Idempotent."""
    with tc.netlink(netns) as ipr:
        lo = tc.resolve_ifindex(ipr, "lo")
        for family in _families(ipv6):
            _call(netns, (errno.EEXIST,), ipr.route, "add", **_route_args(family, lo))
            _call(netns, (errno.EEXIST,), ipr.rule, "add", **_rule_args(family))


def uninstall(netns: str | None = None, ipv6: bool = False) -> None:
    """Removes what :func:`install` added; missing pieces are fine."""
    gone = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)
    with tc.netlink(netns) as ipr:
        lo = tc.resolve_ifindex(ipr, "lo")
        for family in _families(ipv6):
            _call(netns, gone, ipr.rule, "del", **_rule_args(family))
            _call(netns, gone, ipr.route, "del", **_route_args(family, lo))


def installed(netns: str | None = None) -> bool:
    """Whether the IPv4 rule is in place."""
    with tc.netlink(netns) as ipr:
        for rule in ipr.get_rules(family=socket.AF_INET):
            if (
                rule.get_attr("FRA_TABLE") == layout.PROXY_ROUTE_TABLE
                and rule.get_attr("FRA_FWMARK") == layout.MARK_TO_PROXY
            ):
                return True
    return False
