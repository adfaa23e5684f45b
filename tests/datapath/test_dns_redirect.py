"""UDP redirect on real traffic (the DNS proxy's path): allow entries with a proxy port on a UDP port.

A small UDP forwarder in the node namespace stands in for the DNS proxy: the transparent listener
on 0.0.0.0:<proxy port> (IP_RECVORIGDSTADDR), an upstream socket per datagram bound to the client's
address, marked MARK_FROM_PROXY and connected to the original destination, and the answer sent
back from a socket bound to that original destination. Checked: the forwarder learns the original
destination, the server sees the client, the client gets its answer from the address it asked, the
events say what Cilium's do; with no listener the datagram is dropped with reason 178 (fail closed)
and the flow works again once the listener is back; replies from a destination without endpoint
programs (the world) reach the upstream socket through ``from_outside``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from testbed import run_in_netns

from hubblepy.datapath import PolicyEntry
from hubblepy.datapath.layout import (
    DIR_EGRESS,
    DROP_PROXY_LOOKUP_FAILED,
    MARK_FROM_PROXY,
    TRACE_TO_PROXY,
    DropEvent,
    PolicyVerdictEvent,
    TraceEvent,
)
from hubblepy.proxy.dns_sockets import (
    ANCILLARY_SIZE,
    original_destination,
    reply_socket,
    udp_listener,
    upstream_udp_socket,
)

from .conftest import Env
from .packets import parse
from .test_proxy_redirect import penv  # noqa: F401  (the routed testbed fixture)

pytestmark = pytest.mark.root
UDP = 17
PROXY_PORT = 15053
DNS_PORT = 53


class UDPForwarder:
    """One datagram in, one upstream exchange, one answer out: the DNS proxy minus DNS."""

    def __init__(self, netns: str, port: int) -> None:
        self.netns = netns
        self.seen: list[tuple[tuple[str, int], tuple[str, int]]] = []  # (original destination, client)
        self.sock = run_in_netns(netns, lambda: udp_listener("0.0.0.0", port))
        self.sock.setblocking(True)
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                data, anc, _, client = self.sock.recvmsg(4096, ANCILLARY_SIZE)
            except OSError:
                return
            if client is None:  # shut down
                return
            original = original_destination(anc)
            if original is None:
                continue
            self.seen.append((original, client[:2]))
            try:
                up = run_in_netns(
                    self.netns, lambda o=original, c=client: upstream_udp_socket(c[0], o, MARK_FROM_PROXY)
                )
                up.setblocking(True)
                up.settimeout(2.0)
                up.send(data)
                answer = up.recv(4096)
                up.close()
                out = run_in_netns(self.netns, lambda o=original: reply_socket(o))
                out.sendto(answer, client[:2])
                out.close()
            except OSError:
                continue

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def forwarder(env: Env) -> Iterator[UDPForwarder]:
    fwd = UDPForwarder(env.tb.node, PROXY_PORT)
    try:
        yield fwd
    finally:
        fwd.close()


class UDPEcho:
    """A UDP echo server in a pod: answers b"echo:" + the datagram, remembers who asked."""

    def __init__(self, netns: str, ip: str, port: int) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, port))
            return s

        self.sock = run_in_netns(netns, make)
        self.peers: list[tuple[str, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if peer is None:  # shut down
                return
            self.peers.append(peer[:2])
            with contextlib.suppress(OSError):
                self.sock.sendto(b"echo:" + data, peer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def ask(
    env: Env, src, dst_ip: str, payload: bytes, timeout: float = 2.0
) -> tuple[bytes, tuple[str, int]] | None:
    """One datagram from ``src`` to dst_ip:53 on a connected socket; the answer and who sent it."""
    s = run_in_netns(src.netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        s.settimeout(timeout)
        s.connect((dst_ip, DNS_PORT))
        s.send(payload)
        data, peer = s.recvfrom(4096)
        return data, peer[:2]
    except OSError:
        return None
    finally:
        s.close()


def redirect_dns(env: Env, src, dst) -> None:
    env.dp.set_enforcement(env.ep_id(src), egress=True)
    env.dp.set_policy_entries(
        env.ep_id(src),
        "egress",
        [PolicyEntry(identity=env.identity(dst), dport=DNS_PORT, proto=UDP, cookie=9, proxy_port=PROXY_PORT)],
    )


def test_udp_egress_redirect_reaches_the_proxy_and_the_server_sees_the_client(penv: Env) -> None:  # noqa: F811
    env = penv
    redirect_dns(env, env.p1, env.p2)
    server = UDPEcho(env.p2.netns, env.p2.ip, DNS_PORT)
    try:
        with forwarder(env) as fwd:
            got = ask(env, env.p1, env.p2.ip, b"query-1")
            assert got == (b"echo:query-1", (env.p2.ip, DNS_PORT))  # from the address the client asked
            assert len(fwd.seen) == 1
            original, client = fwd.seen[0]
            assert original == (env.p2.ip, DNS_PORT) and client[0] == env.p1.ip
            assert [p[0] for p in server.peers] == [env.p1.ip]  # the server sees the real client
    finally:
        server.close()
    events = env.events(until=lambda ev: bool([e for e in ev if isinstance(e, TraceEvent)]), wait=2.0)
    assert not [e for e in events if isinstance(e, DropEvent)]
    (v,) = [e for e in events if isinstance(e, PolicyVerdictEvent)]
    assert (v.source, v.direction, v.verdict, v.dst_port, v.proto, v.cookie) == (
        env.ep_id(env.p1),
        DIR_EGRESS,
        PROXY_PORT,
        DNS_PORT,
        UDP,
        9,
    )
    to_proxy = [e for e in events if isinstance(e, TraceEvent) and e.obs_point == TRACE_TO_PROXY]
    first = [t for t in to_proxy if t.dst_id == PROXY_PORT]
    assert first and first[0].source == env.ep_id(env.p1)
    pkt = parse(first[0].packet)
    assert pkt is not None and (pkt.proto, pkt.dport) == (UDP, DNS_PORT)


def test_udp_redirect_without_a_proxy_socket_drops_178_then_recovers(penv: Env) -> None:  # noqa: F811
    env = penv
    redirect_dns(env, env.p1, env.p2)
    server = UDPEcho(env.p2.netns, env.p2.ip, DNS_PORT)
    try:
        assert ask(env, env.p1, env.p2.ip, b"nobody", timeout=0.5) is None  # fail closed
        assert server.peers == []
        events = env.events(until=lambda ev: any(isinstance(e, DropEvent) for e in ev))
        drop = next(e for e in events if isinstance(e, DropEvent))
        assert (drop.reason, drop.source) == (DROP_PROXY_LOOKUP_FAILED, env.ep_id(env.p1))
        with forwarder(env) as fwd:
            assert ask(env, env.p1, env.p2.ip, b"again") == (b"echo:again", (env.p2.ip, DNS_PORT))
            assert len(fwd.seen) == 1
    finally:
        server.close()


def test_udp_replies_from_outside_reach_the_upstream_socket(penv: Env) -> None:  # noqa: F811
    env = penv
    env.dp.detach(env.p3.host_ifname, netns=env.tb.node)
    env.dp.delete_endpoint(env.ep_id(env.p3))
    env.dp.attach_outside(env.p3.host_ifname, netns=env.tb.node)
    redirect_dns(env, env.p1, env.p3)
    server = UDPEcho(env.p3.netns, env.p3.ip, DNS_PORT)
    try:
        with forwarder(env) as fwd:
            assert ask(env, env.p1, env.p3.ip, b"world") == (b"echo:world", (env.p3.ip, DNS_PORT))
            assert fwd.seen and fwd.seen[0][0] == (env.p3.ip, DNS_PORT)
        assert [p[0] for p in server.peers] == [env.p1.ip]
    finally:
        server.close()
