"""Shared samples for the parser tests: one valid sample of every layout and a resolver for them."""

from __future__ import annotations

from hubblepy.parser import EndpointInfo, StaticResolver
from hubblepy.parser import encode as enc

RESOLVER = StaticResolver()
RESOLVER.add_endpoint(EndpointInfo(id=1, identity=300, labels=("k8s:app=a",), ips=("10.0.0.1", "fd00::1")))
RESOLVER.set_cgroup(9, ["10.0.0.1"])

_TCP = enc.ethernet(enc.ipv4("10.0.0.1", "10.0.0.2", 6, enc.tcp(1, 2, enc.TCP_SYN)))
_UDP6 = enc.ethernet(enc.ipv6("fd00::1", "fd00::2", 17, enc.udp(1, 53)), 0x86DD)
VALID_SAMPLES = [
    enc.trace_event(_TCP, version=0),
    enc.trace_event(_TCP, version=1, orig_ip="10.0.0.9"),
    enc.trace_event(_UDP6, version=2, flags=1, trace_id=3),
    enc.drop_event(_TCP, version=0),
    enc.drop_event(_TCP, version=2, flags=0),
    enc.drop_event(_UDP6, version=3),
    enc.policy_verdict_event(_TCP, layout=32),
    enc.policy_verdict_event(_TCP, layout=40, cookie=5, verdict=-133, flags=2),
    enc.capture_event(_TCP, point=8, arg1=1),
    enc.trace_sock_event(cgroup_id=9),
    enc.debug_event(4, source=1),
]
