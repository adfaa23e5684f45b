"""Real-eBPF port ranges (toPorts endPort): the policy_ranges LPM trie, deny ranges, flag upkeep."""

from __future__ import annotations

import pytest

from hubblepy.datapath import PolicyEntry, port_blocks
from hubblepy.datapath.layout import (
    DROP_POLICY,
    DROP_POLICY_DENY,
    EP_HAS_RANGES,
    MATCH_L3_L4,
    MATCH_L4_ONLY,
    DropEvent,
    PolicyVerdictEvent,
)

from .conftest import Env

pytestmark = pytest.mark.root
TCP = 6


def test_port_blocks_cover_exactly_the_range() -> None:
    for first, last in [(1, 65535), (8000, 8080), (0, 65535), (5, 5), (1024, 1030), (65535, 65535)]:
        covered = [
            p for start, bits in port_blocks(first, last) for p in range(start, start + (1 << (16 - bits)))
        ]
        assert covered == list(range(first, last + 1))
    assert len(port_blocks(1, 65535)) == 16


def _verdicts(events: list) -> list[PolicyVerdictEvent]:
    return [e for e in events if isinstance(e, PolicyVerdictEvent)]


def test_range_allows_ports_inside_and_drops_outside(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(
        ep2, "ingress", [PolicyEntry(env.identity(env.p1), 8000, TCP, cookie=7, end_port=8080)]
    )
    assert env.dp.endpoint(ep2)[2] & EP_HAS_RANGES
    assert env.dp.range_block_count(ep2) == len(port_blocks(8000, 8080))
    for port in (8000, 8042, 8080, 8081, 7999):
        env.tb.echo_server(env.p2, port)
    for port in (8000, 8042, 8080):
        conn = env.tb.connect(env.p1, env.p2, port)
        assert conn is not None, port
        conn.close()
    for port in (7999, 8081):
        assert env.tb.connect(env.p1, env.p2, port, timeout=0.5) is None, port
    assert env.tb.connect(env.p3, env.p2, 8042, timeout=0.5) is None  # other identity

    events = env.events(until=lambda ev: len([d for d in ev if isinstance(d, DropEvent)]) >= 3)
    allowed = sorted((v.dst_port, v.match_type, v.cookie) for v in _verdicts(events) if v.verdict == 0)
    assert allowed == [(8000, MATCH_L3_L4, 7), (8042, MATCH_L3_L4, 7), (8080, MATCH_L3_L4, 7)]
    assert sorted(v.dst_port for v in _verdicts(events) if v.verdict == -DROP_POLICY) == [7999, 8042, 8081]


def test_deny_range_wins_over_exact_allow_and_removal_clears_flag(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(
        ep2,
        "ingress",
        [
            PolicyEntry(env.identity(env.p1), 9000, TCP, cookie=1),  # exact allow
            PolicyEntry(0, 8990, TCP, deny=True, cookie=2, end_port=9010),  # wildcard deny range
            PolicyEntry(0, 1, TCP, cookie=3, end_port=65535),  # allow every TCP port
        ],
    )
    env.tb.echo_server(env.p2, 9000)
    env.tb.echo_server(env.p2, 9500)
    assert env.tb.connect(env.p1, env.p2, 9000, timeout=0.5) is None
    conn = env.tb.connect(env.p3, env.p2, 9500)
    assert conn is not None
    conn.close()
    events = env.events(until=lambda ev: len(_verdicts(ev)) >= 2)
    by_port = {v.dst_port: (v.verdict, v.match_type, v.cookie) for v in _verdicts(events)}
    assert by_port[9000] == (-DROP_POLICY_DENY, MATCH_L4_ONLY, 2)
    assert by_port[9500] == (0, MATCH_L4_ONLY, 3)

    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 9000, TCP, cookie=1)])
    assert env.dp.range_block_count(ep2) == 0
    assert not env.dp.endpoint(ep2)[2] & EP_HAS_RANGES
    conn = env.tb.connect(env.p1, env.p2, 9000)
    assert conn is not None
    conn.close()


def test_audit_only_deny_range_passes_as_audit_only_when_something_allows(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    p1, p3 = env.identity(env.p1), env.identity(env.p3)
    env.dp.set_policy_entries(
        ep2,
        "ingress",
        [
            PolicyEntry(0, 1, TCP, cookie=3, end_port=65535),  # allow every TCP port
            PolicyEntry(0, 9000, TCP, deny=True, audit=True, cookie=4, end_port=9010),  # audited range
            PolicyEntry(p3, 9005, TCP, deny=True, cookie=5),  # enforced exact deny: still drops
            PolicyEntry(p3, 9008, TCP, deny=True, cookie=6, end_port=9009),  # enforced range deny
        ],
    )
    for port in (9002, 9005, 9008):
        env.tb.echo_server(env.p2, port)
    for pod, port in ((env.p1, 9002), (env.p3, 9002), (env.p1, 9005), (env.p1, 9008)):
        conn = env.tb.connect(pod, env.p2, port)
        assert conn is not None, (pod, port)
        conn.close()
    for port in (9005, 9008):
        assert env.tb.connect(env.p3, env.p2, port, timeout=0.5) is None, port
    events = env.events(until=lambda ev: len(_verdicts(ev)) >= 6)
    got = sorted(
        (v.remote_label, v.dst_port, v.verdict, v.audited, v.cookie)
        for v in _verdicts(events)
        if v.dst_port in (9002, 9005, 9008)
    )
    assert got == [
        (p1, 9002, 0, True, 4),
        (p1, 9005, 0, True, 4),
        (p1, 9008, 0, True, 4),
        (p3, 9002, 0, True, 4),
        (p3, 9005, -DROP_POLICY_DENY, False, 5),
        (p3, 9008, -DROP_POLICY_DENY, False, 6),
    ]

    # without an allow the audited range is not what stops the packet: default deny drops it
    env.dp.set_policy_entries(
        ep2, "ingress", [PolicyEntry(0, 9000, TCP, deny=True, audit=True, cookie=4, end_port=9010)]
    )
    assert env.tb.connect(env.p1, env.p2, 9002, timeout=0.5) is None
    events = env.events(until=lambda ev: any(v.verdict < 0 for v in _verdicts(ev)))
    dropped = [v for v in _verdicts(events) if v.verdict < 0]
    assert (dropped[0].verdict, dropped[0].audited, dropped[0].cookie) == (-DROP_POLICY, False, 0)
