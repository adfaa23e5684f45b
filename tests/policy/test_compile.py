"""Compilation of policies into policy-map entries over identities."""

from __future__ import annotations

from hubblepy.policy import (
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyKey,
    PolicyRepository,
    compile_policies,
    diff_entries,
    parse_policies,
    pod_labels,
)

DEFAULT_DENY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: default-deny, namespace: payments}
spec:
  endpointSelector: {}
  ingress:
    - {}
  egress:
    - {}
"""
API_ALLOW = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow, namespace: payments}
spec:
  endpointSelector:
    matchLabels: {app: api}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: frontend}
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
  egress:
    - toEndpoints:
        - matchLabels: {app: postgres}
      toPorts:
        - ports: [{port: "5432", protocol: TCP}]
"""

PODS = {
    "frontend": ("payments", {"app": "frontend"}),
    "api": ("payments", {"app": "api"}),
    "postgres": ("payments", {"app": "postgres"}),
    "probe": ("payments", {}),
    "kube-dns": ("kube-system", {"k8s-app": "kube-dns"}),
    "other-api": ("shop", {"app": "frontend"}),
}


class World:
    def __init__(self, pods=PODS):
        self.alloc = IdentityAllocator()
        self.eps = {}
        for n, (name, (ns, labels)) in enumerate(pods.items(), 1):
            labs = pod_labels(ns, labels)
            self.eps[name] = Endpoint(n, self.alloc.allocate(labs), labs)
        self.cookies = CookieJar()

    def compile(self, *texts):
        policies = [p for t in texts for p in parse_policies(t)]
        return compile_policies(policies, self.eps.values(), dict(self.alloc.items()), self.cookies)

    def ident(self, name):
        return self.eps[name].identity


def _keys(compiled, ep):
    return {k for k in compiled.entries if k.ep_id == ep.ep_id}


def test_default_deny_and_api_allow_produce_exactly_the_expected_entries():
    w = World()
    out = w.compile(DEFAULT_DENY, API_ALLOW)
    api, frontend, probe = w.eps["api"], w.eps["frontend"], w.eps["probe"]
    assert _keys(out, api) == {
        PolicyKey(api.ep_id, INGRESS, 1, 0, 0),  # allow-localhost
        PolicyKey(api.ep_id, INGRESS, w.ident("frontend"), 8080, 6),
        PolicyKey(api.ep_id, EGRESS, w.ident("postgres"), 5432, 6),
    }
    assert _keys(out, frontend) == {PolicyKey(frontend.ep_id, INGRESS, 1, 0, 0)}
    assert _keys(out, probe) == {PolicyKey(probe.ep_id, INGRESS, 1, 0, 0)}
    for name in ("api", "frontend", "postgres", "probe"):
        info = out.endpoints[w.eps[name].ep_id]
        assert info.ingress_enforced and info.egress_enforced
    # other namespaces are not selected: default allow, no entries
    for name in ("kube-dns", "other-api"):
        info = out.endpoints[w.eps[name].ep_id]
        assert not info.ingress_enforced and not info.egress_enforced and not info.selected_by
        assert _keys(out, w.eps[name]) == set()
    # cookies map back to the rule
    ref = w.cookies.lookup(out.entries[PolicyKey(api.ep_id, INGRESS, w.ident("frontend"), 8080, 6)].cookie)
    assert (ref.policy.name, ref.policy.namespace, ref.policy.kind, ref.direction) == (
        "api-allow",
        "payments",
        "CiliumNetworkPolicy",
        INGRESS,
    )
    assert ref.describe() == "CiliumNetworkPolicy payments/api-allow spec.ingress[0]"


def test_api_allow_alone_engages_only_the_api_pod():
    w = World()
    out = w.compile(API_ALLOW)
    assert out.endpoints[w.eps["api"].ep_id].ingress_enforced
    assert not out.endpoints[w.eps["frontend"].ep_id].ingress_enforced


def test_additive_union_and_contributors():
    w = World()
    extra = API_ALLOW.replace("api-allow", "api-allow-2").replace('"8080"', '"9090"')
    out = w.compile(API_ALLOW, extra, API_ALLOW.replace("api-allow", "api-allow-dup"))
    api = w.eps["api"]
    ports = sorted(k.dport for k in _keys(out, api) if k.direction == INGRESS and k.identity != 1)
    assert ports == [8080, 9090]
    key = PolicyKey(api.ep_id, INGRESS, w.ident("frontend"), 8080, 6)
    assert len(out.contributors[key]) == 2


