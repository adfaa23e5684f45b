"""Policy attribution and audit scopes on the payments lab with the real eBPF datapath (root, bcc).

Checked through the CLI as a user does: `hubble observe -o json` and `--print-policy-names` against
the lab's relay, `hubble lab audit enable|disable` at pod, namespace and policy scope with real
traffic, and `hubble policy audit-report --server` over what was audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root

API = "http://api.payments:8080/api/v1/orders"
TIMEOUT = "000"

NO_PROBE = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: no-probe, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingressDeny:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
    """)
PROBE_TO_API = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: probe-to-api, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
          toPorts:
            - ports: [{port: "8080", protocol: TCP}]
    """)
CCNP_NO_DEFAULT = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumClusterwideNetworkPolicy
    metadata: {name: no-default-ns}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingressDeny:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
    """)
DB = "import socket; socket.create_connection(('postgres', 5432), 2); print('connected')"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("attr") / "state") as lab:
        yield lab


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key(t: str) -> str:
    head, _, frac = t.rstrip("Z").partition(".")
    return head + "." + frac.ljust(9, "0")


def _flows_since(lab: Lab, mark: str, *filters: str, want=lambda fs: bool(fs)) -> list[dict]:
    """Flows newer than ``mark``, polling until ``want`` holds (events take a moment to arrive)."""
    deadline = time.monotonic() + 8
    while True:
        flows = [f for f in lab.flows(*filters) if _key(f["time"]) > _key(mark)]
        if want(flows) or time.monotonic() > deadline:
            return flows
        time.sleep(0.3)


def _names(policies: list[dict]) -> list[str]:
    return [f"{p.get('namespace', '')}/{p['name']} ({p['kind']})" for p in policies]


def _apply(lab: Lab, tmp_path: Path, name: str, text: str, delete: bool = False) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    out = lab.run("policy", "delete" if delete else "apply", str(path))
    assert out.returncode == 0, out.stderr


def _identity(lab: Lab, pod: str) -> int:
    return next(p["identity"] for p in lab.state()["pods"] if f"{p['namespace']}/{p['name']}" == pod)


def _probe_verdicts(flows: list[dict]) -> list[dict]:
    return [f for f in flows if f["event_type"]["type"] == 5 and f["destination"].get("pod_name") == "api"]


def test_default_deny_is_attributed_in_json_and_compact_output(lab):
    mark = _now()
    assert lab.curl("default/probe", API).stdout == TIMEOUT
    flows = _flows_since(
        lab, mark, "--from-pod", "default/probe", "--to-pod", "payments/api", want=_probe_verdicts
    )
    verdict = _probe_verdicts(flows)[0]
    assert verdict["verdict"] == "DROPPED"
    # api's ingress is engaged by default-deny and by api-http-l7 (api-allow keeps only its egress half)
    engaged = ["payments/api-http-l7 (CiliumNetworkPolicy)", "payments/default-deny (CiliumNetworkPolicy)"]
    assert _names(verdict["ingress_denied_by"]) == engaged
    policy = verdict["ingress_denied_by"][1]
    assert "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy" in policy["labels"]
    assert "k8s:io.cilium.k8s.policy.name=default-deny" in policy["labels"]
    assert int(policy["revision"]) >= 1
    probe = _identity(lab, "default/probe")
    assert verdict["policy_log"] == [
        f"default deny: no rule of [{', '.join(engaged)}] allows ingress from identity {probe} to TCP/8080"
    ]
    # the drop event of the same packet names them too
    drops = [f for f in flows if f["event_type"]["type"] == 1]
    assert drops and _names(drops[0]["ingress_denied_by"]) == engaged
    assert drops[0]["drop_reason_desc"] == "POLICY_DENIED"
    out = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", "--server", lab.relay, "--last", "50"]
        + ["--from-pod", "default/probe", "--type", "policy-verdict", "--print-policy-names"],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "policy-verdict:none INGRESS DENIED BY api-http-l7 (CiliumNetworkPolicy), default-deny (CiliumNetworkPolicy)"
        in out.stdout
    )


def test_allowed_verdicts_name_the_allowing_policy_on_both_ends(lab):
    mark = _now()
    assert lab.curl("payments/frontend", "http://api:8080/api/v1/orders").stdout == "200"

    def both(fs: list[dict]) -> bool:
        return {f.get("traffic_direction") for f in fs if f["event_type"]["type"] == 5} >= {
            "INGRESS",
            "EGRESS",
        }

    flows = _flows_since(lab, mark, "--from-pod", "payments/frontend", "--to-pod", "payments/api", want=both)
    verdicts = {f["traffic_direction"]: f for f in flows if f["event_type"]["type"] == 5}
    # api's ingress rule has L7 rules: allowed at L3/L4 and redirected to the node's proxy
    assert verdicts["INGRESS"]["verdict"] == "REDIRECTED"
    assert _names(verdicts["INGRESS"]["ingress_allowed_by"]) == ["payments/api-http-l7 (CiliumNetworkPolicy)"]
    assert verdicts["INGRESS"]["policy_log"] == [
        "allow: CiliumNetworkPolicy payments/api-http-l7 spec.ingress[0]"
    ]
    assert _names(verdicts["EGRESS"]["egress_allowed_by"]) == [
        "payments/frontend-egress (CiliumNetworkPolicy)"
    ]
    out = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", "--server", lab.relay, "--last", "50"]
        + ["--to-pod", "payments/api", "--from-pod", "payments/frontend", "--print-policy-names"],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    assert "policy-verdict:L3-L4 INGRESS ALLOWED BY api-http-l7 (CiliumNetworkPolicy)" in out.stdout
    assert "policy-verdict:L3-L4 EGRESS ALLOWED BY frontend-egress (CiliumNetworkPolicy)" in out.stdout


