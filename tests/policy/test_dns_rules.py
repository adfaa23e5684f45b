"""L7 DNS rules: Cilium's matchName / matchPattern semantics, parsing, redirect entries, the DNS table.

The name table is Cilium's documented behaviour (``*`` alone matches every name; ``*`` elsewhere is
zero or more characters of one label; names compare case-insensitively with or without the final
dot). The compiler part checks the seed's ``api-egress-fqdn``: its port 53 entries (UDP and TCP) carry
the DNS proxy's port, the DNS table (after its JSON round trip, as the proxy loads it) allows the
names of the rule and nothing else, and HTTP rules of the same endpoint stay in the HTTP table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hubblepy.policy import (
    ACTION_ALLOW,
    EGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyError,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.dns import DNSRule, decide, dns_table_from_json, dns_table_to_json, fqdn
from hubblepy.policy.l7 import DNS_PROXY_PORT, HTTP_PROXY_PORT

UDP, TCP = 17, 6
SEED = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "seed"

NAMES = [
    # (selector, name, matches)
    (DNSRule(match_name="api.stripe.com"), "api.stripe.com", True),
    (DNSRule(match_name="api.stripe.com"), "api.stripe.com.", True),
    (DNSRule(match_name="api.stripe.com"), "API.Stripe.COM", True),
    (DNSRule(match_name="API.STRIPE.COM."), "api.stripe.com", True),
    (DNSRule(match_name="api.stripe.com"), "www.stripe.com", False),
    (DNSRule(match_name="api.stripe.com"), "x.api.stripe.com", False),
    (DNSRule(match_name="api.stripe.com"), "api.stripe.co", False),
    (DNSRule(match_pattern="*"), "anything.example.", True),
    (DNSRule(match_pattern="*"), ".", True),
    (DNSRule(), "anything.example.", True),
    (DNSRule(match_pattern="*.cilium.io"), "sub.cilium.io", True),
    (DNSRule(match_pattern="*.cilium.io"), "SUB.Cilium.IO.", True),
    (DNSRule(match_pattern="*.cilium.io"), "cilium.io", False),
    (DNSRule(match_pattern="*.cilium.io"), "a.b.cilium.io", False),
    (DNSRule(match_pattern="*.cilium.io"), "subcilium.io", False),
    (DNSRule(match_pattern="*.cilium.io."), "sub.cilium.io", True),
    (DNSRule(match_pattern="sub*.cilium.io"), "sub.cilium.io", True),
    (DNSRule(match_pattern="sub*.cilium.io"), "sub-1.cilium.io", True),
    (DNSRule(match_pattern="sub*.cilium.io"), "xsub.cilium.io", False),
    (DNSRule(match_pattern="*cilium.io"), "cilium.io", True),
    (DNSRule(match_pattern="*cilium.io"), "mycilium.io", True),
    (DNSRule(match_pattern="*cilium.io"), "my.cilium.io", False),
    (DNSRule(match_pattern="**.cilium.io"), "a.cilium.io", True),
    (DNSRule(match_pattern="**.cilium.io"), "a.b.cilium.io", True),
    (DNSRule(match_pattern="**.cilium.io"), "cilium.io", False),
    (DNSRule(match_pattern="api.*.com"), "api.stripe.com", True),
    (DNSRule(match_pattern="api.*.com"), "api.a.b.com", False),
    (DNSRule(match_pattern="a.b"), "aXb", False),  # the dot is literal
    (DNSRule(match_pattern="*.cardprocessor.com"), "eu.cardprocessor.com", True),
    (DNSRule(match_pattern="*.cardprocessor.com"), "cardprocessor.com.evil.com", False),
]


@pytest.mark.parametrize(("rule", "name", "matches"), NAMES, ids=[f"{r.describe()}~{n}" for r, n, _ in NAMES])
def test_name_semantics(rule: DNSRule, name: str, matches: bool) -> None:
    assert rule.matches(name) is matches


def test_fqdn_lowercases_and_adds_the_final_dot() -> None:
    assert fqdn("Api.Stripe.com") == "api.stripe.com."
    assert fqdn("api.stripe.com.") == "api.stripe.com."


class World:
    def __init__(self) -> None:
        self.ids = IdentityAllocator()
        self.cookies = CookieJar()
        self.endpoints: dict[str, Endpoint] = {}
        for ns, app, key in (("payments", "api", "app"), ("payments", "frontend", "app")):
            labels = pod_labels(ns, {key: app})
            self.endpoints[app] = Endpoint(100 + len(self.endpoints), self.ids.allocate(labels), labels)
        labels = pod_labels("kube-system", {"k8s-app": "kube-dns"})
        self.endpoints["kube-dns"] = Endpoint(200, self.ids.allocate(labels), labels)

    def compile(self, text: str):
        out = compile_policies(
            parse_policies(text), self.endpoints.values(), dict(self.ids.items()), self.cookies
        )
        return out, dns_table_from_json(dns_table_to_json(out.dns))


def egress_dns(rules: str, ports: str = '[{port: "53", protocol: ANY}]', extra: str = "") -> str:
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: dns-out, namespace: payments}}
spec:
  endpointSelector: {{matchLabels: {{app: api}}}}
  egress:
    - toEndpoints: [{{matchLabels: {{k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}}}]
      toPorts:
        - ports: {ports}
          rules: {{dns: {rules}}}
{extra}"""