def test_l3_only_l4_only_and_allow_all_and_any_protocol():
    w = World()
    text = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: mix, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
    - toPorts: [{ports: [{port: "53"}]}]
  egress:
    - toEntities: [all]
"""
    out = w.compile(text)
    api = w.eps["api"]
    assert _keys(out, api) == {
        PolicyKey(api.ep_id, INGRESS, 1, 0, 0),
        PolicyKey(api.ep_id, INGRESS, w.ident("frontend"), 0, 0),
        PolicyKey(api.ep_id, INGRESS, 0, 53, 6),
        PolicyKey(api.ep_id, INGRESS, 0, 53, 17),
        PolicyKey(api.ep_id, INGRESS, 0, 53, 132),
        PolicyKey(api.ep_id, EGRESS, 0, 0, 0),
    }


def test_match_expressions_and_namespace_scoping():
    w = World()
    text = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: expr, namespace: payments}
spec:
  endpointSelector:
    matchExpressions: [{key: app, operator: In, values: [api, postgres]}]
  ingress:
    - fromEndpoints:
        - matchExpressions: [{key: app, operator: Exists}]
    - fromEndpoints:
        - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system}
      toPorts: [{ports: [{port: "1", protocol: UDP}]}]
    - fromEndpoints:
        - matchExpressions:
            - {key: app, operator: DoesNotExist}
            - {key: io.kubernetes.pod.namespace, operator: NotIn, values: [kube-system]}
      toPorts: [{ports: [{port: "2", protocol: TCP}]}]
"""
    out = w.compile(text)
    assert out.endpoints[w.eps["postgres"].ep_id].ingress_enforced
    assert not out.endpoints[w.eps["frontend"].ep_id].ingress_enforced
    api = w.eps["api"]
    peers = {(k.identity, k.dport) for k in _keys(out, api) if k.identity != 1}
    # Exists app: only payments pods with app (other-api in shop is out of scope)
    assert peers == {
        (w.ident("frontend"), 0),
        (w.ident("api"), 0),
        (w.ident("postgres"), 0),
        (w.ident("kube-dns"), 1),
        (w.ident("probe"), 2),
    }


def test_ccnp_is_not_namespace_scoped_and_fqdn_without_answers_selects_nothing():
    w = World()
    text = """\
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all-frontends}
spec:
  endpointSelector: {matchLabels: {app: frontend}}
  egress:
    - toFQDNs: [{matchName: api.stripe.com}]
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
    - toEndpoints: [{matchLabels: {app: api}}]
"""
    out = w.compile(text)
    for name in ("frontend", "other-api"):
        ep = w.eps[name]
        assert out.endpoints[ep.ep_id].egress_enforced
        assert _keys(out, ep) == {PolicyKey(ep.ep_id, EGRESS, w.ident("api"), 0, 0)}


def test_enable_default_deny_false_is_additive_only():
    w = World()
    text = API_ALLOW.replace("spec:\n", "spec:\n  enableDefaultDeny: {ingress: false}\n")
    out = w.compile(text)
    info = out.endpoints[w.eps["api"].ep_id]
    assert not info.ingress_enforced and info.egress_enforced


def test_diff_writes_only_changed_entries():
    w = World()
    before = w.compile(DEFAULT_DENY, API_ALLOW).entries
    after = w.compile(DEFAULT_DENY, API_ALLOW.replace('"5432"', '"5433"')).entries
    diff = diff_entries(before, after)
    api = w.eps["api"]
    assert list(diff.upserts) == [PolicyKey(api.ep_id, EGRESS, w.ident("postgres"), 5433, 6)]
    assert diff.deletes == [PolicyKey(api.ep_id, EGRESS, w.ident("postgres"), 5432, 6)]
    assert not diff_entries(after, dict(after))


def test_repository_and_cookie_jar_round_trip():
    w = World()
    repo = PolicyRepository()
    repo.apply(parse_policies(DEFAULT_DENY + "---\n" + API_ALLOW))
    out1 = compile_policies(repo.policies(), w.eps.values(), dict(w.alloc.items()), w.cookies)
    restored = PolicyRepository.from_json(repo.to_json())
    jar = CookieJar.from_json(w.cookies.to_json())
    out2 = compile_policies(restored.policies(), w.eps.values(), dict(w.alloc.items()), jar)
    assert out1.entries == out2.entries
    assert restored.delete([p.ref for p in parse_policies(API_ALLOW)])
    assert len(restored) == 1