def test_explicit_deny_and_per_policy_audit_that_survives_updates(lab, tmp_path):
    _apply(lab, tmp_path, "no-probe", NO_PROBE)
    _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API)
    try:
        mark = _now()
        assert lab.curl("default/probe", API).stdout == TIMEOUT  # the deny wins over probe-to-api
        flows = _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        denied = _probe_verdicts(flows)[0]
        assert denied["verdict"] == "DROPPED" and denied["drop_reason_desc"] == "POLICY_DENY"
        assert _names(denied["ingress_denied_by"]) == ["payments/no-probe (CiliumNetworkPolicy)"]
        assert denied["policy_log"] == ["deny: CiliumNetworkPolicy payments/no-probe spec.ingressDeny[0]"]

        on = lab.run("audit", "enable", "--policy", "payments/no-probe")
        assert on.returncode == 0, on.stderr
        assert "for policy payments/no-probe (CiliumNetworkPolicy)" in on.stdout
        mark = _now()
        assert lab.curl("default/probe", API).stdout == "200"
        audited = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert audited["verdict"] == "AUDIT"
        assert _names(audited["ingress_denied_by"]) == ["payments/no-probe (CiliumNetworkPolicy)"]
        assert audited["policy_log"] == [
            "audit (policy payments/no-probe): deny: CiliumNetworkPolicy payments/no-probe spec.ingressDeny[0]"
        ]
        # every other policy stays enforced
        assert lab.exec("payments/frontend", "python3", "-c", DB).returncode != 0
        # without probe-to-api nothing allows the probe: the enforced default deny decides
        _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API, delete=True)
        assert lab.curl("default/probe", API).stdout == TIMEOUT
        # applied again (a policy update): the audit setting still holds
        _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API)
        _apply(lab, tmp_path, "no-probe", NO_PROBE)
        assert lab.curl("default/probe", API).stdout == "200"
        assert lab.run("audit", "disable", "--policy", "payments/no-probe").returncode == 0
        assert lab.curl("default/probe", API).stdout == TIMEOUT
    finally:
        lab.run("audit", "disable", "--policy", "payments/no-probe")
        _apply(lab, tmp_path, "no-probe", NO_PROBE, delete=True)
        _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API, delete=True)


def test_default_deny_engaged_by_several_policies_is_audited_only_when_all_are(lab):
    try:
        assert lab.run("audit", "enable", "--policy", "payments/default-deny").returncode == 0
        assert lab.curl("default/probe", API).stdout == TIMEOUT  # api-http-l7 engages it too: enforced
        assert lab.run("audit", "enable", "--policy", "payments/api-http-l7").returncode == 0
        mark = _now()
        assert lab.curl("default/probe", API).stdout == "200"
        audited = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert audited["verdict"] == "AUDIT"
        assert audited["policy_log"][0].startswith(
            "audit (policies payments/api-http-l7, payments/default-deny): default deny: no rule of ["
        )
        # postgres' ingress is also engaged by postgres-ingress, which is not audited
        assert lab.exec("payments/frontend", "python3", "-c", DB).returncode != 0
    finally:
        lab.run("audit", "disable", "--policy", "payments/default-deny")
        lab.run("audit", "disable", "--policy", "payments/api-http-l7")
    assert lab.curl("default/probe", API).stdout == TIMEOUT


def test_pod_audit_survives_recreation_and_namespace_audit_covers_every_pod(lab):
    try:
        assert lab.run("audit", "enable", "payments/api").returncode == 0
        assert lab.run("pod", "recreate", "payments/api").returncode == 0
        mark = _now()
        assert lab.curl("default/probe", API).stdout == "200"
        audited = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert audited["verdict"] == "AUDIT"
        assert audited["policy_log"][0].startswith("audit (pod payments/api): default deny: ")
        assert lab.run("audit", "disable", "payments/api").returncode == 0
        assert lab.curl("default/probe", API).stdout == TIMEOUT

        on = lab.run("audit", "enable", "payments/")
        assert on.returncode == 0 and "for namespace payments" in on.stdout, on.stderr
        assert lab.curl("default/probe", API).stdout == "200"
        db = lab.exec("payments/frontend", "python3", "-c", DB)
        assert db.stdout.strip() == "connected", db.stderr
        assert "namespace payments" in lab.run("status").stdout
    finally:
        lab.run("audit", "disable", "payments/api")
        lab.run("audit", "disable", "--namespace", "payments")
    assert lab.curl("default/probe", API).stdout == TIMEOUT


