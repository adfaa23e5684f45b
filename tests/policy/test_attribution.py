"""Attribution and audit scopes computed from compiled policies (no datapath needed)."""

from __future__ import annotations

import pytest

from hubblepy.policy import (
    CNP,
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyKey,
    PolicyRef,
    PolicyValue,
    RuleRef,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.attribution import (
    ACTION_AUDIT_DENY,
    policy_dict,
    port_text,
)
from hubblepy.policy.audit import AuditSettings, apply_audit, matching_policies, parse_policy_name
from hubblepy.policy.compiler import ACTION_DENY

DEFAULT_DENY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: default-deny, namespace: payments}
spec:
  endpointSelector: {}
  ingress: [{}]
  egress: [{}]
"""
API_ALLOW = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow, namespace: payments, uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
FRONTEND_TOO = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: frontend-to-api, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
PODS = {
    "frontend": ("payments", {"app": "frontend"}),
    "api": ("payments", {"app": "api"}),
    "probe": ("default", {}),
}


class World:
    def __init__(self) -> None:
        self.alloc = IdentityAllocator()
        self.eps = {}
        for n, (name, (ns, labels)) in enumerate(PODS.items(), 100):
            labs = pod_labels(ns, labels)
            self.eps[name] = Endpoint(n, self.alloc.allocate(labs), labs)
        self.cookies = CookieJar()
        self.names = {ep.ep_id: (PODS[name][0], name) for name, ep in self.eps.items()}

    def compile(self, *texts: str):
        policies = [p for t in texts for p in parse_policies(t)]
        return compile_policies(policies, self.eps.values(), dict(self.alloc.items()), self.cookies)

    def snapshot(self, *texts: str, audit: AuditSettings | None = None, revision: int = 7):
        compiled = self.compile(*texts)
        uids = {
            p.ref: "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
            for t in texts
            for p in parse_policies(t)
            if "uid" in t
        }
        return apply_audit(compiled, self.cookies, audit or AuditSettings(), self.names, revision, uids)

    def ep(self, name: str) -> int:
        return self.eps[name].ep_id

    def ident(self, name: str) -> int:
        return self.eps[name].identity


def _names(policies) -> list[str]:
    return [f"{p.get('namespace', '')}/{p['name']} {p['kind']}" for p in policies]


def test_allowed_verdict_names_every_allowing_policy_with_cilium_labels():
    w = World()
    out = w.snapshot(DEFAULT_DENY, API_ALLOW, FRONTEND_TOO).snapshot
    got = out.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 8080)
    assert got.verdict == "FORWARDED" and got.match == "allow"
    assert _names(got.policies) == [
        "payments/api-allow CiliumNetworkPolicy",
        "payments/frontend-to-api CiliumNetworkPolicy",
    ]
    first = got.policies[0]
    assert list(first) == ["name", "namespace", "labels", "revision", "kind"]  # flow.Policy order
    assert first["labels"] == [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=api-allow",
        "k8s:io.cilium.k8s.policy.namespace=payments",
        "k8s:io.cilium.k8s.policy.uid=1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    ]
    assert first["revision"] == "7"
    assert got.log == (
        "allow: CiliumNetworkPolicy payments/api-allow spec.ingress[0]",
        "allow: CiliumNetworkPolicy payments/frontend-to-api spec.ingress[0]",
    )


def test_default_deny_names_the_policies_that_engaged_it_and_says_no_rule_allowed():
    w = World()
    out = w.snapshot(DEFAULT_DENY, API_ALLOW).snapshot
    probe = w.ident("probe")
    got = out.explain(w.ep("api"), INGRESS, probe, 6, 8080)
    assert got.verdict == "DROPPED" and got.match == "default-deny"
    assert _names(got.policies) == [
        "payments/api-allow CiliumNetworkPolicy",
        "payments/default-deny CiliumNetworkPolicy",
    ]
    assert got.log == (
        "default deny: no rule of [payments/api-allow (CiliumNetworkPolicy), payments/default-deny "
        f"(CiliumNetworkPolicy)] allows ingress from identity {probe} to TCP/8080",
    )
    # egress of api: only default-deny engaged it (api-allow has no egress section here)
    egress = out.explain(w.ep("api"), EGRESS, w.ident("frontend"), 17, 53)
    assert _names(egress.policies) == ["payments/default-deny CiliumNetworkPolicy"]
    assert egress.log[0].endswith(f"allows egress to identity {w.ident('frontend')} at UDP/53")
    # a pod no policy selects: no verdict at all
    assert out.explain(w.ep("probe"), INGRESS, w.ident("api"), 6, 80) is None


def test_lookup_prefers_the_most_specific_allow_and_reports_the_host_allow_without_a_kind():
    w = World()
    out = w.snapshot(DEFAULT_DENY, API_ALLOW).snapshot
    host = out.explain(w.ep("api"), INGRESS, 1, 6, 9999)
    assert host.verdict == "FORWARDED"
    assert host.policies[0].get("kind") is None and host.policies[0]["labels"] == [
        "reserved:allow-localhost-ingress"
    ]


def _with_deny(w: World):
    """api-allow plus a hand-made L3-only deny entry (frontend -> api, any port) from `no-frontend`."""
    compiled = w.compile(DEFAULT_DENY, API_ALLOW)
    deny_ref = RuleRef(PolicyRef(CNP, "payments", "no-frontend"), INGRESS, 5000)
    cookie = w.cookies.cookie(deny_ref)
    key = PolicyKey(w.ep("api"), INGRESS, w.ident("frontend"), 0, 0)
    compiled.entries[key] = PolicyValue(ACTION_DENY, cookie)
    compiled.contributors[key] = [cookie]
    return compiled, key


def test_explicit_deny_names_the_deny_rule_only():
    w = World()
    compiled, _ = _with_deny(w)
    out = apply_audit(compiled, w.cookies, AuditSettings(), w.names).snapshot
    got = out.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 8080)
    assert got.verdict == "DROPPED" and got.match == "deny"
    assert _names(got.policies) == ["payments/no-frontend CiliumNetworkPolicy"]
    assert got.log == ("deny: CiliumNetworkPolicy payments/no-frontend spec.ingressDeny[0]",)


def test_policy_audit_turns_only_that_policys_denials_into_audit():
    w = World()
    compiled, key = _with_deny(w)
    settings = AuditSettings(policies={("payments", "no-frontend")})
    audited = apply_audit(compiled, w.cookies, settings, w.names)
    assert audited.entries[key].action == ACTION_AUDIT_DENY
    got = audited.snapshot.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 8080)
    assert got.verdict == "AUDIT"
    assert got.log == (
        "audit (policy payments/no-frontend): deny: CiliumNetworkPolicy payments/no-frontend spec.ingressDeny[0]",
    )
    # default deny is engaged by policies that are not audited: still dropped
    probe = audited.snapshot.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080)
    assert probe.verdict == "DROPPED"
    assert not audited.flags[w.ep("api")].ingress_default_audited


def test_default_deny_is_audited_only_when_every_engaging_policy_is_audited():
    w = World()
    one = AuditSettings(policies={("payments", "default-deny")})
    partly = w.snapshot(DEFAULT_DENY, API_ALLOW, audit=one)
    # api's ingress is engaged by api-allow too: enforced
    assert partly.snapshot.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080).verdict == "DROPPED"
    # api's egress only by default-deny: audited
    eg = partly.snapshot.explain(w.ep("api"), EGRESS, w.ident("probe"), 6, 80)
    assert eg.verdict == "AUDIT" and eg.log[0].startswith(
        "audit (policy payments/default-deny): default deny:"
    )
    assert partly.flags[w.ep("api")].egress_default_audited
    both = AuditSettings(policies={("payments", "default-deny"), ("payments", "api-allow")})
    full = w.snapshot(DEFAULT_DENY, API_ALLOW, audit=both).snapshot
    got = full.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080)
    assert got.verdict == "AUDIT"
    assert got.log[0].startswith("audit (policies payments/api-allow, payments/default-deny): default deny:")
    # allows of audited policies still allow
    assert full.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 8080).verdict == "FORWARDED"


def test_pod_and_namespace_audit_cover_every_denial_of_the_endpoint():
    w = World()
    compiled, _ = _with_deny(w)
    for settings, scope in (
        (AuditSettings(pods={"payments/api"}), "pod payments/api"),
        (AuditSettings(namespaces={"payments"}), "namespace payments"),
    ):
        snap = apply_audit(compiled, w.cookies, settings, w.names).snapshot
        deny = snap.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 8080)
        default = snap.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080)
        assert (deny.verdict, default.verdict) == ("AUDIT", "AUDIT")
        assert deny.log[0].startswith(f"audit ({scope}): deny: ")
        assert default.log[0].startswith(f"audit ({scope}): default deny: ")


def test_policy_names_and_ports():
    assert parse_policy_name("payments/api-allow") == ("payments", "api-allow")
    assert parse_policy_name("deny-world") == ("", "deny-world")
    with pytest.raises(ValueError):
        parse_policy_name("a/b/c")
    refs = [PolicyRef(CNP, "payments", "x"), PolicyRef("CiliumClusterwideNetworkPolicy", "", "x")]
    assert matching_policies(refs, "payments", "x") == refs[:1]
    assert matching_policies(refs, "", "x") == refs[1:]
    assert [port_text(6, 80), port_text(17, 53), port_text(1, 8), port_text(47, 0)] == [
        "TCP/80",
        "UDP/53",
        "ICMP type 8",
        "protocol 47",
    ]
    ccnp = policy_dict(PolicyRef("CiliumClusterwideNetworkPolicy", "", "deny-world"), 0)
    assert list(ccnp) == ["name", "labels", "kind"]
    assert any(label.startswith("k8s:io.cilium.k8s.policy.uid=") for label in ccnp["labels"])


NO_PROBE = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-probe, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: default}}]
"""
RANGE = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-range, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "9000", endPort: 9100, protocol: TCP}]}]
"""


def test_compiled_deny_rules_and_port_ranges_are_attributed():
    w = World()
    out = w.snapshot(DEFAULT_DENY, API_ALLOW, NO_PROBE, RANGE).snapshot
    deny = out.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080)
    assert deny.verdict == "DROPPED" and deny.match == "deny"
    assert _names(deny.policies) == ["payments/no-probe CiliumNetworkPolicy"]
    assert deny.log == ("deny: CiliumNetworkPolicy payments/no-probe spec.ingressDeny[0]",)
    ranged = out.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 9050)
    assert ranged.verdict == "FORWARDED" and _names(ranged.policies) == [
        "payments/api-range CiliumNetworkPolicy"
    ]
    outside = out.explain(w.ep("api"), INGRESS, w.ident("frontend"), 6, 9101)
    assert outside.verdict == "DROPPED" and outside.match == "default-deny"
    # auditing the deny policy: nothing else allows the probe, so the enforced default deny decides
    settings = AuditSettings(policies={("payments", "no-probe")})
    audited = w.snapshot(DEFAULT_DENY, API_ALLOW, NO_PROBE, audit=settings)
    got = audited.snapshot.explain(w.ep("api"), INGRESS, w.ident("probe"), 6, 8080)
    assert got.verdict == "DROPPED" and got.match == "default-deny"


WIDE_ALLOW = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: frontend-wide, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8000", endPort: 8999, protocol: TCP}]}]
"""
DENY_RANGE = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-high-ports, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", endPort: 8090, protocol: TCP}]}]
"""
DENY_8085 = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-8085, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8085", protocol: TCP}]}]
"""


