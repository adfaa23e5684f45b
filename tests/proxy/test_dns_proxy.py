"""The DNS proxy on real traffic (root): eBPF redirect of port 53, the transparent proxy, kube-dns behind it.

Names of the seed's ``api-egress-fqdn`` (``*.stripe.com``, ``api.stripe.com``) are answered, others get
REFUSED from the proxy (kube-dns never sees them), over UDP and TCP; the access-log records turn into
Hubble's ``dns-request`` / ``dns-response`` flows; malformed and oversized datagrams are counted and
dropped while the proxy keeps serving; the notify protocol holds an answer until the node's ack (or
the maximum delay); the proxy killed means no DNS at all (fail closed), restarted means DNS again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dnstools import REPO, DNSProxyLab, NotifyServer, addresses, rcode  # noqa: E402

from hubblepy.datapath import DatapathUnavailable, check_environment
from hubblepy.parser import EndpointInfo, Parser, StaticResolver

pytestmark = pytest.mark.root
STRIPE_IPS = {"203.0.113.10", "203.0.113.11", "203.0.113.12"}


def require_datapath() -> None:
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DNSProxyLab]:
    require_datapath()
    lab = DNSProxyLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def test_allowed_names_are_answered_and_others_refused_over_udp(lab: DNSProxyLab) -> None:
    answer = lab.ask("api.stripe.com")
    assert rcode(answer) == "NOERROR"
    assert len(addresses(answer)) == 2 and set(addresses(answer)) <= STRIPE_IPS
    assert rcode(lab.ask("Files.Stripe.COM.")) == "NOERROR"  # *.stripe.com, any case
    refused = lab.ask("example.com")
    assert rcode(refused) == "REFUSED"
    assert refused.question[0].name.to_text() == "example.com."
    assert rcode(lab.ask("stripe.com")) == "REFUSED"  # *.stripe.com is not stripe.com
    assert lab.answerer.resolver.queries == 2  # refused names never reach kube-dns
    stats = lab.stats(until=lambda s: s["queries"] >= 4)
    assert (stats["allowed"], stats["denied"]) == (2, 2)


def test_dns_over_tcp_is_judged_the_same(lab: DNSProxyLab) -> None:
    assert rcode(lab.ask("api.stripe.com", tcp=True)) == "NOERROR"
    assert rcode(lab.ask("example.com", tcp=True)) == "REFUSED"
    records = lab.wait_records(3)
    assert [(r["Type"], r["Verdict"], r["TransportProtocol"]) for r in records] == [
        ("Request", "Forwarded", 6),
        ("Response", "Forwarded", 6),
        ("Request", "Denied", 6),
    ]


def test_a_pod_without_dns_rules_is_not_redirected(lab: DNSProxyLab) -> None:
    # frontend has no egress policy: its DNS goes straight to kube-dns, whatever the name
    assert rcode(lab.ask("example.com", pod=lab.frontend)) == "NOERROR"
    time.sleep(1.5)  # a stats file written after the query
    assert lab.stats()["queries"] == 0


def test_records_become_hubble_dns_flows(lab: DNSProxyLab, tmp_path: Path) -> None:
    lab.ask("api.stripe.com")
    lab.ask("example.com")
    records = lab.wait_records(3)
    request, response, denied = records
    client, kube_dns = lab.client, lab.kube_dns
    assert request["DNS"] == {"Query": "api.stripe.com.", "ObservationSource": "proxy", "QTypes": [1]}
    assert (
        request["SourceEndpoint"]["IPv4"] == client.ip
        and request["DestinationAddress"] == f"{kube_dns.ip}:53"
    )
    assert (
        response["SourceAddress"] == f"{kube_dns.ip}:53"
        and response["DestinationEndpoint"]["IPv4"] == client.ip
    )
    assert response["DNS"]["TTL"] == 30 and response["DNS"]["RCode"] == 0
    assert set(response["DNS"]["IPs"]) <= STRIPE_IPS and response["DNS"]["AnswerTypes"] == [1, 1]
    assert response["hubblepy"]["allowed_by"][0]["name"] == "api-egress-fqdn"
    assert denied["Verdict"] == "Denied"
    assert denied["hubblepy"]["denied_by"][0]["name"] == "api-egress-fqdn"
    assert denied["hubblepy"]["policy_log"] == [
        "deny: no DNS rule of [CiliumNetworkPolicy payments/api-egress-fqdn spec.egress[0]] allows example.com."
    ]

    resolver = StaticResolver()
    for pod, ep, name in zip(
        lab.tb.pods, lab.endpoints, ("api-5c4b", "coredns-7f8d", "frontend-1"), strict=True
    ):
        namespace = next(lbl.split("=", 1)[1] for lbl in ep.labels if "pod.namespace=" in lbl)
        resolver.add_endpoint(
            EndpointInfo(
                id=ep.ep_id,
                identity=ep.identity,
                namespace=namespace,
                pod_name=name,
                labels=tuple(sorted(ep.labels)),
                ips=(pod.ip,),
            )
        )
    parser = Parser(resolver, "test-node")
    flows = parser.seven.decode_batch(records, time.time_ns())
    assert parser.parse_errors == 0
    assert [f["l7"]["type"] for f in flows] == ["REQUEST", "RESPONSE", "REQUEST"]
    assert [f["verdict"] for f in flows] == ["FORWARDED", "FORWARDED", "DROPPED"]
    assert flows[0]["Summary"] == "DNS Query api.stripe.com. A"
    ips = ",".join(response["DNS"]["IPs"])
    assert flows[1]["Summary"] == f'DNS Answer "{ips}" TTL: 30 (Proxy api.stripe.com. A)'
    assert flows[2]["egress_denied_by"][0]["name"] == "api-egress-fqdn"
    assert flows[1]["is_reply"] and flows[1]["source"]["pod_name"] == "coredns-7f8d"
    path = tmp_path / "flows.json"
    path.write_text("".join(json.dumps({"flow": f}) + "\n" for f in flows))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", "--input-file", str(path), "-o", "compact"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.splitlines()
    assert len(out) == 3
    assert f"payments/api-5c4b:{request['SourceEndpoint']['Port']} (ID:" in out[0]
    assert "kube-system/coredns-7f8d:53" in out[0]
    assert "dns-request proxy FORWARDED (DNS Query api.stripe.com. A)" in out[0]
    assert f'dns-response proxy FORWARDED (DNS Answer "{ips}" TTL: 30 (Proxy api.stripe.com. A))' in out[1]
    assert "dns-request proxy DROPPED (DNS Query example.com. A)" in out[2]
    dicts = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", "--input-file", str(path), "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.splitlines()
    flow = json.loads(dicts[1])["flow"]
    assert flow["l7"]["dns"]["query"] == "api.stripe.com." and flow["l7"]["dns"]["ttl"] == 30
    assert flow["l7"]["dns"]["rrtypes"] == ["A", "A"] and flow["l7"]["dns"]["observation_source"] == "proxy"


def test_malformed_and_oversized_datagrams_are_counted_and_the_proxy_keeps_serving(lab: DNSProxyLab) -> None:
    good = dns.message.make_query("api.stripe.com", "A").to_wire()
    for junk in (
        b"",
        b"\x00" * 5,
        b"\xff" * 40,
        good[:20],
        good[:2] + b"\x80" + good[3:],
    ):  # the last: a response
        lab.send_raw(junk)
    lab.send_raw(good + b"\x00" * 1300)  # oversized (under the MTU: IP fragments are not reassembled)
    assert rcode(lab.ask("api.stripe.com")) == "NOERROR"
    stats = lab.stats(until=lambda s: s["allowed"] >= 1)
    assert stats["malformed"] == 5 and stats["oversized"] == 1
    assert stats["allowed"] == 1
    # over TCP: a length over the limit closes the connection, the next one is served
    assert lab.tcp_raw(b"\xff\xff" + b"\x00" * 64) == b""
    assert rcode(lab.ask("api.stripe.com", tcp=True)) == "NOERROR"
    assert lab.stats(until=lambda s: s["oversized"] >= 2)["oversized"] == 2
    assert lab.proc is not None and lab.proc.poll() is None


def test_killed_proxy_fails_closed_then_the_restarted_one_serves(lab: DNSProxyLab) -> None:
    assert rcode(lab.ask("api.stripe.com")) == "NOERROR"
    lab.stop_proxy(kill=True)
    before = lab.answerer.resolver.queries
    assert lab.ask("api.stripe.com", timeout=1.0) is None  # UDP: dropped (178), never around the proxy
    assert lab.ask("api.stripe.com", tcp=True, timeout=1.0) is None
    assert lab.answerer.resolver.queries == before
    lab.start_proxy()
    assert rcode(lab.ask("api.stripe.com")) == "NOERROR"
    assert rcode(lab.ask("example.com")) == "REFUSED"


def test_answers_wait_for_the_nodes_ack(tmp_path: Path) -> None:
    require_datapath()
    notify = NotifyServer(tmp_path / "notify.sock")
    lab = DNSProxyLab(tmp_path, notify=notify)
    try:
        answer = lab.ask("api.stripe.com")
        received = time.time_ns()
        assert rcode(answer) == "NOERROR"
        (message,) = notify.messages
        assert message["endpoint_ip"] == lab.client.ip
        assert message["name"] == "api.stripe.com."
        assert sorted(message["ips"]) == sorted(addresses(answer)) and message["ttl"] == 30
        assert message["cnames"] == [] and message["id"] == 1
        assert message["received_ns"] < received  # the node heard of the answer before the client got it
        assert rcode(lab.ask("example.com")) == "REFUSED"  # nothing to announce
        assert rcode(lab.ask("nothing.stripe.com", "AAAA")) == "NOERROR"  # no addresses: not announced
        assert len(notify.messages) == 1
        stats = lab.stats(until=lambda s: s["queries"] >= 3)
        assert stats["notify_acked"] == 1 and stats["notify_timeouts"] == 0
    finally:
        lab.close()
        notify.close()


def test_an_unanswered_notify_releases_the_answer_after_the_maximum_delay(tmp_path: Path) -> None:
    require_datapath()
    notify = NotifyServer(tmp_path / "notify.sock", ack=False)
    lab = DNSProxyLab(tmp_path, notify=notify)
    try:
        lab.stop_proxy()
        lab.start_proxy("--response-max-delay", "0.3")
        start = time.monotonic()
        assert rcode(lab.ask("api.stripe.com")) == "NOERROR"
        assert time.monotonic() - start >= 0.3
        assert len(notify.messages) == 1
        assert lab.stats(until=lambda s: s["notify_timeouts"] >= 1)["notify_timeouts"] == 1
    finally:
        lab.close()
        notify.close()
