"""The full L3/L4 language: documentation examples load, bad input is rejected whole, and the compiled
policy-map entries say what the semantics say (deny precedence, CIDR identities and holes, ranges,
named ports, entities, NetworkPolicy isolation, CCNP across namespaces, additive union)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubblepy.policy import (
    ACTION_ALLOW,
    ACTION_DENY,
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyError,
    PolicyKey,
    compile_policies,
    load_policy_file,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.cidr import policy_prefixes
from hubblepy.policy.identity import FIRST_CIDR_IDENTITY, LOCAL_SCOPE

EXAMPLES = Path(__file__).resolve().parent / "language_examples"
TCP, UDP, SCTP = 6, 17, 132
HOST, WORLD, WORLD4 = 1, 2, 9
NAMESPACES = {"shop": {"team": "shop"}, "tools": {"team": "tools"}, "kube-system": {}}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_documentation_examples_load_without_warnings(path: Path) -> None:
    policies = load_policy_file(path)
    assert policies
    assert [w for p in policies for w in p.warnings] == []


class World:
    """Pods in namespaces with labels and named ports, identities (CIDR ones included), a compiler."""

    def __init__(self) -> None:
        self.ids = IdentityAllocator()
        self.cookies = CookieJar()
        self.endpoints: dict[str, Endpoint] = {}
        self.add("shop", "web", {"app": "web"}, (("http", 8080, TCP),))
        self.add("shop", "db", {"app": "db"}, (("pg", 5432, TCP),))
        self.add("shop", "client", {"app": "client"})
        self.add("tools", "debug", {"app": "debug"})

    def add(self, ns: str, name: str, labels: dict, ports: tuple = ()) -> None:
        lab = pod_labels(ns, labels, namespace_labels=NAMESPACES[ns])
        ep = Endpoint(100 + len(self.endpoints), self.ids.allocate(lab), lab, ports)
        self.endpoints[f"{ns}/{name}"] = ep

    def ident(self, key: str) -> int:
        return self.endpoints[key].identity

    def compile(self, text: str):
        policies = parse_policies(text)
        for prefix in sorted(policy_prefixes(policies)):
            self.ids.allocate_cidr(prefix)
        named = {ep.identity: ep.named_ports for ep in self.endpoints.values()}
        return compile_policies(
            policies, self.endpoints.values(), dict(self.ids.items()), self.cookies, named_ports=named
        )

    def entries(self, out, key: str, direction: int) -> dict[tuple, int]:
        ep = self.endpoints[key].ep_id
        return {
            (k.identity, k.dport, k.proto, k.end_port): v.action
            for k, v in out.entries.items()
            if k.ep_id == ep and k.direction == direction
        }


def cnp(ns: str, name: str, body: str) -> str:
    head = (
        f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
    )
    return head + body


def test_cidr_set_with_except_selects_cidr_identities_outside_the_hole() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "c",
            """spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
""",
        )
    )
    cidrs = w.ids.cidr_identities()
    assert set(cidrs) == {"192.0.2.0/24", "192.0.2.128/25"}
    assert min(cidrs.values()) == FIRST_CIDR_IDENTITY and min(cidrs.values()) > LOCAL_SCOPE
    assert w.entries(out, "shop/client", EGRESS) == {(cidrs["192.0.2.0/24"], 80, TCP, 0): ACTION_ALLOW}
    assert w.ids.labels_of(cidrs["192.0.2.0/24"]) == ("cidr:192.0.2.0/24", "reserved:world")


def test_world_entity_covers_cidr_identities_and_selectors_never_match_them() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "c",
            """spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
    - toEntities: [world]
    - toEndpoints: [{}]
    - toCIDR: [198.51.100.0/24]
""",
        )
    )
    cidr = w.ids.cidr_identities()["198.51.100.0/24"]
    got = {k[0] for k in w.entries(out, "shop/client", EGRESS)}
    assert {WORLD, WORLD4, 10, cidr} <= got
    shop = {w.ident(k) for k in w.endpoints if k.startswith("shop/")}
    assert got == {WORLD, WORLD4, 10, cidr} | shop


def test_zero_prefix_includes_plain_world() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "c",
            "spec:\n  endpointSelector: {matchLabels: {app: client}}\n  egress:\n    - toCIDR: [0.0.0.0/0]\n",
        )
    )
    assert {WORLD, WORLD4} <= {k[0] for k in w.entries(out, "shop/client", EGRESS)}


def test_cluster_host_and_all_entities() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "e",
            """spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEntities: [cluster]
  egress:
    - toEntities: [all]
