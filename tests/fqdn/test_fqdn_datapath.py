"""toFQDNs on real traffic: the real eBPF datapath, a real notify client process, real TCP.

A routed testbed: pod p1 ("payments/api", the datapath attached, egress under an FQDN policy) and
pod p2 standing in for the internet (no datapath: a local route makes it own all of 203.0.113.0/24,
an echo server answers on port 443 of every address). The "DNS proxy" is a separate process in
p1's namespace speaking the notify protocol: it sends an answer, waits for the node's ack, and
connects at once, as a client does when its answer is released.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from testbed import Testbed, echo_once, netns_socket, run_in_netns, sh

from hubblepy.fqdn.cache import SOURCE_CONNECTION, FQDNCache
from hubblepy.fqdn.conntrack import live_connections
from hubblepy.fqdn.names import NameManager
from hubblepy.fqdn.notify import Notification, NotifyServer
from hubblepy.lab.pods import Pod
from hubblepy.lab.policysync import PolicySync
from hubblepy.lab.scenario import PodSpec
from hubblepy.parser import StaticResolver
from hubblepy.policy import IdentityAllocator, parse_policies, pod_labels

PREFIX = os.environ.get("HUBBLEPY_TEST_NETNS_PREFIX", "hpx-")
WORLD = "203.0.113"
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-egress-fqdn, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
    - toFQDNs:
        - matchName: api.stripe.com
        - matchPattern: "*.cardprocessor.com"
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""

# the "DNS proxy": for each line of stdin ({"name", "ips", "ttl", "connect"}), notify, wait for the
# ack, then connect to every IP at once (1 s SYN budget); prints one JSON result per line
PROXY = textwrap.dedent(
    """
    import json, socket, sys, time
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    notify.connect(sys.argv[1])
    notify.settimeout(5)
    for n, line in enumerate(sys.stdin):
        job = json.loads(line)
        result = {"connected": []}
        if job.get("notify", True):
            t0 = time.perf_counter_ns()
            notify.send(json.dumps({"id": n, "endpoint_ip": sys.argv[2], "name": job["name"],
                                    "ips": job["ips"], "ttl": job["ttl"], "cnames": [],
                                    "time_ns": time.time_ns()}).encode())
            ack = json.loads(notify.recv(65536))
            result["ack"] = ack
            result["ack_us"] = (time.perf_counter_ns() - t0) / 1000
        for ip in job["ips"]:
            s = socket.socket()
            s.settimeout(1.0)
            try:
                s.connect((ip, 443))
                s.sendall(b"ping")
                result["connected"].append(s.recv(4) == b"ping")
            except OSError:
                result["connected"].append(False)
            finally:
                s.close()
        print(json.dumps(result), flush=True)
    """
)


def _require_datapath() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and eBPF)")
    from hubblepy.datapath import DatapathUnavailable, check_environment

    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class Env:
    tb: Testbed
    dp: object
    sync: PolicySync
    cache: FQDNCache
    server: NotifyServer
    api: Pod

    def proxy(self, jobs: list[dict]) -> list[dict]:
        """Runs the notify client process in the api pod's namespace over ``jobs``."""
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.tb.pods[0].netns,
                sys.executable,
                "-c",
                PROXY,
                str(self.server.path),
                self.api.ip,
            ],
            input="".join(json.dumps(j) + "\n" for j in jobs),
            capture_output=True,
            text=True,
            timeout=60 + 3 * len(jobs),
            check=True,
        )
        return [json.loads(line) for line in done.stdout.splitlines()]

    def connect(self, ip: str) -> socket.socket | None:
        s = netns_socket(self.tb.pods[0].netns)
        s.settimeout(1.0)
        try:
            s.connect((ip, 443))
        except OSError:
            s.close()
            return None
        return s

    def gc(self) -> list[tuple[str, str]]:
        gone = self.cache.gc(lambda ep, ip: (ep, ip) in live_connections(self.dp))
        self.sync.expire(gone)
        return gone


class EventList(list):
    """Agent events as published (the lab node publishes them into its observer)."""

    def publish_agent_event(self, time_ns: int, event: dict) -> None:
        self.append(event)


def _world_server(netns: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 443))
        s.listen(256)
        return s

    sock = run_in_netns(netns, make)

    def echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return sock


@pytest.fixture
def env(tmp_path) -> Iterator[Env]:
    _require_datapath()
    from hubblepy.datapath import Datapath

    tb = Testbed(2, prefix=f"{PREFIX}fq", routed=True)
    dp = server = listener = None
    try:
        tb.up()
        api_pod, world = tb.pods
        sh("ip", "-n", world.netns, "route", "add", "local", f"{WORLD}.0/24", "dev", "lo")
        sh("ip", "-n", tb.node, "route", "add", f"{WORLD}.0/24", "via", world.ip, "dev", world.host_ifname)
        listener = _world_server(world.netns)
        dp = Datapath()
        dp.set_conntrack_lifetimes(tcp=21600, non_tcp=60, closing=1)
        ids = IdentityAllocator()
        labels = tuple(pod_labels("payments", {"app": "api"}))
        identity = ids.allocate(labels)
        api = Pod(PodSpec("api", "payments", {"app": "api"}), api_pod.ip, 1, identity, labels, [])
        dp.upsert_endpoint(1, api_pod.host_ifindex, identity, addresses=[api_pod.ip])
        dp.set_ipcache(f"{api_pod.ip}/32", identity)
        dp.attach(api_pod.host_ifname, netns=tb.node)
        sync = PolicySync(ids, StaticResolver(), dp)
        cache = FQDNCache(min_ttl=0)
        cache.set_endpoint(1, [api_pod.ip])
        sync.names = NameManager(cache, sync.allocate_fqdn_ip)
        sync.repo.apply(parse_policies(POLICY))
        sync.sync([api])

        def on_answer(note: Notification) -> None:
            update = cache.update(note.endpoint_ip, note.name, note.ips, note.ttl)
            sync.learn(update)

        server = NotifyServer(tmp_path / "notify.sock", on_answer)
        server.start()
        yield Env(tb, dp, sync, cache, server, api)
    finally:
        if server is not None:
            server.close()
        if listener is not None:
            listener.close()
        if dp is not None:
            dp.close()
        tb.down()


