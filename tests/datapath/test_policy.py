"""Real-eBPF policy enforcement: default deny, allow entries, wildcards, audit, runtime updates."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from testbed import Pod, echo_once, netns_socket, run_in_netns

from hubblepy.datapath import PolicyEntry
from hubblepy.datapath.layout import (
    CT_NEW,
    CT_RELATED,
    CT_REPLY,
    DIR_EGRESS,
    DIR_INGRESS,
    DROP_POLICY,
    DROP_POLICY_DENY,
    MATCH_L3_L4,
    MATCH_L3_ONLY,
    MATCH_L4_ONLY,
    MATCH_NONE,
    TRACE_FROM_LXC,
    TRACE_TO_LXC,
    DropEvent,
    PolicyVerdictEvent,
    TraceEvent,
)

from .conftest import Env
from .packets import TCP_ACK, TCP_SYN, parse

pytestmark = pytest.mark.root
TCP, UDP, ICMP = 6, 17, 1


def drops(events: list) -> list[DropEvent]:
    return [e for e in events if isinstance(e, DropEvent)]


def verdicts(events: list) -> list[PolicyVerdictEvent]:
    return [e for e in events if isinstance(e, PolicyVerdictEvent)]


def traces(events: list) -> list[TraceEvent]:
    return [e for e in events if isinstance(e, TraceEvent)]


def test_default_deny_drops_syn_with_drop_and_verdict_events(env: Env) -> None:
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)
    env.tb.echo_server(env.p2, 8080)

    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None

    events = env.events(until=lambda ev: drops(ev) and verdicts(ev))
    drop = drops(events)[0]
    assert (drop.reason, drop.version, drop.source) == (DROP_POLICY, 3, env.ep_id(env.p2))
    assert (drop.src_label, drop.dst_label) == (env.identity(env.p1), env.identity(env.p2))
    assert drop.dst_id == env.ep_id(env.p2)  # ingress drops name the local endpoint
    assert drop.ifindex == env.p2.host_ifindex
    pkt = parse(drop.packet)
    assert pkt is not None and (pkt.src, pkt.dst, pkt.dport) == (env.p1.ip, env.p2.ip, 8080)
    assert pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    assert drop.len_cap == len(drop.packet) == drop.len_orig  # whole SYN fits in 128 bytes

    pv = verdicts(events)[0]
    assert (pv.source, pv.remote_label, pv.verdict) == (env.ep_id(env.p2), env.identity(env.p1), -DROP_POLICY)
    assert (pv.dst_port, pv.proto, pv.direction, pv.match_type, pv.audited) == (
        8080,
        TCP,
        DIR_INGRESS,
        MATCH_NONE,
        False,
    )
    assert env.dp.read_counters()[(DROP_POLICY, DIR_INGRESS)].packets >= 1


def test_egress_default_deny_drop_has_no_dst_endpoint(env: Env) -> None:
    env.dp.set_enforcement(env.ep_id(env.p1), egress=True)
    env.tb.echo_server(env.p2, 8080)

    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None

    events = env.events(until=lambda ev: drops(ev) and verdicts(ev))
    drop = drops(events)[0]
    assert (drop.source, drop.dst_id) == (env.ep_id(env.p1), 0)
    assert (drop.src_label, drop.dst_label) == (env.identity(env.p1), env.identity(env.p2))
    pv = verdicts(events)[0]
    assert (pv.direction, pv.remote_label, pv.verdict) == (DIR_EGRESS, env.identity(env.p2), -DROP_POLICY)
    # the packet never reached p2's veth
    assert not [t for t in traces(events) if t.obs_point == TRACE_TO_LXC]


def test_allow_by_identity_and_port_and_replies_pass(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 8080, TCP, cookie=42)])
    env.tb.echo_server(env.p2, 8080)
    env.tb.echo_server(env.p2, 9090)

    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None and echo_once(conn)
    conn.close()
    assert env.tb.connect(env.p3, env.p2, 8080, timeout=0.5) is None  # other identity
    assert env.tb.connect(env.p1, env.p2, 9090, timeout=0.5) is None  # other port

    events = env.events(until=lambda ev: len(drops(ev)) >= 2)
    allowed = [v for v in verdicts(events) if v.verdict == 0]
    assert len(allowed) == 1
    assert (allowed[0].match_type, allowed[0].cookie, allowed[0].dst_port) == (MATCH_L3_L4, 42, 8080)
    assert {(d.src_label, parse(d.packet).dport) for d in drops(events)} == {
        (env.identity(env.p3), 8080),
        (env.identity(env.p1), 9090),
    }
    # the SYN-ACK is traced as a reply on both veths
    replies = [t for t in traces(events) if t.reason == CT_REPLY and parse(t.packet).tcp_flags & TCP_SYN]
    assert {(t.obs_point, t.source) for t in replies} == {
        (TRACE_FROM_LXC, ep2),
        (TRACE_TO_LXC, env.ep_id(env.p1)),
    }
    new = [t for t in traces(events) if t.reason == CT_NEW and t.obs_point == TRACE_TO_LXC]
    assert new and new[0].dst_id == ep2


def test_l3_only_entry_allows_every_port_of_that_identity(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(identity=env.identity(env.p1))])
    env.tb.echo_server(env.p2, 8080)
    env.tb.echo_server(env.p2, 9090)

    for port in (8080, 9090):
        conn = env.tb.connect(env.p1, env.p2, port)
        assert conn is not None and echo_once(conn)
        conn.close()
    assert env.tb.connect(env.p3, env.p2, 8080, timeout=0.5) is None

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 3)
    assert sorted((v.match_type, v.dst_port) for v in verdicts(events) if v.verdict == 0) == [
        (MATCH_L3_ONLY, 8080),
        (MATCH_L3_ONLY, 9090),
    ]


def test_l4_only_entry_allows_that_port_from_everyone(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(dport=8080, proto=TCP)])
    env.tb.echo_server(env.p2, 8080)
    env.tb.echo_server(env.p2, 9090)

    for src in (env.p1, env.p3):
        conn = env.tb.connect(src, env.p2, 8080)
        assert conn is not None and echo_once(conn)
        conn.close()
    assert env.tb.connect(env.p1, env.p2, 9090, timeout=0.5) is None

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 3)
    assert sorted((v.remote_label, v.match_type) for v in verdicts(events) if v.verdict == 0) == [
        (env.identity(env.p1), MATCH_L4_ONLY),
        (env.identity(env.p3), MATCH_L4_ONLY),
    ]


def test_explicit_deny_entry_reports_denylist_reason(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(
        ep2,
        "ingress",
        [
            PolicyEntry(env.identity(env.p1), 8080, TCP, deny=True, cookie=9),
            PolicyEntry(dport=8080, proto=TCP),
        ],
    )
    env.tb.echo_server(env.p2, 8080)

    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None
    conn = env.tb.connect(env.p3, env.p2, 8080)
    assert conn is not None
    conn.close()

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 2)
    assert drops(events)[0].reason == DROP_POLICY_DENY
    denied = [v for v in verdicts(events) if v.verdict < 0][0]
    assert (denied.verdict, denied.cookie, denied.match_type) == (-DROP_POLICY_DENY, 9, MATCH_L3_L4)


def test_audit_mode_passes_denied_packet_with_audited_verdict(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_audit(ep2, True)
    env.tb.echo_server(env.p2, 8080)

    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None and echo_once(conn)
    conn.close()

    events = env.events(until=lambda ev: bool(verdicts(ev)))
    pv = verdicts(events)[0]
    assert (pv.verdict, pv.audited, pv.match_type, pv.remote_label) == (
        0,
        True,
        MATCH_NONE,
        env.identity(env.p1),
    )
    assert not drops(events)

    env.dp.set_audit(ep2, False)
    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None


def test_runtime_policy_update_keeps_established_connection(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    allow = PolicyEntry(env.identity(env.p1), 8080, TCP)
    assert env.dp.set_policy_entries(ep2, "ingress", [allow]) == (1, 0, 0)
    env.tb.echo_server(env.p2, 8080)
    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None and echo_once(conn)

    assert env.dp.set_policy_entries(ep2, "ingress", [allow]) == (0, 0, 0)  # unchanged: nothing written
    assert env.dp.set_policy_entries(ep2, "ingress", []) == (0, 0, 1)

    assert echo_once(conn, b"still here")  # established connections are not judged again
    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None  # new ones are
    conn.close()

    events = env.events(until=lambda ev: bool(drops(ev)))
    # events of different CPUs come in no particular order
    found = sorted(v.verdict for v in verdicts(events))
    assert found[-1] == 0 and found.count(0) == 1  # the connection made before the update
    assert set(found[:-1]) == {-DROP_POLICY}  # the new SYN (and any retransmission of it)


def test_icmp_error_is_related_to_the_udp_flow(env: Env) -> None:
    ep1, ep2 = env.ep_id(env.p1), env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 5353, UDP)])

    env.tb.udp_send(env.p1, env.p2, 5353, 1)  # nothing listens: p2 answers port unreachable

    events = env.events(until=lambda ev: len([t for t in traces(ev) if t.reason == CT_RELATED]) >= 2)
    related = [t for t in traces(events) if t.reason == CT_RELATED]
    assert {(t.obs_point, t.source) for t in related} == {(TRACE_FROM_LXC, ep2), (TRACE_TO_LXC, ep1)}
    assert all(parse(t.packet).proto == ICMP for t in related)
    assert not drops(events)


def test_ipcache_longest_prefix_wins_and_unknown_is_world(env: Env) -> None:
    subnet = f"10.200.{env.tb.subnet}.0/24"
    env.dp.delete_ipcache(f"{env.p3.ip}/32")
    env.dp.set_ipcache(subnet, 5000)
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)

    assert env.tb.connect(env.p3, env.p2, 8080, timeout=0.3) is None
    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.3) is None
    env.dp.delete_ipcache(subnet)
    assert env.tb.connect(env.p3, env.p2, 8080, timeout=0.3) is None

    events = env.events(until=lambda ev: len({d.src_label for d in drops(ev)}) >= 3)
    assert {d.src_label for d in drops(events)} == {5000, env.identity(env.p1), 2}


@pytest.mark.parametrize("env", [True], ids=["ipv6"], indirect=True)
def test_ipv6_default_deny_and_allow(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 8080, TCP)])
    env.tb.echo_server(env.p2, 8080, ipv6=True)

    conn = env.tb.connect(env.p1, env.p2, 8080, ipv6=True)  # neighbour discovery passes unjudged
    assert conn is not None and echo_once(conn)
    conn.close()
    assert env.tb.connect(env.p3, env.p2, 8080, timeout=0.5, ipv6=True) is None

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 2)
    drop = drops(events)[0]
    assert (drop.src_label, drop.dst_label, drop.flags & 1) == (env.identity(env.p3), env.identity(env.p2), 1)
    assert parse(drop.packet).src == env.p3.ip6
    assert sorted((v.verdict, v.ipv6) for v in verdicts(events)) == [(-DROP_POLICY, True), (0, True)]
    replies = [t for t in traces(events) if t.reason == CT_REPLY]
    assert replies and all(t.flags & 1 for t in replies)


def test_recreated_pod_with_new_ip_keeps_identity_and_policy(env: Env) -> None:
    ep1, ep2 = env.ep_id(env.p1), env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 8080, TCP)])
    env.dp.set_enforcement(ep1, egress=True)
    env.dp.set_policy_entries(ep1, "egress", [PolicyEntry(env.identity(env.p2), 8080, TCP)])
    env.tb.echo_server(env.p2, 8080)

    old_ip = env.p1.ip
    new_ip = f"10.200.{env.tb.subnet}.{100 + ep1}"
    env.tb.recreate_pod(env.p1, new_ip)
    env.dp.delete_ipcache(f"{old_ip}/32")
    env.dp.set_ipcache(f"{new_ip}/32", env.identity(env.p1))
    env.dp.upsert_endpoint(ep1, env.p1.host_ifindex, env.identity(env.p1), env.dp.endpoint(ep1)[2])
    env.dp.attach(env.p1.host_ifname, netns=env.tb.node)

    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None and echo_once(conn)
    conn.close()
    assert env.tb.connect(env.p1, env.p3, 8080, timeout=0.5) is None  # its egress policy still applies

    events = env.events(until=lambda ev: len(verdicts(ev)) >= 3)
    allowed = {(v.source, v.remote_label, v.direction) for v in verdicts(events) if v.verdict == 0}
    assert allowed == {(ep2, env.identity(env.p1), DIR_INGRESS), (ep1, env.identity(env.p2), DIR_EGRESS)}
    denied = [v for v in verdicts(events) if v.verdict < 0]
    assert {(v.source, v.remote_label) for v in denied} == {(ep1, env.identity(env.p3))}


def test_deleted_endpoint_is_no_longer_judged_and_counters_add_up(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.tb.echo_server(env.p2, 8080)
    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.3) is None
    assert [e.source for e in drops(env.events(until=drops))][:1] == [ep2]

    env.dp.delete_endpoint(ep2)
    assert env.dp.endpoint(ep2) is None
    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None and echo_once(conn)
    conn.close()

    events = env.events(until=lambda ev: len(traces(ev)) >= 2, wait=0.5)
    assert traces(events)  # p1's side still reports
    assert [e for e in events if e.source == ep2] == []  # p2's veth no longer has an endpoint
    counters = env.dp.read_counters()
    assert counters[(DROP_POLICY, DIR_INGRESS)].packets >= 1
    assert counters[(0, DIR_EGRESS)].packets >= 4  # p1's SYN(s), ACK, data, FIN at least
    assert all(c.bytes >= 54 * c.packets for c in counters.values())


def test_a_broader_deny_wins_over_a_more_specific_allow(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(
        ep2,
        "ingress",
        [
            PolicyEntry(env.identity(env.p1), 8080, TCP, cookie=1),  # L3+L4 allow
            PolicyEntry(env.identity(env.p1), deny=True, cookie=2),  # L3-only deny
            PolicyEntry(dport=8080, proto=TCP, cookie=3),  # L4-only allow
        ],
    )
    env.tb.echo_server(env.p2, 8080)

    assert env.tb.connect(env.p1, env.p2, 8080, timeout=0.5) is None
    conn = env.tb.connect(env.p3, env.p2, 8080)
    assert conn is not None
    conn.close()

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 2)
    by_remote = {v.remote_label: (v.verdict, v.match_type, v.cookie) for v in verdicts(events)}
    assert by_remote == {
        env.identity(env.p1): (-DROP_POLICY_DENY, MATCH_L3_ONLY, 2),
        env.identity(env.p3): (0, MATCH_L4_ONLY, 3),
    }


def test_idle_connection_expires_and_is_judged_again(env: Env) -> None:
    ep2 = env.ep_id(env.p2)
    env.dp.set_conntrack_lifetimes(non_tcp=2)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 5353, UDP)])
    sock = netns_socket(env.p1.netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(b"a", (env.p2.ip, 5353))
        env.dp.set_policy_entries(ep2, "ingress", [])
        sock.sendto(b"b", (env.p2.ip, 5353))  # same flow, still established: passes
        time.sleep(3)  # idle past the 2 s lifetime
        sock.sendto(b"c", (env.p2.ip, 5353))  # judged again under the new policy: dropped
    finally:
        sock.close()

    events = env.events(until=lambda ev: bool(drops(ev)))
    udp_verdicts = [v.verdict for v in verdicts(events) if v.proto == UDP]
    assert sorted(udp_verdicts) == [-DROP_POLICY, 0]  # events of different CPUs come in no particular order
    assert [parse(d.packet).payload_len for d in drops(events) if parse(d.packet).proto == UDP] == [1]


def _checksum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _ping(src: Pod, dst: Pod, ident: int) -> bool:
    """One ICMP echo from a raw socket in ``src``; True if the matching reply arrives within 1 s."""
    sock = run_in_netns(
        src.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    )
    try:
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"hubblepy"
        body = body[:2] + _checksum(body).to_bytes(2, "big") + body[4:]
        sock.sendto(body, (dst.ip, 0))
        sock.settimeout(1.0)
        while True:
            packet = sock.recv(2048)
            icmp = packet[(packet[0] & 0x0F) * 4 :]
            if icmp[0] == 0 and int.from_bytes(icmp[4:6], "big") == ident:
                return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_icmp_echo_is_judged_by_type_and_the_reply_passes(env: Env) -> None:
    ep1, ep2 = env.ep_id(env.p1), env.ep_id(env.p2)
    env.dp.set_enforcement(ep1, egress=True)
    env.dp.set_enforcement(ep2, ingress=True)
    env.dp.set_policy_entries(ep1, "egress", [PolicyEntry(env.identity(env.p2), 8, ICMP)])  # echo request
    env.dp.set_policy_entries(ep2, "ingress", [PolicyEntry(env.identity(env.p1), 8, ICMP)])

    assert _ping(env.p1, env.p2, 0x1234)
    assert not _ping(env.p3, env.p2, 0x1235)

    events = env.events(until=lambda ev: drops(ev) and len(verdicts(ev)) >= 3)
    allowed = sorted(
        (v.source, v.dst_port, v.proto, v.match_type) for v in verdicts(events) if v.verdict == 0
    )
    assert allowed == [(ep1, 8, ICMP, MATCH_L3_L4), (ep2, 8, ICMP, MATCH_L3_L4)]
    replies = {(t.obs_point, t.source) for t in traces(events) if t.reason == CT_REPLY}
    assert replies == {(TRACE_FROM_LXC, ep2), (TRACE_TO_LXC, ep1)}
    assert {d.src_label for d in drops(events)} == {env.identity(env.p3)}
