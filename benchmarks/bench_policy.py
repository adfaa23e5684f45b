"""Policy benchmark: compute and apply 1,000 rules over 500 identities.

The set: 10 namespaces x 50 pods (500 identities, labels app=appN and tier=web|api|db|cache|batch),
500 CiliumNetworkPolicies with one ingress and one egress rule each (1,000 rules; peers by labels,
some across namespaces, two ports per rule). Timed steps:

1. parse: YAML text (500 documents) -> validated policies;
2. compile: policies x endpoints -> policy-map entries (plus the attribution/audit pass);
3. apply: write every entry to the policy map of a real Datapath (root + bcc), then a no-change
   sync and a one-policy change (only the diff is written);
4. attribution: explaining one verdict from the snapshot (what the parser asks per new connection).

Without root or bcc, step 3 is skipped and says so. Prints figures; asserts nothing.
Usage: sudo .venv/bin/python benchmarks/bench_policy.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubblepy.policy import (  # noqa: E402
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.attribution import ACTION_AUDIT_DENY  # noqa: E402
from hubblepy.policy.audit import AuditSettings, apply_audit  # noqa: E402
from hubblepy.policy.compiler import ACTION_DENY  # noqa: E402

NAMESPACES = 10
PODS_PER_NAMESPACE = 50
TIERS = ("web", "api", "db", "cache", "batch")


def world() -> tuple[list[Endpoint], dict, dict[int, tuple[str, str]]]:
    alloc = IdentityAllocator()
    endpoints, names = [], {}
    ep_id = 100
    for n in range(NAMESPACES):
        ns = f"ns{n}"
        for i in range(PODS_PER_NAMESPACE):
            labels = pod_labels(ns, {"app": f"app{i}", "tier": TIERS[i % len(TIERS)]})
            endpoints.append(Endpoint(ep_id, alloc.allocate(labels), labels))
            names[ep_id] = (ns, f"app{i}-0")
            ep_id += 1
    return endpoints, dict(alloc.items()), names


def policy_text(variant: int = 0) -> str:
    docs = []
    for n in range(NAMESPACES):
        for i in range(PODS_PER_NAMESPACE):
            tier = TIERS[(i + 1) % len(TIERS)]
            other = f"ns{(n + 1) % NAMESPACES}"
            port = 8080 + (variant if (n, i) == (0, 0) else 0)
            docs.append(
                f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: app{i}-policy, namespace: ns{n}}}
spec:
  endpointSelector: {{matchLabels: {{app: app{i}}}}}
  ingress:
    - fromEndpoints:
        - matchLabels: {{tier: {tier}}}
        - matchLabels: {{k8s:io.kubernetes.pod.namespace: {other}, app: app{i}}}
      toPorts:
        - ports: [{{port: "{port}", protocol: TCP}}, {{port: "9090", protocol: TCP}}]
  egress:
    - toEndpoints:
        - matchExpressions:
            - {{key: tier, operator: In, values: [db, cache]}}
      toPorts:
        - ports: [{{port: "5432", protocol: TCP}}, {{port: "6379", protocol: TCP}}]
"""
            )
    return "---\n".join(docs)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def entries_of(audited, ep_ids: list[int]) -> dict:
    from hubblepy.datapath import PolicyEntry

    grouped: dict = {}
    for k, v in audited.entries.items():
        grouped.setdefault((k.ep_id, k.direction), []).append(
            PolicyEntry(
                identity=k.identity,
                dport=k.dport,
                proto=k.proto,
                deny=v.action in (ACTION_DENY, ACTION_AUDIT_DENY),
                audit=v.action == ACTION_AUDIT_DENY,
                cookie=v.cookie,
                end_port=k.end_port,
            )
        )
    return {(ep, d): grouped.get((ep, d), []) for ep in ep_ids for d in (INGRESS, EGRESS)}


def write_all(dp, wanted: dict) -> tuple[int, int, int]:
    added = changed = removed = 0
    for (ep, direction), entries in wanted.items():
        diff = dp.set_policy_entries(ep, direction, entries)
        added, changed, removed = added + diff.added, changed + diff.changed, removed + diff.removed
    return added, changed, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step (median printed)")
    args = parser.parse_args()
    endpoints, identities, names = world()
    text = policy_text()
    print(f"policy set: {NAMESPACES * PODS_PER_NAMESPACE} identities/endpoints, ", end="")
    parse_s, policies = timed(lambda: parse_policies(text, "bench.yaml"), args.repeat)
    rules = sum(len(s.ingress or ()) + len(s.egress or ()) for p in policies for s in p.specs)
    print(f"{len(policies)} policies, {rules} rules, {len(text) / 1e6:.2f} MB of YAML")
    print(f"  parse:          {parse_s * 1e3:8.1f} ms")
    cookies = CookieJar()
    compile_s, compiled = timed(
        lambda: compile_policies(policies, endpoints, identities, cookies), args.repeat
    )
    print(f"  compile:        {compile_s * 1e3:8.1f} ms  -> {len(compiled.entries)} policy-map entries")
    audit_s, audited = timed(lambda: apply_audit(compiled, cookies, AuditSettings(), names, 1), args.repeat)
    print(f"  audit+snapshot: {audit_s * 1e3:8.1f} ms")
    snap = audited.snapshot
    ep0 = endpoints[0]
    peer = endpoints[1].identity
    n = 20000
    start = time.perf_counter()
    for i in range(n):
        snap.explain(ep0.ep_id, INGRESS, peer + (i & 7), 6, 8080)
    per = (time.perf_counter() - start) / n
    print(f"  attribution:    {per * 1e6:8.2f} us per verdict explained")
    print(f"  total compute:  {(parse_s + compile_s + audit_s) * 1e3:8.1f} ms (parse + compile + audit)")

    try:
        from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment

        check_environment()
    except Exception as exc:  # ImportError, DatapathUnavailable (no root, bcc or headers)
        print(f"  apply: skipped ({exc})")
        return
    ep_ids = [ep.ep_id for ep in endpoints]
    wanted = entries_of(audited, ep_ids)
    try:
        dp = Datapath()
    except DatapathUnavailable as exc:
        print(f"  apply: skipped ({exc})")
        return
    with dp:
        start = time.perf_counter()
        added, _, _ = write_all(dp, wanted)
        first = time.perf_counter() - start
        print(
            f"  apply (empty map -> {added} entries): {first * 1e3:8.1f} ms ({first / max(added, 1) * 1e6:.1f} us/entry)"
        )
        start = time.perf_counter()
        write_all(dp, wanted)
        print(f"  apply (no change, diff only):        {(time.perf_counter() - start) * 1e3:8.1f} ms")
        changed_policies = parse_policies(policy_text(variant=1), "bench.yaml")
        start = time.perf_counter()
        recompiled = compile_policies(changed_policies, endpoints, identities, cookies)
        re_audited = apply_audit(recompiled, cookies, AuditSettings(), names, 2)
        diff = write_all(dp, entries_of(re_audited, ep_ids))
        took = time.perf_counter() - start
        print(
            f"  one policy changed (compile + diff + write {diff[0]} added, {diff[2]} removed): {took * 1e3:8.1f} ms"
        )


if __name__ == "__main__":
    main()
