"""L7 redirect on real traffic: allow entries with a proxy port send connections to a transparent proxy.

The node namespace routes between pods (the routed testbed, like the lab's node). A tiny forwarder in
the node namespace stands in for the proxy: an IP_TRANSPARENT listener on the proxy port, and for
each accepted connection an upstream socket that is IP_TRANSPARENT, bound to the client's address
and marked MARK_FROM_PROXY, relaying bytes both ways. Checked: the forwarder sees the original
destination (getsockname) and the client (getpeername), the server sees the client's address, the
replies of both legs find their way, and the events say what Cilium's do (policy verdict = +proxy
port, trace to-proxy / from-proxy); with no listener the SYN is dropped with reason 178 and a drop
event, and it works again once the listener is back; proxy port 0 behaves as before.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from testbed import Testbed, echo_once, run_in_netns

from hubblepy.datapath import Datapath, PolicyEntry, proxy_routing
from hubblepy.datapath.layout import (
    DIR_EGRESS,
    DIR_INGRESS,
    DROP_PROXY_LOOKUP_FAILED,
    MARK_FROM_PROXY,
    TRACE_FROM_LXC,
    TRACE_FROM_PROXY,
    TRACE_TO_PROXY,
    DropEvent,
    PolicyVerdictEvent,
    TraceEvent,
)

from .conftest import IDENTITY_BASE, Env, require_datapath
from .packets import TCP_SYN, parse

pytestmark = pytest.mark.root
TCP = 6
PROXY_PORT = 15001
IP_TRANSPARENT = 19  # linux/in.h; the socket module of Python 3.11 does not name it


class Forwarder:
    """A transparent TCP forwarder in a namespace: what the node's L7 proxy does, minus the L7."""

    def __init__(self, netns: str, port: int) -> None:
        self.netns = netns
        self.seen: list[tuple[tuple[str, int], tuple[str, int]]] = []  # (original destination, client)
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            s.bind(("0.0.0.0", port))
            s.listen(16)
            return s

        self.listener = run_in_netns(netns, listen)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, client = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, client[:2]), daemon=True).start()

    def _serve(self, conn: socket.socket, client: tuple[str, int]) -> None:
        original = conn.getsockname()[:2]
        with self._lock:
            self.seen.append((original, client))
            self._socks.append(conn)
        up = run_in_netns(self.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        with self._lock:
            self._socks.append(up)
        try:
            up.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            up.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK_FROM_PROXY)
            up.bind((client[0], 0))
            up.settimeout(2.0)
            up.connect(original)
            up.settimeout(None)
        except OSError:
            conn.close()
            up.close()
            return
        threading.Thread(target=self._pipe, args=(up, conn), daemon=True).start()
        self._pipe(conn, up)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def penv() -> Iterator[Env]:
    require_datapath()
    tb = Testbed(3, routed=True)
    dp = reader = None
    try:
        tb.up()
        proxy_routing.install(tb.node)
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, IDENTITY_BASE + i, addresses=[pod.ip])
            dp.set_ipcache(f"{pod.ip}/32", IDENTITY_BASE + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        reader = dp.open_monitor(pages=64)
        yield Env(tb, dp, reader, *tb.pods)
    finally:
        if reader is not None:
            reader.close()
        if dp is not None:
            dp.close()
        tb.down()


@contextlib.contextmanager
def forwarder(env: Env) -> Iterator[Forwarder]:
    fwd = Forwarder(env.tb.node, PROXY_PORT)
    try:
        yield fwd
    finally:
        fwd.close()


def verdicts(events: list) -> list[PolicyVerdictEvent]:
    return [e for e in events if isinstance(e, PolicyVerdictEvent)]


def traces(events: list, obs: int) -> list[TraceEvent]:
    return [e for e in events if isinstance(e, TraceEvent) and e.obs_point == obs]


def _through_proxy(env: Env, fwd: Forwarder) -> list:
    """A echo exchange p1 -> p2:8080 that must go through the forwarder; returns the events."""
    server = env.tb.echo_server(env.p2, 8080)
    conn = env.tb.connect(env.p1, env.p2, 8080, timeout=3.0)
    assert conn is not None, "no connection through the proxy"
    try:
        assert echo_once(conn, b"hello through the proxy", timeout=3.0)
        client_port = conn.getsockname()[1]
    finally:
        conn.close()
    assert fwd.seen == [((env.p2.ip, 8080), (env.p1.ip, client_port))]
    assert [peer[0] for peer in server.peers] == [env.p1.ip]  # the server sees the real client
    events = env.events(until=lambda ev: bool(traces(ev, TRACE_FROM_PROXY)), wait=3.0)
    assert not [e for e in events if isinstance(e, DropEvent)]
    # to-proxy: the client's packets (dst_id = the proxy port), and the server's replies to the
    # proxy's upstream connection (dst_id 0), which go back to the proxy rather than to the client
    to_proxy = traces(events, TRACE_TO_PROXY)
    redirected = [t for t in to_proxy if t.dst_id == PROXY_PORT]
    assert redirected and all(t.source == env.ep_id(env.p1) for t in redirected)
    first = parse(redirected[0].packet)
    assert first is not None and first.tcp_flags & TCP_SYN and first.dport == 8080
    replies = [t for t in to_proxy if t.dst_id == 0]
    assert replies and all(t.source == env.ep_id(env.p2) for t in replies)
    pkt = parse(replies[0].packet)
    assert pkt is not None and (pkt.src, pkt.sport, pkt.dst) == (env.p2.ip, 8080, env.p1.ip)
    from_proxy = traces(events, TRACE_FROM_PROXY)
    assert from_proxy[0].source == env.ep_id(env.p2)
    assert from_proxy[0].src_label == env.identity(env.p1)  # the proxy connects as the client
    return events


def test_ingress_l7_of_a_local_destination_redirects_at_the_source(penv: Env) -> None:
    env = penv
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p2),
        "ingress",
        [PolicyEntry(identity=env.identity(env.p1), dport=8080, proto=TCP, cookie=7, proxy_port=PROXY_PORT)],
    )
    with forwarder(env) as fwd:
        events = _through_proxy(env, fwd)
    (v,) = verdicts(events)  # the destination's verdict, given once, at the source's hook
    assert (v.source, v.direction, v.remote_label) == (env.ep_id(env.p2), DIR_INGRESS, env.identity(env.p1))
    assert (v.verdict, v.dst_port, v.proto, v.cookie) == (PROXY_PORT, 8080, TCP, 7)