def test_seed_fqdn_policy_redirects_udp_and_tcp_53_and_its_table_allows_only_its_names() -> None:
    world = World()
    out, table = world.compile((SEED / "api-egress-fqdn.yaml").read_text())
    api, dns_id = world.endpoints["api"], world.endpoints["kube-dns"].identity
    entries = {
        (k.identity, k.dport, k.proto): (v.action, v.proxy_port)
        for k, v in out.entries.items()
        if k.ep_id == api.ep_id and k.direction == EGRESS
    }
    assert entries[(dns_id, 53, UDP)] == (ACTION_ALLOW, DNS_PROXY_PORT)
    assert entries[(dns_id, 53, TCP)] == (ACTION_ALLOW, DNS_PROXY_PORT)
    assert not out.l7  # no HTTP rules: the HTTP proxy's table stays empty
    for proto in (UDP, TCP):
        rules = table.rule_set(api.ep_id, EGRESS, dns_id, 53, proto)
        assert rules is not None
        for name, allowed in (
            ("api.stripe.com.", True),
            ("files.stripe.com", True),
            ("Files.STRIPE.com.", True),
            ("stripe.com.", False),
            ("example.com.", False),
            ("a.b.stripe.com.", False),
        ):
            verdict = decide(rules.contributions, name)
            assert verdict.allowed is allowed, name
            if allowed:
                assert verdict.allowed_by and not verdict.denied_by
            else:
                (cookie,) = verdict.denied_by
                assert world.cookies.lookup(cookie).describe() == (
                    "CiliumNetworkPolicy payments/api-egress-fqdn spec.egress[0]"
                )
    # a peer the DNS rule does not select is not redirected (and not allowed)
    assert table.rule_set(api.ep_id, EGRESS, world.endpoints["frontend"].identity, 53, UDP) is None


def test_protocol_any_gives_udp_and_tcp_only() -> None:
    world = World()
    out, _ = world.compile(egress_dns('[{matchName: "api.stripe.com"}]'))
    protos = sorted(k.proto for k, v in out.entries.items() if k.dport == 53)
    assert protos == [TCP, UDP]
    assert all(v.proxy_port == DNS_PROXY_PORT for k, v in out.entries.items() if k.dport == 53)


def test_an_l4_allow_of_the_same_peer_and_port_allows_every_name_through_the_proxy() -> None:
    world = World()
    extra = """    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
      toPorts: [{ports: [{port: "53", protocol: UDP}]}]
"""
    out, table = world.compile(egress_dns('[{matchName: "api.stripe.com"}]', extra=extra))
    api, dns_id = world.endpoints["api"], world.endpoints["kube-dns"].identity
    udp = table.rule_set(api.ep_id, EGRESS, dns_id, 53, UDP)
    assert decide(udp.contributions, "example.com.").allowed  # wildcarded by the L4 allow
    tcp = table.rule_set(api.ep_id, EGRESS, dns_id, 53, TCP)
    assert not decide(tcp.contributions, "example.com.").allowed


def test_http_and_dns_rules_of_one_endpoint_go_to_their_own_proxies() -> None:
    world = World()
    extra = """    - toEndpoints: [{matchLabels: {app: frontend}}]
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
          rules: {http: [{method: GET}]}
"""
    out, table = world.compile(egress_dns('[{matchPattern: "*"}]', extra=extra))
    ports = {(k.dport, k.proto): v.proxy_port for k, v in out.entries.items() if v.proxy_port}
    assert ports == {(53, UDP): DNS_PROXY_PORT, (53, TCP): DNS_PROXY_PORT, (8080, TCP): HTTP_PROXY_PORT}
    api = world.endpoints["api"]
    assert out.l7.rule_set(api.ep_id, EGRESS, world.endpoints["frontend"].identity, 8080, TCP) is not None
    assert out.l7.rule_set(api.ep_id, EGRESS, world.endpoints["kube-dns"].identity, 53, UDP) is None
    assert table.rule_set(api.ep_id, EGRESS, world.endpoints["frontend"].identity, 8080, TCP) is None


@pytest.mark.parametrize(
    ("rules", "ports", "message"),
    [
        (
            '[{matchName: "a.com", matchPattern: "*.a.com"}]',
            None,
            "needs exactly one of matchName or matchPattern",
        ),
        ("[{}]", None, "needs exactly one of matchName or matchPattern"),
        ('[{matchName: "bad name"}]', None, "is not a valid DNS name"),
        ('[{matchPattern: "a/b"}]', None, "is not a valid DNS name pattern"),
        ('[{matchName: "a.com", port: 53}]', None, "unknown field"),
        (
            '[{matchName: "a.com"}]',
            '[{port: "53", protocol: SCTP}]',
            "DNS rules need protocol UDP, TCP or ANY",
        ),
        (
            '[{matchName: "a.com"}]',
            '[{port: "53", endPort: 60, protocol: UDP}]',
            "do not support port ranges",
        ),
        ('[{matchName: "a.com"}]', '[{port: "5353", protocol: UDP}]', "only allowed on port 53"),
        ("{matchName: a.com}", None, "must be a list"),
    ],
)
def test_bad_dns_rules_are_refused_with_the_field(rules: str, ports: str | None, message: str) -> None:
    args = {"ports": ports} if ports is not None else {}
    with pytest.raises(PolicyError) as info:
        parse_policies(egress_dns(rules, **args))
    assert message in str(info.value)
    assert "spec.egress[0].toPorts[0]" in str(info.value)


def test_dns_rules_on_ingress_are_refused() -> None:
    text = (
        egress_dns('[{matchName: "a.com"}]')
        .replace("egress:", "ingress:")
        .replace("toEndpoints", "fromEndpoints")
    )
    with pytest.raises(
        PolicyError, match=r"spec.ingress\[0\].toPorts\[0\].rules.dns: DNS rules are not allowed on ingress"
    ):
        parse_policies(text)


def test_empty_dns_list_is_plain_l4() -> None:
    world = World()
    out, table = world.compile(egress_dns("[]"))
    assert not out.redirects() and not table
