"""The no-race ordering through the real DNS proxy (root): resolve, then connect at once, many times.

The DNS proxy's test bed (tests/proxy/dnstools.py: routed pods, the eBPF datapath, the proxy
process redirected to from api's port 53) with the node's side of toFQDNs as the lab runs it: the
notify server (:mod:`hubblepy.fqdn.notify`), the FQDN cache and the policy sync writing the
incremental entries into the same datapath. kube-dns answers ``n<i>.cardprocessor.com`` with an
address of its own (a new IP per name), and the frontend pod (its programs detached) owns
100.64.0.0/16 with a TCP server on 443, standing in for the internet. A client process in api asks
the name through the real proxy and connects to the answer as soon as it has it: every first SYN
must pass (a dropped SYN would cost a 1 s retransmission: the connect budget is 1 s).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import threading
from pathlib import Path

import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from testbed import run_in_netns, sh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))
from dnstools import DNSProxyLab, kube_dns_policy  # noqa: E402

from hubblepy.fqdn.cache import FQDNCache  # noqa: E402
from hubblepy.fqdn.names import NameManager  # noqa: E402
from hubblepy.fqdn.notify import Notification, NotifyServer  # noqa: E402
from hubblepy.lab.pods import Pod  # noqa: E402
from hubblepy.lab.policysync import PolicySync  # noqa: E402
from hubblepy.lab.scenario import PodSpec  # noqa: E402
from hubblepy.parser import StaticResolver  # noqa: E402
from hubblepy.policy import parse_policies  # noqa: E402

pytestmark = pytest.mark.root
ROUNDS = 150
POLICY = kube_dns_policy(
    "chd-egress",
    dns_rules=[{"matchPattern": "*.cardprocessor.com"}],
    egress=[
        {
            "toFQDNs": [{"matchPattern": "*.cardprocessor.com"}],
            "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
        }
    ],
)
CLIENT = textwrap.dedent("""
    import json, socket, sys
    import dns.message, dns.query, dns.rdatatype
    server, rounds = sys.argv[1], int(sys.argv[2])
    out = []
    for i in range(rounds):
        reply = dns.query.udp(dns.message.make_query(f"n{i}.cardprocessor.com", "A"), server, timeout=3)
        ips = [r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset]
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect((ips[0], 443))
            ok = True
        except (OSError, IndexError):
            ok = False
        finally:
            s.close()
        out.append([ips, ok])
    print(json.dumps(out))
    """)


class _Answers:
    """kube-dns: ``n<i>.cardprocessor.com`` A -> 100.64.<i // 250>.<i % 250 + 1>, TTL 60."""

    def answer(self, query: bytes, tcp: bool = False) -> bytes | None:
        msg = dns.message.from_wire(query)
        reply = dns.message.make_response(msg)
        question = msg.question[0]
        label = question.name.labels[0].decode()
        if question.rdtype == dns.rdatatype.A and label.startswith("n") and label[1:].isdigit():
            i = int(label[1:])
            address = f"100.64.{i // 250}.{i % 250 + 1}"
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
        return reply.to_wire()


def _listener(netns: str) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 443))
        s.listen(512)
        return s

    sock = run_in_netns(netns, make)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_the_first_syn_after_a_released_answer_is_never_dropped(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces and eBPF)")
    from hubblepy.datapath import DatapathUnavailable, check_environment

    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    node: dict = {}

    def on_answer(note: Notification) -> None:  # as LabNode._on_dns_answer
        node["sync"].learn(node["cache"].update(note.endpoint_ip, note.name, note.ips, note.ttl))

    notify = NotifyServer(tmp_path / "notify.sock", on_answer)
    notify.start()
    lab = listener = None
    try:
        lab = DNSProxyLab(tmp_path, policy=POLICY, notify=notify, answerer=_Answers())  # type: ignore[arg-type]
        world = lab.frontend
        lab.dp.detach(world.host_ifname, netns=lab.tb.node)
        sh("ip", "-n", world.netns, "route", "add", "local", "100.64.0.0/16", "dev", "lo")
        sh(
            "ip",
            "-n",
            lab.tb.node,
            "route",
            "add",
            "100.64.0.0/16",
            "via",
            world.ip,
            "dev",
            world.host_ifname,
        )
        listener = _listener(world.netns)
        specs = [
            PodSpec("api", "payments", {"app": "api"}),
            PodSpec("kube-dns", "kube-system", {}),
            PodSpec("frontend", "payments", {}),
        ]
        pods = [
            Pod(spec, pod.ip, ep.ep_id, ep.identity, tuple(ep.labels), [])
            for spec, pod, ep in zip(specs, lab.tb.pods, lab.endpoints, strict=True)
        ]
        sync = PolicySync(lab.ids, StaticResolver(), lab.dp)
        cache = FQDNCache(min_ttl=0)
        for pod in pods:
            cache.set_endpoint(pod.ep_id, [pod.ip])
        sync.names = NameManager(cache, sync.allocate_fqdn_ip)
        sync.repo.apply(parse_policies(POLICY))
        sync.sync(pods)
        node.update(sync=sync, cache=cache)
        done = lab.run_python(lab.client, CLIENT, lab.kube_dns.ip, str(ROUNDS), timeout=600)
        assert done.returncode == 0, done.stderr
        results = json.loads(done.stdout)
        stats = lab.stats(until=lambda found: found.get("notify_acked", 0) >= ROUNDS)
    finally:
        if listener is not None:
            listener.close()
        if lab is not None:
            lab.close()
        notify.close()
    assert [ips for ips, _ in results] == [[f"100.64.{i // 250}.{i % 250 + 1}"] for i in range(ROUNDS)]
    assert [i for i, (_, ok) in enumerate(results) if not ok] == []
    assert stats["notify_acked"] >= ROUNDS and stats["notify_timeouts"] == 0
    assert sync.fqdn_stats["incremental"] == ROUNDS and sync.fqdn_stats["full"] == 0