def test_egress_l7_of_the_source_redirects(penv: Env) -> None:
    env = penv
    env.dp.set_enforcement(env.ep_id(env.p1), egress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p1),
        "egress",
        [PolicyEntry(identity=env.identity(env.p2), dport=8080, proto=TCP, proxy_port=PROXY_PORT)],
    )
    with forwarder(env) as fwd:
        events = _through_proxy(env, fwd)
    (v,) = verdicts(events)
    assert (v.source, v.direction, v.remote_label) == (env.ep_id(env.p1), DIR_EGRESS, env.identity(env.p2))
    assert v.verdict == PROXY_PORT


def test_no_proxy_socket_drops_with_reason_178_then_recovers(penv: Env) -> None:
    env = penv
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p2),
        "ingress",
        [PolicyEntry(identity=env.identity(env.p1), dport=8080, proto=TCP, proxy_port=PROXY_PORT)],
    )
    server = env.tb.echo_server(env.p2, 8080)
    assert env.tb.connect(env.p1, env.p2, 8080, timeout=1.0) is None  # fail closed, never around the proxy
    assert server.peers == []
    events = env.events(until=lambda ev: any(isinstance(e, DropEvent) for e in ev))
    drop = next(e for e in events if isinstance(e, DropEvent))
    assert drop.reason == DROP_PROXY_LOOKUP_FAILED
    assert drop.source == env.ep_id(env.p1)
    assert (drop.src_label, drop.dst_label) == (env.identity(env.p1), env.identity(env.p2))
    pkt = parse(drop.packet)
    assert pkt is not None and pkt.tcp_flags & TCP_SYN and pkt.dport == 8080
    assert not traces(events, TRACE_TO_PROXY)
    # the proxy is back: the next connection is judged again and goes through it
    with forwarder(env) as fwd:
        conn = env.tb.connect(env.p1, env.p2, 8080, timeout=3.0)
        assert conn is not None
        try:
            assert echo_once(conn, b"back", timeout=3.0)
        finally:
            conn.close()
        assert len(fwd.seen) == 1