def test_cluster_wide_policy_audited_by_name(lab, tmp_path):
    _apply(lab, tmp_path, "ccnp", CCNP_NO_DEFAULT)
    _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API)
    try:
        assert lab.curl("default/probe", API).stdout == TIMEOUT
        on = lab.run("audit", "enable", "--policy", "no-default-ns")
        assert on.returncode == 0 and "(CiliumClusterwideNetworkPolicy)" in on.stdout, on.stderr
        mark = _now()
        assert lab.curl("default/probe", API).stdout == "200"
        audited = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert audited["verdict"] == "AUDIT"
        policy = audited["ingress_denied_by"][0]
        assert (policy["name"], policy["kind"], policy.get("namespace")) == (
            "no-default-ns",
            "CiliumClusterwideNetworkPolicy",
            None,
        )
        assert audited["policy_log"] == [
            "audit (policy no-default-ns): deny: CiliumClusterwideNetworkPolicy no-default-ns spec.ingressDeny[0]"
        ]
        status = lab.run("status").stdout
        assert "Audit mode: policy no-default-ns" in status
    finally:
        lab.run("audit", "disable", "--policy", "no-default-ns")
        _apply(lab, tmp_path, "ccnp", CCNP_NO_DEFAULT, delete=True)
        _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API, delete=True)


NO_PROBE_PORTS = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: no-probe-ports, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingressDeny:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
          toPorts:
            - ports: [{port: "8000", endPort: 8100, protocol: TCP}]
    """)


def test_per_policy_audit_of_an_endport_deny_range(lab, tmp_path):
    _apply(lab, tmp_path, "no-probe-ports", NO_PROBE_PORTS)
    _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API)
    try:
        assert lab.curl("default/probe", API).stdout == TIMEOUT  # the range deny wins
        on = lab.run("audit", "enable", "--policy", "payments/no-probe-ports")
        assert on.returncode == 0, on.stderr
        mark = _now()
        assert lab.curl("default/probe", API).stdout == "200"
        audited = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert audited["verdict"] == "AUDIT"
        assert _names(audited["ingress_denied_by"]) == ["payments/no-probe-ports (CiliumNetworkPolicy)"]
        assert audited["policy_log"] == [
            "audit (policy payments/no-probe-ports): deny: "
            "CiliumNetworkPolicy payments/no-probe-ports spec.ingressDeny[0]"
        ]
        # another policy's enforced deny still drops
        _apply(lab, tmp_path, "no-probe", NO_PROBE)
        mark = _now()
        assert lab.curl("default/probe", API).stdout == TIMEOUT
        denied = _probe_verdicts(
            _flows_since(lab, mark, "--from-pod", "default/probe", want=_probe_verdicts)
        )[0]
        assert denied["verdict"] == "DROPPED"
        assert _names(denied["ingress_denied_by"]) == ["payments/no-probe (CiliumNetworkPolicy)"]
    finally:
        lab.run("audit", "disable", "--policy", "payments/no-probe-ports")
        _apply(lab, tmp_path, "no-probe", NO_PROBE, delete=True)
        _apply(lab, tmp_path, "no-probe-ports", NO_PROBE_PORTS, delete=True)
        _apply(lab, tmp_path, "probe-to-api", PROBE_TO_API, delete=True)


def test_audit_report_from_the_lab_lists_what_enforcement_would_break(lab):
    out = subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "policy", "audit-report", "--server", lab.relay, "-o", "json"],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    groups = {(g["source"], g["destination"], g["port"], g["direction"]): g for g in report["groups"]}
    probe = groups[("default/probe", "payments/api", "TCP/8080", "INGRESS")]
    assert probe["count"] >= 4  # one per audited connection in the tests above
    assert "payments/no-probe (CiliumNetworkPolicy)" in probe["would_be_denied_by"]
    assert ("payments/frontend", "payments/postgres", "TCP/5432", "INGRESS") in groups
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubblepy.cli",
            "policy",
            "audit-report",
            "--server",
            lab.relay,
            "--namespace",
            "payments",
        ],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert (
        table.stdout.startswith("SOURCE") and "would be dropped if enforcement were turned on" in table.stdout
    )


def test_audit_errors_are_one_line(lab):
    out = lab.run("audit", "enable", "--policy", "payments/nope")
    assert (
        out.returncode == 1
        and out.stderr == "hubble lab: no policy payments/nope is applied (see: hubble lab status)\n"
    )
    both = lab.run("audit", "enable", "payments/api", "--namespace", "payments")
    assert both.returncode == 1 and len(both.stderr.splitlines()) == 1