def test_no_race_the_first_syn_after_the_ack_is_never_dropped(env):
    (before,) = env.proxy(
        [{"name": "x.cardprocessor.com", "ips": [f"{WORLD}.250"], "ttl": 60, "notify": False}]
    )
    assert before["connected"] == [False]  # no answer yet: the policy denies the IP
    rounds = 200
    jobs = [
        {"name": f"n{i}.cardprocessor.com", "ips": [f"{WORLD}.{1 + i % 240}"], "ttl": 60}
        for i in range(rounds)
    ]
    results = env.proxy(jobs)
    assert [r["ack"] for r in results[:3]] == [{"id": 0}, {"id": 1}, {"id": 2}]
    failed = [jobs[i] for i, r in enumerate(results) if r["connected"] != [True]]
    assert failed == []
    assert env.sync.fqdn_stats["incremental"] == rounds  # every new IP took the incremental path
    assert env.sync.fqdn_stats["full"] == 0


def test_a_name_no_selector_matches_stays_denied(env):
    (result,) = env.proxy([{"name": "example.com", "ips": [f"{WORLD}.80"], "ttl": 60}])
    assert result["ack"] == {"id": 0} and result["connected"] == [False]


def test_rotating_answers_are_followed(env):
    name = "eu.cardprocessor.com"
    results = env.proxy(
        [
            {"name": name, "ips": [f"{WORLD}.10"], "ttl": 60},
            {"name": name, "ips": [f"{WORLD}.11"], "ttl": 60},
            {"name": name, "ips": [f"{WORLD}.12", f"{WORLD}.10"], "ttl": 60},
        ]
    )
    assert [r["connected"] for r in results] == [[True], [True], [True, True]]
    assert env.cache.ips_of(name + ".") == {f"{WORLD}.10", f"{WORLD}.11", f"{WORLD}.12"}
    for ip in ("10", "11", "12"):  # every IP of the name still allowed
        sock = env.connect(f"{WORLD}.{ip}")
        assert sock is not None
        sock.close()


def test_allowed_name_answering_with_the_ip_of_a_denied_name(env):
    # example.com (no toFQDNs selects it) lives at .80; api.stripe.com's answer names the same IP:
    # the allow is by IP, so the IP is reachable (as in Cilium), and flows name only the allowed name
    (denied,) = env.proxy([{"name": "example.com", "ips": [f"{WORLD}.80"], "ttl": 60}])
    assert denied["connected"] == [False]
    (allowed,) = env.proxy([{"name": "api.stripe.com", "ips": [f"{WORLD}.80"], "ttl": 60}])
    assert allowed["connected"] == [True]
    assert env.cache.names_for(1, f"{WORLD}.80") == ["api.stripe.com", "example.com"]
    assert env.sync.names is not None
    assert [str(s) for s in env.sync.names.selectors_of(f"{WORLD}.80")] == ["matchName: api.stripe.com"]


def test_ttl_expiry_removes_the_allow_while_an_open_connection_survives(env):
    kept, dropped = f"{WORLD}.30", f"{WORLD}.31"
    events = EventList()
    env.sync.events.attach(events)
    (result,) = env.proxy([{"name": "us.cardprocessor.com", "ips": [kept, dropped], "ttl": 1}])
    assert result["connected"] == [True, True]
    conn = env.connect(kept)
    assert conn is not None and echo_once(conn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and env.cache.ips_of("us.cardprocessor.com.") != {kept}:
        time.sleep(0.2)
        env.gc()
    assert env.cache.ips_of("us.cardprocessor.com.") == {kept}
    (entry,) = env.cache.entries()
    assert entry.source == SOURCE_CONNECTION
    assert env.connect(dropped) is None  # expired, no connection: denied again
    ipcache = [(e["type"], e["ipcache_update"]) for e in events if "ipcache_update" in e]
    identity = {u["cidr"]: u["identity"] for kind, u in ipcache if kind == "IPCACHE_UPSERTED"}
    assert set(identity) == {f"{kept}/32", f"{dropped}/32"}
    assert ipcache[-1] == (
        "IPCACHE_DELETED",
        {"cidr": f"{dropped}/32", "identity": identity[f"{dropped}/32"]},
    )
    assert echo_once(conn)  # the open connection goes on
    conn.close()
    deadline = time.monotonic() + 15  # closing lifetime 1 s: then the zombie goes too
    while time.monotonic() < deadline and env.cache.entries():
        time.sleep(0.3)
        env.gc()
    assert env.cache.entries() == []
    assert env.connect(kept) is None
