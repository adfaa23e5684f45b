"""The parser's policy correlation with a live attribution snapshot: verdicts, drops, mismatches."""

from __future__ import annotations

from hubblepy.parser import EndpointInfo, Parser, PolicyMatch, StaticResolver
from hubblepy.parser import encode as enc
from hubblepy.policy import (
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.audit import AuditSettings, apply_audit

POLICIES = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: default-deny, namespace: payments}
spec:
  endpointSelector: {}
  ingress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-allow, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
API_IP, FRONTEND_IP, PROBE_IP = "10.244.0.11", "10.244.0.10", "10.244.0.14"
NOW = 1_700_000_000_000_000_000


def _setup(audit: AuditSettings | None = None):
    alloc = IdentityAllocator()
    pods = {
        "frontend": (100, "payments", {"app": "frontend"}, FRONTEND_IP),
        "api": (101, "payments", {"app": "api"}, API_IP),
        "probe": (104, "default", {}, PROBE_IP),
    }
    eps, idents, resolver = {}, {}, StaticResolver()
    for name, (ep_id, ns, labels, ip) in pods.items():
        labs = pod_labels(ns, labels)
        idents[name] = alloc.allocate(labs)
        eps[name] = Endpoint(ep_id, idents[name], labs)
        resolver.add_endpoint(EndpointInfo(ep_id, idents[name], ns, name, labs, ips=(ip,)))
    cookies = CookieJar()
    compiled = compile_policies(parse_policies(POLICIES), eps.values(), dict(alloc.items()), cookies)
    names = {ep.ep_id: (pods[n][1], n) for n, ep in eps.items()}
    snapshot = apply_audit(compiled, cookies, audit or AuditSettings(), names, 4).snapshot

    def explain(cookie, ep_id, ingress, remote, proto, dport):
        found = snapshot.explain(ep_id, 1 if ingress else 2, remote, proto, dport)
        return None if found is None else PolicyMatch(found.policies, found.log, found.verdict)

    resolver.set_policy_explainer(explain)
    return Parser(resolver, "lab-node"), idents


def _syn(src: str, dst: str) -> bytes:
    return enc.ethernet(enc.ipv4(src, dst, 6, enc.tcp(40000, 8080, enc.TCP_SYN)))


def test_allowed_and_default_denied_verdicts_and_the_policy_drop():
    parser, ids = _setup()
    allowed = parser.decode(
        0,
        enc.policy_verdict_event(
            _syn(FRONTEND_IP, API_IP),
            source=101,
            remote_label=ids["frontend"],
            dst_port=8080,
            cookie=9,
            flags=1,
        ),
        NOW,
    )
    assert [p["name"] for p in allowed["ingress_allowed_by"]] == ["api-allow"]
    assert allowed["ingress_allowed_by"][0]["revision"] == "4"
    denied = parser.decode(
        0,
        enc.policy_verdict_event(
            _syn(PROBE_IP, API_IP),
            source=101,
            remote_label=ids["probe"],
            dst_port=8080,
            verdict=-133,
            flags=1,
        ),
        NOW,
    )
    assert [p["name"] for p in denied["ingress_denied_by"]] == ["api-allow", "default-deny"]
    assert denied["policy_log"][0].startswith("default deny: no rule of [payments/api-allow")
    drop = parser.decode(
        0,
        enc.drop_event(
            _syn(PROBE_IP, API_IP),
            reason=133,
            source=101,
            src_label=ids["probe"],
            dst_label=ids["api"],
            dst_id=101,
        ),
        NOW,
    )
    assert drop["traffic_direction"] == "INGRESS"
    assert [p["name"] for p in drop["ingress_denied_by"]] == ["api-allow", "default-deny"]
    assert list(drop)[-2:] == ["ingress_denied_by", "policy_log"]
    # a drop for another reason is not correlated
    other = parser.decode(
        0, enc.drop_event(_syn(PROBE_IP, API_IP), reason=134, source=101, src_label=ids["probe"]), NOW
    )
    assert "ingress_denied_by" not in other and "policy_log" not in other


def test_a_verdict_the_snapshot_disagrees_with_gets_no_attribution():
    parser, ids = _setup()
    # the datapath allowed the probe (e.g. under a policy since removed): the snapshot says DROPPED
    stale = parser.decode(
        0,
        enc.policy_verdict_event(
            _syn(PROBE_IP, API_IP), source=101, remote_label=ids["probe"], dst_port=8080, flags=1
        ),
        NOW,
    )
    assert stale["verdict"] == "FORWARDED"
    assert "ingress_allowed_by" not in stale and "policy_log" not in stale


def test_audited_verdict_names_the_would_be_denying_policies():
    parser, ids = _setup(AuditSettings(namespaces={"payments"}))
    audited = parser.decode(
        0,
        enc.policy_verdict_event(
            _syn(PROBE_IP, API_IP),
            source=101,
            remote_label=ids["probe"],
            dst_port=8080,
            flags=enc.policy_verdict_flags(INGRESS, audited=True),
        ),
        NOW,
    )
    assert audited["verdict"] == "AUDIT"
    assert [p["name"] for p in audited["ingress_denied_by"]] == ["api-allow", "default-deny"]
    assert audited["policy_log"][0].startswith("audit (namespace payments): default deny: ")
