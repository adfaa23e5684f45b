"""The payments lab with the real eBPF datapath (root, bcc, kernel headers): policy by identity."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root

API = "http://api.payments:8080/api/v1/orders"
TIMEOUT = "000"  # curl's %{http_code} when no answer came (exit status 28)

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
L4_ONLY = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: api-port-open, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - toPorts:
            - ports: [{port: "8080", protocol: TCP}]
    """)


L3_ONLY = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: default-ns-to-api, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
    """)
ECHO_CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection(('postgres', 5432), 3)\n"
    "s.settimeout(3)\n"
    "for line in sys.stdin:\n"
    "    s.sendall(line.encode())\n"
    "    print(s.recv(100).decode().strip(), flush=True)\n"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("lab") / "state") as lab:
        yield lab


def _ident(lab: Lab, pod: str) -> int:
    return next(p["identity"] for p in lab.state()["pods"] if f"{p['namespace']}/{p['name']}" == pod)


def test_default_deny_drops_the_probe_and_hubble_shows_why(lab):
    assert lab.curl("default/probe", API).stdout == TIMEOUT
    drops = [
        f
        for f in lab.flows("--namespace", "payments", "--verdict", "DROPPED")
        if f.get("drop_reason_desc") == "POLICY_DENIED"
    ]
    assert drops, "no Policy denied flow"
    flow = drops[-1]
    assert flow["source"]["pod_name"] == "probe" and flow["source"]["namespace"] == "default"
    assert flow["destination"]["pod_name"] == "api"
    assert flow["source"]["identity"] == _ident(lab, "default/probe")
    assert flow["destination"]["identity"] == _ident(lab, "payments/api")
    assert flow["l4"]["TCP"]["destination_port"] == 8080


def test_allow_by_labels_and_replies_pass(lab):
    assert lab.curl("payments/frontend", "http://api:8080/api/v1/orders").stdout == "200"
    flows = lab.flows("--from-pod", "payments/api", "--to-pod", "payments/frontend")
    assert any(f.get("is_reply") is True and f["verdict"] == "FORWARDED" for f in flows)
    # api -> postgres:5432 is allowed; frontend -> postgres is not
    ok = lab.exec(
        "payments/api",
        "python3",
        "-c",
        "import socket; s=socket.create_connection(('postgres', 5432), 3); s.sendall(b'hi'); print(s.recv(2).decode())",
    )
    assert ok.stdout.strip() == "hi", ok.stderr
    denied = lab.exec(
        "payments/frontend", "python3", "-c", "import socket; socket.create_connection(('postgres', 5432), 2)"
    )
    assert denied.returncode != 0 and "timed out" in denied.stderr


def test_policy_update_at_runtime_l3_l4_and_l4_only(lab, tmp_path):
    policy = tmp_path / "probe-to-api.yaml"
    policy.write_text(PROBE_TO_API)
    applied = lab.run("policy", "apply", str(policy))
    assert applied.returncode == 0, applied.stderr
    assert "payments/probe-to-api" in applied.stdout and "1 added" in applied.stdout
    assert lab.curl("default/probe", API).stdout == "200"
    deleted = lab.run("policy", "delete", str(policy))
    assert deleted.returncode == 0 and "1 removed" in deleted.stdout
    assert lab.curl("default/probe", API).stdout == TIMEOUT

    l4 = tmp_path / "l4.yaml"
    l4.write_text(L4_ONLY)
    assert lab.run("policy", "apply", str(l4)).returncode == 0
    assert lab.curl("default/probe", API).stdout == "200"
    assert lab.run("policy", "delete", str(l4)).returncode == 0
    assert lab.curl("default/probe", API).stdout == TIMEOUT

    l3 = tmp_path / "l3.yaml"
    l3.write_text(L3_ONLY)
    assert lab.run("policy", "apply", str(l3)).returncode == 0
    assert lab.curl("default/probe", API).stdout == "200"
    assert lab.run("policy", "delete", str(l3)).returncode == 0
    assert lab.curl("default/probe", API).stdout == TIMEOUT


def test_established_connection_survives_a_policy_update(lab, tmp_path):
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubblepy.cli.lab",
            "exec",
            "payments/api",
            "--",
            "python3",
            "-u",
            "-c",
            ECHO_CLIENT,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab.env,
    )
    try:
        client.stdin.write("one\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "one"
        # api-allow again with one more egress port: the 5432 entry is untouched, 5433 is added
        scenario = Path(__file__).resolve().parents[2] / "hubblepy/lab/scenarios/payments/api-allow.yaml"
        wider = tmp_path / "api-allow.yaml"
        wider.write_text(
            scenario.read_text().replace(
                '            - port: "5432"\n              protocol: TCP\n',
                '            - port: "5432"\n              protocol: TCP\n            - port: "5433"\n              protocol: TCP\n',
            )
        )
        applied = lab.run("policy", "apply", str(wider))
        assert applied.returncode == 0 and "1 added, 0 changed, 0 removed" in applied.stdout, applied.stdout
        client.stdin.write("two\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "two"
    finally:
        client.kill()
        client.wait()
        lab.run(
            "policy",
            "apply",
            str(Path(__file__).resolve().parents[2] / "hubblepy/lab/scenarios/payments/api-allow.yaml"),
        )


def test_bad_policy_is_rejected_whole_and_changes_nothing(lab, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        PROBE_TO_API + "---\n" + PROBE_TO_API.replace("probe-to-api", "second").replace('"8080"', '"80800"')
    )
    out = lab.run("policy", "apply", str(bad))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"hubble lab: policy file {bad}, document 2 (payments/second): "
        'spec.ingress[0].toPorts[0].ports[0].port: "80800" is not a valid port'
    )
    assert "payments/probe-to-api" not in {p["ref"] for p in lab.state()["policies"]}
    assert lab.curl("default/probe", API).stdout == TIMEOUT


def test_audit_mode_lets_denied_traffic_pass_with_verdict_audit(lab):
    assert lab.run("audit", "enable", "payments/api").returncode == 0
    try:
        assert lab.curl("default/probe", API).stdout == "200"
        audited = lab.flows("--verdict", "AUDIT", "--from-pod", "default/probe")
        assert audited and audited[-1]["destination"]["pod_name"] == "api"
    finally:
        assert lab.run("audit", "disable", "payments/api").returncode == 0
    assert lab.curl("default/probe", API).stdout == TIMEOUT


def test_recreated_pod_keeps_identity_and_policy(lab):
    before = next(p for p in lab.state()["pods"] if p["name"] == "api")
    out = lab.run("pod", "recreate", "payments/api")
    assert out.returncode == 0, out.stderr
    after = next(p for p in lab.state()["pods"] if p["name"] == "api")
    assert after["ip"] != before["ip"] and after["ep_id"] != before["ep_id"]
    assert after["identity"] == before["identity"]
    assert lab.curl("payments/frontend", "http://api:8080/healthz").stdout == "200"
    assert lab.curl("default/probe", API).stdout == TIMEOUT
    # the flows name the new endpoint: same pod, same identity, new IP and endpoint id
    to_new = [f for f in lab.flows("--to-ip", after["ip"]) if f["destination"].get("pod_name") == "api"]
    assert to_new
    assert {f["destination"]["identity"] for f in to_new} == {before["identity"]}
    assert {f["destination"]["ID"] for f in to_new} == {after["ep_id"]}


def test_verify_tells_the_article_story(lab):
    out = lab.run("verify")
    assert out.returncode == 0, out.stderr
    assert "Policy denied DROPPED" in out.stdout
    assert "INGRESS AUDITED" in out.stdout
    assert out.stdout.rstrip().endswith("audit mode reports AUDIT")
    assert not any(p["audit"] for p in lab.state()["pods"])


def test_the_node_maps_perf_rings_of_its_monitor_num_pages(lab):
    """The node's perf rings (one mapping per CPU in its address space) have the default size."""
    import mmap

    from hubblepy.monitor.options import DEFAULT_NUM_PAGES, ring_bytes_per_cpu

    state = lab.state()
    assert state["monitor_num_pages"] == DEFAULT_NUM_PAGES
    sizes = []
    for line in Path(f"/proc/{state['pid']}/maps").read_text().splitlines():
        if "perf_event" in line:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            sizes.append(hi - lo)
    assert len(sizes) == len(os.sched_getaffinity(0)) or len(sizes) == os.cpu_count()
    assert set(sizes) == {ring_bytes_per_cpu(DEFAULT_NUM_PAGES)}
    assert ring_bytes_per_cpu(DEFAULT_NUM_PAGES) == (DEFAULT_NUM_PAGES + 1) * mmap.PAGESIZE
