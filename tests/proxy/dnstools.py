"""The DNS proxy on real traffic: the routed namespace testbed, the eBPF datapath, the real proxy process.

Three pods: p1 is ``payments/api`` (the client, egress policy from the seed's ``api-egress-fqdn``
unless a test gives its own), p2 is ``kube-system/kube-dns`` (a DNS server on :53, UDP and TCP,
answering the world names of :data:`WORLD`, or the caller's answerer), p3 is ``payments/frontend``
(no DNS rules). :func:`kube_dns_policy` writes the usual kind of policy for it. The policy
is compiled as the lab does it; the entries go to the datapath (port 53 to kube-dns redirected to
the proxy port) and the DNS table to the proxy's state file. The proxy runs in the node namespace
(``python -m hubblepy.proxy.dns --transparent``), its access log goes to an in-test reader, and an
optional in-test notify server stands for the node's FQDN cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
from testbed import Testbed, run_in_netns

from hubblepy.datapath import Datapath, proxy_routing
from hubblepy.lab.policysync import datapath_entry
from hubblepy.lab.servers import serve_dns_with
from hubblepy.lab.worlddns import NameEntry, WorldResolver
from hubblepy.policy import (
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.l7 import DNS_PROXY_PORT
from hubblepy.proxy.accesslog import AccessLogReader
from hubblepy.proxy.dns_node import dns_state_document
from hubblepy.proxy.sockets import from_proxy_mark
from hubblepy.proxy.state import write_state

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "fixtures" / "seed"
PREFIX = os.environ.get("HUBBLEPY_TEST_NETNS_PREFIX", "hpt")
WORLD = [
    NameEntry("api.stripe.com", ("203.0.113.10", "203.0.113.11", "203.0.113.12"), 30, 2),
    NameEntry("*.stripe.com", ("203.0.113.20",), 60),
    NameEntry("example.com", ("198.51.100.7",), 300),
]
PODS = (
    ("payments", {"app": "api"}),
    ("kube-system", {"k8s-app": "kube-dns"}),
    ("payments", {"app": "frontend"}),
)
KUBE_DNS_LABELS = {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}


def kube_dns_policy(
    name: str,
    app: str = "api",
    dns_rules: Sequence[Mapping[str, str]] | None = None,
    egress: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A CiliumNetworkPolicy (as JSON, which YAML reads) letting ``payments/<app>`` ask kube-dns on 53/UDP.

    With ``dns_rules`` (``[{"matchPattern": "*.stripe.com"}]``...) every query goes through the DNS
    proxy, which allows only those names; without, the port is allowed at L4 (no proxy). ``egress``:
    further egress rules of the same policy.
    """
    port: dict[str, Any] = {"ports": [{"port": "53", "protocol": "UDP"}]}
    if dns_rules is not None:
        port["rules"] = {"dns": [dict(rule) for rule in dns_rules]}
    to_kube_dns = {"toEndpoints": [{"matchLabels": KUBE_DNS_LABELS}], "toPorts": [port]}
    return json.dumps(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": "payments"},
            "spec": {
                "endpointSelector": {"matchLabels": {"app": app}},
                "egress": [to_kube_dns, *(dict(rule) for rule in egress)],
            },
        }
    )


class _Answerer:
    def __init__(self) -> None:
        self.resolver = WorldResolver(WORLD)
        self.seen: list[str] = []  # the source address of each query

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        return self.resolver.answer(query)