def test_policy_audit_covers_endport_deny_ranges_and_other_denies_stay_enforced():
    w = World()
    api, frontend = w.ep("api"), w.ident("frontend")
    enforced = w.snapshot(DEFAULT_DENY, WIDE_ALLOW, DENY_RANGE, DENY_8085).snapshot
    assert enforced.explain(api, INGRESS, frontend, 6, 8082).verdict == "DROPPED"
    settings = AuditSettings(policies={("payments", "no-high-ports")})
    audited = w.snapshot(DEFAULT_DENY, WIDE_ALLOW, DENY_RANGE, DENY_8085, audit=settings)
    ranges = {k: v for k, v in audited.entries.items() if k.end_port > k.dport and v.action != 1}
    assert [(k.dport, k.end_port, v.action) for k, v in ranges.items()] == [(8080, 8090, ACTION_AUDIT_DENY)]
    got = audited.snapshot.explain(api, INGRESS, frontend, 6, 8082)
    assert got.verdict == "AUDIT" and got.match == "deny"
    assert _names(got.policies) == ["payments/no-high-ports CiliumNetworkPolicy"]
    assert got.log == (
        "audit (policy payments/no-high-ports): deny: CiliumNetworkPolicy payments/no-high-ports spec.ingressDeny[0]",
    )
    # the enforced exact deny of another policy inside the audited range still drops
    kept = audited.snapshot.explain(api, INGRESS, frontend, 6, 8085)
    assert kept.verdict == "DROPPED" and _names(kept.policies) == ["payments/no-8085 CiliumNetworkPolicy"]
    # outside the range the allow decides
    assert audited.snapshot.explain(api, INGRESS, frontend, 6, 8100).verdict == "FORWARDED"