""",
        )
    )
    ingress = {k[0] for k in w.entries(out, "shop/web", INGRESS)}
    assert {w.ident(k) for k in w.endpoints} <= ingress
    assert HOST in ingress and WORLD not in ingress
    assert w.entries(out, "shop/web", EGRESS) == {(0, 0, 0, 0): ACTION_ALLOW}


def test_deny_replaces_allow_and_engages_default_deny() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "d",
            """spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEntities: [all]
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: tools}}]
""",
        )
    )
    got = w.entries(out, "shop/web", INGRESS)
    assert got[(w.ident("tools/debug"), 0, 0, 0)] == ACTION_DENY
    assert got[(0, 0, 0, 0)] == ACTION_ALLOW
    assert out.endpoints[w.endpoints["shop/web"].ep_id].ingress_enforced
    ref = w.cookies.lookup(
        out.entries[PolicyKey(w.endpoints["shop/web"].ep_id, INGRESS, w.ident("tools/debug"), 0, 0)].cookie
    )
    assert ref.describe() == "CiliumNetworkPolicy shop/d spec.ingressDeny[0]"
    # deny-only policy: the direction is enforced, nothing else allowed
    out2 = w.compile(
        cnp(
            "shop",
            "d2",
            "spec:\n  endpointSelector: {matchLabels: {app: db}}\n  egressDeny:\n    - toEntities: [world]\n",
        )
    )
    assert out2.endpoints[w.endpoints["shop/db"].ep_id].egress_enforced


def test_port_range_and_named_ports() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "p",
            """spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts:
        - ports:
            - {port: "9000", endPort: 9100, protocol: TCP}
            - {port: http, protocol: TCP}
            - {port: nope}
  egress:
    - toEndpoints: [{matchLabels: {app: db}}]
      toPorts: [{ports: [{port: pg}]}]
""",
        )
    )
    client = w.ident("shop/client")
    assert w.entries(out, "shop/web", INGRESS) == {
        (HOST, 0, 0, 0): ACTION_ALLOW,
        (client, 9000, TCP, 9100): ACTION_ALLOW,
        (client, 8080, TCP, 0): ACTION_ALLOW,
    }
    assert w.entries(out, "shop/web", EGRESS) == {(w.ident("shop/db"), 5432, TCP, 0): ACTION_ALLOW}


def test_networkpolicy_isolation_namespace_selector_and_union_with_cnp() -> None:
    w = World()
    text = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-tools, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {team: tools}}
      ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
---
""" + cnp(
        "shop",
        "db-from-client",
        "spec:\n  endpointSelector: {matchLabels: {app: db}}\n  ingress:\n"
        "    - fromEndpoints: [{matchLabels: {app: client}}]\n",
    )
    out = w.compile(text)
    assert w.entries(out, "shop/db", INGRESS) == {
        (HOST, 0, 0, 0): ACTION_ALLOW,
        (w.ident("tools/debug"), 5432, TCP, 0): ACTION_ALLOW,
        (w.ident("shop/client"), 0, 0, 0): ACTION_ALLOW,
    }
    client = out.endpoints[w.endpoints["shop/client"].ep_id]
    assert client.egress_enforced and not client.ingress_enforced
    assert w.entries(out, "shop/client", EGRESS) == {}
    web = out.endpoints[w.endpoints["shop/web"].ep_id]  # selected by nothing: default allow
    assert not web.ingress_enforced and not web.egress_enforced


def test_networkpolicy_pod_selector_is_namespaced_and_empty_from_is_everyone() -> None:
    w = World()
    out = w.compile(
        """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from: [{podSelector: {}}]
    - ports: [{port: 9000, endPort: 9100, protocol: UDP}]
"""
    )
    got = w.entries(out, "shop/web", INGRESS)
    shop = {w.ident(k) for k in w.endpoints if k.startswith("shop/")}
    assert {k[0] for k, a in got.items() if k[1] == 0 and k[0] != HOST} == shop
    assert (0, 9000, UDP, 9100) in got