class NotifyServer:
    """The node's end of the notify protocol: records each datagram, acknowledges unless told not to."""

    def __init__(self, path: Path, ack: bool = True) -> None:
        self.path = path
        self.ack = ack
        self.messages: list[dict] = []
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(str(path))
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import orjson

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while True:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        break
                    if not data:
                        break
                    message = orjson.loads(data)
                    message["received_ns"] = time.time_ns()
                    self.messages.append(message)
                    if self.ack:
                        conn.send(orjson.dumps({"id": message["id"]}))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class DNSProxyLab:
    def __init__(
        self,
        folder: Path,
        policy: str | None = None,
        notify: NotifyServer | None = None,
        dns_server: bool = True,
        answerer: Any = None,
    ) -> None:
        """``answerer``: what kube-dns's server answers with (``answer(query, tcp)``; default the
        :data:`WORLD` names); ``dns_server`` False: no DNS server on kube-dns (the caller runs its
        own on :53)."""
        self.folder = folder
        self.dns_server = dns_server
        self.answerer = answerer if answerer is not None else _Answerer()
        self.tb = Testbed(3, prefix=PREFIX, routed=True)
        self.dp: Datapath | None = None
        self.reader: AccessLogReader | None = None
        self.servers: list[Any] = []
        self.proc: subprocess.Popen | None = None
        self.records: list[dict] = []
        self.notify = notify
        self.state_path = folder / "proxy-dns-state.json"
        self.stats_path = folder / "proxy-dns-stats.json"
        self.log_path = folder / "access.sock"
        self.policy_text = policy or (SEED / "api-egress-fqdn.yaml").read_text()
        try:
            self._up()
        except BaseException:
            self.close()
            raise

    @property
    def client(self):
        return self.tb.pods[0]

    @property
    def kube_dns(self):
        return self.tb.pods[1]

    @property
    def frontend(self):
        return self.tb.pods[2]

    def _up(self) -> None:
        tb = self.tb
        tb.up()
        proxy_routing.install(tb.node)
        self.dp = Datapath()
        ids = IdentityAllocator()
        self.endpoints: list[Endpoint] = []
        for number, (pod, (namespace, labels)) in enumerate(zip(tb.pods, PODS, strict=True), 1):
            pod_set = pod_labels(namespace, labels)
            ep = Endpoint(number, ids.allocate(pod_set), pod_set)
            self.endpoints.append(ep)
            self.dp.upsert_endpoint(number, pod.host_ifindex, ep.identity, addresses=[pod.ip])
            self.dp.set_ipcache(f"{pod.ip}/32", ep.identity)
        self.ids = ids
        self.cookies = CookieJar()
        self.compiled = compile_policies(
            parse_policies(self.policy_text), self.endpoints, dict(ids.items()), self.cookies
        )
        for ep in self.endpoints:
            info = self.compiled.endpoints.get(ep.ep_id)
            self.dp.set_enforcement(
                ep.ep_id,
                ingress=bool(info and info.ingress_enforced),
                egress=bool(info and info.egress_enforced),
            )
            for direction in (INGRESS, EGRESS):
                entries = [
                    datapath_entry(k, v)
                    for k, v in self.compiled.entries.items()
                    if k.ep_id == ep.ep_id and k.direction == direction
                ]
                self.dp.set_policy_entries(ep.ep_id, direction, entries)
        for pod in tb.pods:
            self.dp.attach(pod.host_ifname, netns=tb.node)
        if self.dns_server:
            servers = run_in_netns(
                self.kube_dns.netns, lambda: serve_dns_with(self.answerer, 53, [self.kube_dns.ip])
            )
            for server in servers:
                threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers = servers
        self.reader = AccessLogReader(str(self.log_path), self.records.append)
        self.write_state()
        self.start_proxy()

    def write_state(self) -> None:
        pods = self.tb.pods
        document = dns_state_document(
            revision=int(time.time() * 1000),
            dns=self.compiled.dns,
            cookies=self.cookies,
            policy_revision=1,
            uids={},
            endpoints=[(ep.ep_id, pod.ip, ep.identity) for ep, pod in zip(self.endpoints, pods, strict=True)],
            ipcache=[(f"{pod.ip}/32", ep.identity) for ep, pod in zip(self.endpoints, pods, strict=True)],
            identities=dict(self.ids.items()),
            node={"name": "test-node", "ipv4": self.tb.gateway},
        )
        write_state(self.state_path, document)

    def start_proxy(self, *extra: str) -> None:
        args = [
            "ip",
            "netns",
            "exec",
            self.tb.node,
            sys.executable,
            "-m",
            "hubblepy.proxy.dns",
            "--listen",
            f"0.0.0.0:{DNS_PROXY_PORT}",
            "--transparent",
            "--mark",
            hex(from_proxy_mark()),
            "--state",
            str(self.state_path),
            "--access-log",
            str(self.log_path),
            "--stats",
            str(self.stats_path),
            *extra,
        ]
        if self.notify is not None:
            args += ["--fqdn-notify", str(self.notify.path)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_repo_env(), text=True
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert "listening" in line, self.proc.stderr.read()  # type: ignore[union-attr]

    def stop_proxy(self, kill: bool = False) -> str:
        err = ""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill() if kill else proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            err = proc.stderr.read()  # type: ignore[union-attr]
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        return err

    def run_python(self, pod: Any, code: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """``python -c code args`` in ``pod``'s namespace, this repository first on its path; output captured."""
        command = ["ip", "netns", "exec", pod.netns, sys.executable, "-c", code, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_repo_env())

    def stats(self, until: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        """The proxy's counters file (rewritten every second), once ``until(stats)`` holds or at the timeout."""
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {}
        while True:
            with contextlib.suppress(OSError, ValueError):
                found = json.loads(self.stats_path.read_text())
            if found and (until is None or until(found)) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def ask(
        self,
        name: str,
        rdtype: str = "A",
        tcp: bool = False,
        pod: Any = None,
        timeout: float = 3.0,
    ) -> dns.message.Message | None:
        """One query from ``pod`` (the client by default) to kube-dns; None when nothing came back."""
        pod = pod or self.client
        query = dns.message.make_query(name, rdtype)
        server = self.kube_dns.ip

        def run() -> dns.message.Message | None:
            try:
                if tcp:
                    return dns.query.tcp(query, server, timeout=timeout)
                return dns.query.udp(query, server, timeout=timeout)
            except (OSError, dns.exception.Timeout):
                return None

        return run_in_netns(pod.netns, run)

    def send_raw(self, payload: bytes, pod: Any = None) -> None:
        pod = pod or self.client

        def run() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(payload, (self.kube_dns.ip, 53))

        run_in_netns(pod.netns, run)

    def tcp_raw(self, payload: bytes, timeout: float = 3.0) -> bytes:
        """Bytes sent on a TCP connection to kube-dns:53 from the client; what came back before it closed."""

        def run() -> bytes:
            with socket.create_connection((self.kube_dns.ip, 53), timeout=timeout) as s:
                s.sendall(payload)
                got = b""
                with contextlib.suppress(OSError):
                    while chunk := s.recv(4096):
                        got += chunk
                return got

        return run_in_netns(self.client.netns, run)

    def wait_records(self, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.records)

    def close(self) -> None:
        self.stop_proxy()
        if self.reader is not None:
            self.reader.close()
        for server in self.servers:
            server.shutdown()
            server.server_close()
        if self.dp is not None:
            self.dp.close()
        self.tb.down()


def _repo_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def rcode(msg: dns.message.Message | None) -> str:
    return "none" if msg is None else dns.rcode.to_text(msg.rcode())


def addresses(msg: dns.message.Message | None) -> list[str]:
    if msg is None:
        return []
    return [r.address for rrset in msg.answer for r in rrset if hasattr(r, "address")]
