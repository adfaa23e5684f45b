"""A minimal network-namespace test bed for the datapath tests and benchmarks (not part of the package).

One "node" namespace holds a bridge and the host side of every pod's veth; each pod is its own
namespace with ``eth0`` and an address in a random 10.200.X.0/24. With ``routed=True`` there is no
bridge: the node routes between pods as the lab's node does (and Cilium's): every host veth has the
gateway address 10.200.X.1/32 and a /32 route to its pod, each pod a /32 address, a link route to
the gateway and a default route through it; forwarding is on in the node namespace. Nothing touches the machine's own
namespace except the namespace names. Sockets are created inside a pod's namespace by a short-lived
thread that enters it (setns), so tests can drive real traffic from plain Python.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Runs ``fn`` in a fresh thread that has entered network namespace ``netns``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def netns_socket(netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in ``netns`` (usable from any thread afterwards)."""
    return run_in_netns(netns, lambda: socket.socket(family, kind))


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    host_ifname: str
    host_ifindex: int = 0
    ip6: str = ""  # set when the testbed has IPv6


@dataclass
class EchoServer:
    """TCP echo server inside a pod; one thread per connection."""

    sock: socket.socket
    threads: list[threading.Thread] = field(default_factory=list)
    conns: list[socket.socket] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # getpeername() of each accepted connection
    closed: bool = False

    def serve(self) -> None:
        while not self.closed:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.peers.append(peer[:2])
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
        conn.close()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


class Testbed:
    """``with Testbed(3) as tb:`` builds a node namespace with a bridge and three pods."""

    __test__ = False  # not a pytest test class

    def __init__(self, pods: int = 3, prefix: str = "hpt", ipv6: bool = False, routed: bool = False) -> None:
        if routed and ipv6:
            raise ValueError("the routed testbed is IPv4 only")
        self.ipv6 = ipv6
        self.routed = routed
        self.tag = f"{prefix}{secrets.token_hex(3)}"
        self.node = f"{self.tag}-node"
        self.subnet = 1 + secrets.randbelow(250)
        self.gateway = f"10.200.{self.subnet}.1"
        self.pods = [
            Pod(
                f"p{i}",
                f"{self.tag}-p{i}",
                f"10.200.{self.subnet}.{10 + i}",
                f"{self.tag}h{i}",
                ip6=f"fd00:200:{self.subnet:x}::{10 + i:x}" if ipv6 else "",
            )
            for i in range(1, pods + 1)
        ]
        self._servers: list[EchoServer] = []

    def __enter__(self) -> Testbed:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        sh("ip", "netns", "add", self.node)
        self._no_ipv6(self.node)
        sh("ip", "-n", self.node, "link", "set", "lo", "up")
        if self.routed:
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        else:
            sh("ip", "-n", self.node, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.node, "link", "set", "br0", "up")
        for pod in self.pods:
            self._make_pod(pod)

    def _make_pod(self, pod: Pod) -> None:
        sh("ip", "netns", "add", pod.netns)
        if not self.ipv6:
            self._no_ipv6(pod.netns)
        sh(
            "ip",
            "-n",
            self.node,
            "link",
            "add",
            pod.host_ifname,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.netns,
        )
        if self.routed:
            sh("ip", "-n", self.node, "addr", "add", f"{self.gateway}/32", "dev", pod.host_ifname)
            sh("ip", "-n", self.node, "link", "set", pod.host_ifname, "up")
            sh("ip", "-n", self.node, "route", "add", f"{pod.ip}/32", "dev", pod.host_ifname, "scope", "link")
            sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/32", "dev", "eth0")
        else:
            sh("ip", "-n", self.node, "link", "set", pod.host_ifname, "master", "br0", "up")
            sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
        if pod.ip6:
            sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", pod.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", pod.netns, "link", "set", "lo", "up")
        if self.routed:
            sh("ip", "-n", pod.netns, "route", "add", f"{self.gateway}/32", "dev", "eth0", "scope", "link")
            sh("ip", "-n", pod.netns, "route", "add", "default", "via", self.gateway, "dev", "eth0")
        out = sh("ip", "-n", self.node, "-o", "link", "show", pod.host_ifname).stdout
        pod.host_ifindex = int(out.split(":", 1)[0])

    def recreate_pod(self, pod: Pod, ip: str) -> None:
        """Deletes the pod (veth pair and namespace) and makes it again with a new IPv4 address."""
        sh("ip", "-n", self.node, "link", "del", pod.host_ifname)  # synchronous, unlike netns teardown
        sh("ip", "netns", "del", pod.netns)
        pod.ip = ip
        self._make_pod(pod)

    @staticmethod
    def _no_ipv6(netns: str) -> None:
        """IPv4-only namespaces: no link-local IPv6 chatter in the event stream."""
        for scope in ("all", "default"):
            sh("ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")

    def down(self) -> None:
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for pod in self.pods:
            sh("ip", "netns", "del", pod.netns, check=False)
        sh("ip", "netns", "del", self.node, check=False)

    def exists(self) -> bool:
        names = sh("ip", "netns", "list").stdout
        return any(line.split()[0].startswith(self.tag) for line in names.splitlines() if line.strip())

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def tc_show(self, pod: Pod) -> str:
        """`tc qdisc` + `tc filter` output for the pod's host veth (empty lines stripped)."""
        parts = [sh("ip", "netns", "exec", self.node, "tc", "qdisc", "show", "dev", pod.host_ifname).stdout]
        for parent in ("ingress", "egress"):
            res = sh(
                "ip",
                "netns",
                "exec",
                self.node,
                "tc",
                "filter",
                "show",
                "dev",
                pod.host_ifname,
                parent,
                check=False,
            )
            parts.append(res.stdout)
        return "".join(parts)

    # -- traffic ----------------------------------------------------------------------------------
    def echo_server(self, pod: Pod, port: int, ipv6: bool = False) -> EchoServer:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((pod.ip6 if ipv6 else pod.ip, port))
            s.listen(64)
            return s

        srv = EchoServer(run_in_netns(pod.netns, make))
        t = threading.Thread(target=srv.serve, daemon=True)
        t.start()
        srv.threads.append(t)
        self._servers.append(srv)
        return srv

    def connect(
        self, src: Pod, dst: Pod, port: int, timeout: float = 1.0, ipv6: bool = False
    ) -> socket.socket | None:
        """A TCP connection from ``src`` to ``dst:port``, or None if it could not be made in time."""
        s = netns_socket(src.netns, socket.AF_INET6 if ipv6 else socket.AF_INET)
        s.settimeout(timeout)
        try:
            s.connect((dst.ip6 if ipv6 else dst.ip, port))
        except OSError:
            s.close()
            return None
        return s

    def udp_send(self, src: Pod, dst: Pod, port: int, count: int, payload: bytes = b"x" * 64) -> None:
        s = netns_socket(src.netns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(count):
                with contextlib.suppress(OSError):
                    s.sendto(payload, (dst.ip, port))
        finally:
            s.close()


def echo_once(sock: socket.socket, payload: bytes = b"ping", timeout: float = 1.0) -> bool:
    """Sends ``payload`` and reads it back; False on timeout or error."""
    sock.settimeout(timeout)
    try:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(len(payload) - len(got))
            if not chunk:
                return False
            got += chunk
        return got == payload
    except OSError:
        return False