def test_ccnp_selects_across_namespaces() -> None:
    w = World()
    out = w.compile(
        """\
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: db-and-debug}
spec:
  endpointSelector: {matchExpressions: [{key: app, operator: In, values: [db, debug]}]}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.cilium.k8s.namespace.labels.team: shop}}]
"""
    )
    shop = {w.ident(k) for k in w.endpoints if k.startswith("shop/")}
    for key in ("shop/db", "tools/debug"):
        assert {k[0] for k in w.entries(out, key, INGRESS)} == shop | {HOST}
    assert not out.endpoints[w.endpoints["shop/web"].ep_id].ingress_enforced


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    - toCIDR: [10.0.0.0/33]", 'spec.egress[0].toCIDR[0]: "10.0.0.0/33" is not a valid CIDR'),
        ("    - toCIDR: 10.0.0.0/8", "spec.egress[0].toCIDR: must be a list, got a string"),
        (
            "    - toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]",
            'spec.egress[0].toCIDRSet[0].except[0]: "192.168.0.0/16" is not inside 10.0.0.0/8',
        ),
        (
            "    - toCIDRSet: [{cidrGroupRef: office}]",
            "spec.egress[0].toCIDRSet[0].cidrGroupRef: cidrGroupRef (CIDR groups) is not supported yet",
        ),
        (
            '    - toPorts: [{ports: [{port: "9000", endPort: 8000}]}]',
            "spec.egress[0].toPorts[0].ports[0].endPort: 8000 is smaller than port 9000",
        ),
        (
            '    - toPorts: [{ports: [{port: "9000", endPort: "9100"}]}]',
            "spec.egress[0].toPorts[0].ports[0].endPort: must be a number, got a string",
        ),
        ("    - toEntities: [internet]", 'spec.egress[0].toEntities[0]: "internet" is not a known entity'),
        (
            "    - toServices: [{k8sService: {serviceName: x}}]",
            "spec.egress[0].toServices: toServices is not supported yet",
        ),
        (
            "    - toEndpoints: [{matchLabels: {app: db}}]\n      toFQDN: []",
            "spec.egress[0].toFQDN: unknown field",
        ),
        # an empty toFQDNs selector (found by the fuzzer: it crashed the parser) selects nothing
        (
            "    - toFQDNs: [{matchName: null}]",
            "spec.egress[0].toFQDNs[0]: needs exactly one of matchName or matchPattern",
        ),
        ("    - toFQDNs: [{}]", "spec.egress[0].toFQDNs[0]: needs exactly one of matchName or matchPattern"),
        (
            "    - toFQDNs: [{matchName: a.example, matchPattern: '*.example'}]",
            "spec.egress[0].toFQDNs[0]: needs exactly one of matchName or matchPattern",
        ),
        (
            "    - toFQDNs: [{matchPattern: 5}]",
            "spec.egress[0].toFQDNs[0].matchPattern: must be a string, got a number",
        ),
    ],
)
def test_bad_rules_are_rejected_with_field_path(body: str, expected: str) -> None:
    text = cnp("shop", "bad", "spec:\n  endpointSelector: {}\n  egress:\n" + body + "\n")
    with pytest.raises(PolicyError) as info:
        parse_policies(text, "bad.yaml")
    assert str(info.value).startswith("policy file bad.yaml, document 1 (shop/bad): ")
    assert expected in str(info.value)


def test_deny_rules_refuse_l7_and_fqdn() -> None:
    text = cnp(
        "shop",
        "bad",
        'spec:\n  endpointSelector: {}\n  egressDeny:\n    - toPorts: [{ports: [{port: "80"}], rules: {http: [{}]}}]\n',
    )
    with pytest.raises(PolicyError, match=r"egressDeny\[0\].toPorts\[0\].rules: L7 rules are not allowed"):
        parse_policies(text)
    text = cnp(
        "shop", "bad", "spec:\n  endpointSelector: {}\n  egressDeny:\n    - toFQDNs: [{matchName: x}]\n"
    )
    with pytest.raises(PolicyError, match="toFQDNs is not valid in egressDeny"):
        parse_policies(text)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("  podSelector: {}\n  policyTypes: [Both]", 'spec.policyTypes[0]: "Both" is not Ingress or Egress'),
        ("  ingress: []", "spec.podSelector: is required"),
        (
            "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]",
            "spec.ingress[0].from[0]: ipBlock cannot be combined",
        ),
        (
            "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.1.0.0/33}}]}]",
            'spec.ingress[0].from[0].ipBlock.cidr: "10.1.0.0/33" is not a valid CIDR',
        ),
        (
            "  podSelector: {}\n  egress: [{ports: [{port: 80, protocol: ANY}]}]",
            'spec.egress[0].ports[0].protocol: "ANY" is not valid here',
        ),
        ("  podSelector: {}\n  ingress: [{fromm: []}]", "spec.ingress[0].fromm: unknown field"),
    ],
)
def test_bad_networkpolicy_is_rejected(spec: str, expected: str) -> None:
    text = f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: shop}}\nspec:\n{spec}\n"
    with pytest.raises(PolicyError) as info:
        parse_policies(text, "np.yaml")
    assert str(info.value).startswith("policy file np.yaml, document 1 (shop/np): ")
    assert expected in str(info.value)


def test_one_bad_document_rejects_the_whole_file() -> None:
    good = (EXAMPLES / "cnp-cidr.yaml").read_text()
    bad = cnp("shop", "bad", "spec:\n  endpointSelector: {}\n  egress:\n    - toCIDR: [10.0.0.0/33]\n")
    with pytest.raises(PolicyError, match="document 2"):
        parse_policies(good + "---\n" + bad)


def test_deny_without_default_deny_still_denies_and_allows_the_rest() -> None:
    w = World()
    out = w.compile(
        cnp(
            "shop",
            "d",
            """spec:
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: client}}]
""",
        )
    )
    assert w.entries(out, "shop/web", INGRESS) == {
        (0, 0, 0, 0): ACTION_ALLOW,
        (HOST, 0, 0, 0): ACTION_ALLOW,
        (w.ident("shop/client"), 0, 0, 0): ACTION_DENY,
    }
    info = out.endpoints[w.endpoints["shop/web"].ep_id]
    assert info.ingress_enforced and info.ingress_default_deny_by == []