def test_proxy_port_zero_goes_direct(penv: Env) -> None:
    env = penv
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p2), "ingress", [PolicyEntry(identity=env.identity(env.p1), dport=8080, proto=TCP)]
    )
    with forwarder(env) as fwd:
        server = env.tb.echo_server(env.p2, 8080)
        conn = env.tb.connect(env.p1, env.p2, 8080, timeout=3.0)
        assert conn is not None
        try:
            assert echo_once(conn, b"direct")
        finally:
            conn.close()
        assert fwd.seen == []
    assert [peer[0] for peer in server.peers] == [env.p1.ip]
    events = env.events(until=lambda ev: bool(verdicts(ev)))
    (v,) = verdicts(events)
    assert (v.source, v.verdict) == (env.ep_id(env.p2), 0)
    assert traces(events, TRACE_FROM_LXC) and not traces(events, TRACE_TO_PROXY)


def test_replies_from_a_destination_without_endpoint_programs_reach_the_proxy(penv: Env) -> None:
    env = penv
    # p3 stands for the world: no endpoint, only the from_outside program on its veth
    env.dp.detach(env.p3.host_ifname, netns=env.tb.node)
    env.dp.delete_endpoint(env.ep_id(env.p3))
    env.dp.attach_outside(env.p3.host_ifname, netns=env.tb.node)
    env.dp.set_enforcement(env.ep_id(env.p1), egress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p1),
        "egress",
        [PolicyEntry(identity=env.identity(env.p3), dport=8080, proto=TCP, proxy_port=PROXY_PORT)],
    )
    with forwarder(env) as fwd:
        server = env.tb.echo_server(env.p3, 8080)
        conn = env.tb.connect(env.p1, env.p3, 8080, timeout=3.0)
        assert conn is not None
        try:
            assert echo_once(conn, b"to the world and back", timeout=3.0)
            client_port = conn.getsockname()[1]
        finally:
            conn.close()
        assert fwd.seen == [((env.p3.ip, 8080), (env.p1.ip, client_port))]
    assert [peer[0] for peer in server.peers] == [env.p1.ip]


def test_ingress_l7_of_a_pod_reached_from_outside_redirects_at_the_outside_interface(penv: Env) -> None:
    env = penv
    env.dp.detach(env.p3.host_ifname, netns=env.tb.node)
    env.dp.delete_endpoint(env.ep_id(env.p3))
    env.dp.attach_outside(env.p3.host_ifname, netns=env.tb.node)
    env.dp.set_enforcement(env.ep_id(env.p2), ingress=True)
    env.dp.set_policy_entries(
        env.ep_id(env.p2),
        "ingress",
        [PolicyEntry(identity=env.identity(env.p3), dport=8080, proto=TCP, proxy_port=PROXY_PORT)],
    )
    server = env.tb.echo_server(env.p2, 8080)
    assert env.tb.connect(env.p3, env.p2, 8080, timeout=1.0) is None  # no proxy yet: fail closed
    events = env.events(until=lambda ev: any(isinstance(e, DropEvent) for e in ev))
    drop = next(e for e in events if isinstance(e, DropEvent))
    assert (drop.reason, drop.source) == (DROP_PROXY_LOOKUP_FAILED, env.ep_id(env.p2))
    with forwarder(env) as fwd:
        conn = env.tb.connect(env.p3, env.p2, 8080, timeout=3.0)
        assert conn is not None
        try:
            assert echo_once(conn, b"from outside", timeout=3.0)
            client_port = conn.getsockname()[1]
        finally:
            conn.close()
        assert fwd.seen == [((env.p2.ip, 8080), (env.p3.ip, client_port))]
    assert [peer[0] for peer in server.peers] == [env.p3.ip]
    events = env.events(until=lambda ev: bool(traces(ev, TRACE_TO_PROXY)))
    v = verdicts(events)[-1]
    assert (v.source, v.direction, v.verdict) == (env.ep_id(env.p2), DIR_INGRESS, PROXY_PORT)
    (t,) = [t for t in traces(events, TRACE_TO_PROXY) if t.dst_id == PROXY_PORT]  # the SYN
    assert (t.source, t.src_label, t.dst_label) == (
        env.ep_id(env.p2),
        env.identity(env.p3),
        env.identity(env.p2),
    )
