"""L7 DNS policy on real traffic in the payments lab: the node's DNS proxy behind the eBPF redirect (root).

The unlabeled probe (namespace default, no other policy) gets an egress policy that allows kube-dns
on port 53 with DNS rules (``*.stripe.com``, ``api.stripe.com``). Its queries go through the node's
DNS proxy: allowed names are answered by kube-dns (which forwards them to the world's resolver),
others get REFUSED from the proxy, over UDP and TCP; malformed datagrams are counted and dropped;
``hubble observe --protocol dns`` shows the proxy's flows; the proxy killed means no DNS (fail
closed) until the node has restarted it.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root
PROBE = "default/probe"
POLICY = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: probe-dns, namespace: default}
    spec:
      endpointSelector: {}
      egress:
        - toEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}
          toPorts:
            - ports: [{port: "53", protocol: ANY}]
              rules:
                dns:
                  - matchPattern: "*.stripe.com"
                  - matchName: "api.stripe.com"
    """)
# a few junk datagrams to kube-dns, then a real query: prints its rcode
JUNK_THEN_QUERY = textwrap.dedent("""\
    import socket, dns.message, dns.query, dns.rcode
    server = open("/etc/resolv.conf").read().split("nameserver")[1].split()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\\x00" * 7, b"\\xff" * 64):
            s.sendto(junk, (server, 53))
    q = dns.message.make_query("api.stripe.com", "A")
    print(dns.rcode.to_text(dns.query.udp(q, server, timeout=5).rcode()))
    """)
# kills the DNS proxy; a query right away gets nothing (fail closed); then it is answered again
KILL_AND_RETRY = textwrap.dedent("""\
    import os, signal, sys, time, dns.message, dns.query, dns.rcode, dns.exception
    server = open("/etc/resolv.conf").read().split("nameserver")[1].split()[0]
    q = dns.message.make_query("api.stripe.com", "A")
    os.kill(int(sys.argv[1]), signal.SIGKILL)
    time.sleep(0.05)
    try:
        dns.query.udp(q, server, timeout=0.5)
        first = "answered"
    except dns.exception.Timeout:
        first = "nothing"
    deadline = time.monotonic() + 30
    last = "none"
    while time.monotonic() < deadline and last != "NOERROR":
        try:
            last = dns.rcode.to_text(dns.query.udp(q, server, timeout=1).rcode())
        except dns.exception.Timeout:
            pass
    print(first, last)
    """)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("lab") / "state") as lab:
        policy = lab.folder.parent / "probe-dns.yaml"
        policy.write_text(POLICY)
        applied = lab.run("policy", "apply", str(policy))
        assert applied.returncode == 0, applied.stderr
        yield lab


def dig(lab: Lab, name: str, *extra: str) -> str:
    out = lab.exec(PROBE, "dig", "+tries=1", "+time=3", *extra, name, "A")
    assert out.returncode == 0, out.stderr
    return out.stdout


def status_of(text: str) -> str:
    return text.split("status: ", 1)[1].split(",", 1)[0] if "status: " in text else "none"


def dns_proxy(lab: Lab) -> dict:
    out = lab.run("status", "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["dns_proxy"]


def test_allowed_names_answered_others_refused_udp_and_tcp(lab: Lab) -> None:
    for extra in ((), ("+tcp",)):
        answer = dig(lab, "api.stripe.com", *extra)
        assert status_of(answer) == "NOERROR", answer
        assert "192.0.2.2" in answer  # 192.0.2.20 / .21 from the world's resolver
        assert status_of(dig(lab, "example.com", *extra)) == "REFUSED"
        assert status_of(dig(lab, "stripe.com", *extra)) == "REFUSED"
    state = dns_proxy(lab)
    assert state["running"] and state["port"] == 15053
    text = lab.run("status")
    assert text.returncode == 0, text.stderr
    assert f"DNS proxy: port 15053, pid {state['pid']}" in text.stdout


def test_dns_flows_in_hubble_observe(lab: Lab) -> None:
    dig(lab, "api.stripe.com")
    dig(lab, "example.com")
    time.sleep(0.5)  # the access log is batched and published by the node
    flows = lab.flows("--namespace", "default", "--protocol", "dns")
    requests = [f for f in flows if f["l7"]["type"] == "REQUEST"]
    responses = [f for f in flows if f["l7"]["type"] == "RESPONSE"]
    denied = [f for f in requests if f["l7"]["dns"]["query"] == "example.com."]
    assert denied and denied[-1]["verdict"] == "DROPPED"
    assert [p["name"] for p in denied[-1]["egress_denied_by"]] == ["probe-dns"]
    assert denied[-1]["source"]["pod_name"] == "probe" and denied[-1]["destination"]["pod_name"] == "kube-dns"
    answered = [f for f in responses if f["l7"]["dns"]["query"] == "api.stripe.com."]
    assert answered and answered[-1]["verdict"] == "FORWARDED" and answered[-1]["is_reply"]
    assert set(answered[-1]["l7"]["dns"]["ips"]) <= {"192.0.2.20", "192.0.2.21"}
    assert answered[-1]["l7"]["dns"]["observation_source"] == "proxy"
    l7 = lab.flows("--namespace", "default", "--type", "l7", "--verdict", "DROPPED")
    assert l7 and all(f["l7"]["dns"]["query"] in ("example.com.", "stripe.com.") for f in l7)
    # dns_query is a raw-filter field (no flag upstream): an RE2 regex on l7.dns.query
    only = lab.flows("--allowlist", '{"dns_query":["^example\\\\.com\\\\.$"]}')
    assert only and {f["l7"]["dns"]["query"] for f in only} == {"example.com."}
    rest = lab.flows("--namespace", "default", "--protocol", "dns", "--denylist", '{"dns_query":["example"]}')
    assert rest and all("example" not in f["l7"]["dns"]["query"] for f in rest)


def test_malformed_datagrams_are_dropped_and_the_proxy_keeps_serving(lab: Lab) -> None:
    before = dns_proxy(lab).get("malformed", 0)
    out = lab.exec(PROBE, sys.executable, "-c", JUNK_THEN_QUERY)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "NOERROR"
    deadline = time.monotonic() + 5
    while dns_proxy(lab).get("malformed", 0) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dns_proxy(lab)["malformed"] == before + 3


def test_killed_dns_proxy_fails_closed_then_restarts(lab: Lab) -> None:
    pid = dns_proxy(lab)["pid"]
    out = lab.exec(PROBE, sys.executable, "-c", KILL_AND_RETRY, str(pid), timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["nothing", "NOERROR"]
    state = dns_proxy(lab)
    assert state["pid"] != pid and state["restarts"] >= 1
    assert status_of(dig(lab, "example.com")) == "REFUSED"
