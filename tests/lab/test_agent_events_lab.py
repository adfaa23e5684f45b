"""Agent events of the lab node (root): `hubble observe agent-events` against the node's agent.

A real payments lab: the start-up events (AGENT_STARTED, one POLICY_UPDATED per policy, one
ENDPOINT_CREATED and IPCACHE_UPSERTED per pod), a policy apply and delete seen by ``--follow``, a
pod recreation, and the /32 identity a toFQDNs answer puts into the ipcache.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubbletest import REPO_ROOT  # noqa: E402
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root

PROBE_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: events-probe
  namespace: payments
spec:
  endpointSelector:
    matchLabels:
      app: postgres
  ingress:
  - toPorts:
    - ports:
      - port: "5432"
        protocol: TCP
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("agentev") / "state") as lab:
        yield lab


def observe(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "observe", "agent-events", "--server", lab.agent, *args],
        capture_output=True,
        text=True,
        env=lab.env,
        cwd=REPO_ROOT,
        timeout=60,
    )


def events(lab: Lab) -> list[dict]:
    out = observe(lab, "--last", "1000", "-o", "json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_start_up_events(lab):
    state = lab.state()
    rows = events(lab)
    kinds = [r["agent_event"]["type"] for r in rows]
    assert kinds[0] == "AGENT_STARTED"
    assert rows[0]["node_name"] == state["node"]
    names = {
        label.split("=", 1)[1]
        for r in rows
        if r["agent_event"]["type"] == "POLICY_UPDATED"
        for label in r["agent_event"]["policy_update"]["labels"]
        if label.startswith("k8s:io.cilium.k8s.policy.name=")
    }
    assert {p["ref"].rsplit("/", 1)[-1] for p in state["policies"]} <= names
    created = {
        (e["namespace"], e["pod_name"]): e
        for r in rows
        if r["agent_event"]["type"] == "ENDPOINT_CREATED"
        for e in [r["agent_event"]["endpoint_update"]]
    }
    ipcache = {
        u["cidr"]: u
        for r in rows
        if r["agent_event"]["type"] == "IPCACHE_UPSERTED"
        for u in [r["agent_event"]["ipcache_update"]]
    }
    assert ipcache[f"{state['gateway']}/32"]["identity"] == 1  # reserved:host
    for pod in state["pods"]:
        event = created[(pod["namespace"], pod["name"])]
        assert event["id"] == str(pod["ep_id"])
        assert sorted(event["labels"]) == sorted(pod["labels"])
        entry = ipcache[f"{pod['ip']}/32"]
        assert entry["identity"] == pod["identity"]
        assert (entry["namespace"], entry["pod_name"]) == (pod["namespace"], pod["name"])
    for prefix, identity in state["cidr_identities"].items():
        assert ipcache[prefix]["identity"] == identity

    compact = observe(lab, "--last", "1000")
    assert compact.returncode == 0, compact.stderr
    lines = compact.stdout.splitlines()
    assert len(lines) == len(rows)
    assert ": AGENT_STARTED (start time: " in lines[0]
    api = next(p for p in state["pods"] if (p["namespace"], p["name"]) == ("payments", "api"))
    assert any(
        line.endswith(f": ENDPOINT_CREATED (id: {api['ep_id']}, namespace: payments, pod name: api)")
        for line in lines
    )
    assert any(
        f": IPCACHE_UPSERTED (cidr: {api['ip']}/32, identity: {api['identity']}, encrypt key: 0)" in line
        for line in lines
    )


def _follow(lab: Lab) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubblepy.cli",
            "observe",
            "agent-events",
            "--server",
            lab.agent,
            "--follow",
            "--last",
            "1",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=lab.env,
        cwd=REPO_ROOT,
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _wait_for(lines: queue.Queue, match) -> dict:
    while True:
        row = lines.get(timeout=30)  # queue.Empty fails the test
        if match(row["agent_event"]):
            return row["agent_event"]


def _names(event: dict) -> set[str]:
    return {
        label.split("=", 1)[1]
        for label in event["policy_update"].get("labels", [])
        if label.startswith("k8s:io.cilium.k8s.policy.name=")
    }


def test_follow_sees_a_policy_apply_and_delete(lab):
    policy = lab.folder.parent / "events-probe.yaml"
    policy.write_text(PROBE_POLICY)
    proc, lines = _follow(lab)
    try:
        # the newest stored event comes first: the stream is open before the policy is applied
        _wait_for(lines, lambda e: True)
        revision = lab.state()["policy_revision"]
        applied = lab.run("policy", "apply", str(policy))
        assert applied.returncode == 0, applied.stderr
        update = _wait_for(lines, lambda e: e["type"] == "POLICY_UPDATED" and "events-probe" in _names(e))
        assert update["policy_update"]["revision"] == str(revision + 1)
        assert update["policy_update"]["rule_count"] == "1"
        assert "k8s:io.cilium.k8s.policy.namespace=payments" in update["policy_update"]["labels"]
        deleted = lab.run("policy", "delete", str(policy))
        assert deleted.returncode == 0, deleted.stderr
        gone = _wait_for(lines, lambda e: e["type"] == "POLICY_DELETED" and "events-probe" in _names(e))
        assert gone["policy_update"]["revision"] == str(revision + 2)
    finally:
        proc.terminate()
        proc.wait(15)


def test_pod_recreation_deletes_and_creates_the_endpoint(lab):
    before = {(p["namespace"], p["name"]): p for p in lab.state()["pods"]}[("payments", "postgres")]
    out = lab.run("pod", "recreate", "payments/postgres")
    assert out.returncode == 0, out.stderr
    after = {(p["namespace"], p["name"]): p for p in lab.state()["pods"]}[("payments", "postgres")]
    rows = [r["agent_event"] for r in events(lab)]
    deleted = [e for e in rows if e["type"] == "ENDPOINT_DELETED"]
    assert deleted[-1]["endpoint_update"]["id"] == str(before["ep_id"])
    assert deleted[-1]["endpoint_update"]["pod_name"] == "postgres"
    created = [e for e in rows if e["type"] == "ENDPOINT_CREATED"]
    assert created[-1]["endpoint_update"]["id"] == str(after["ep_id"])
    gone = [e["ipcache_update"] for e in rows if e["type"] == "IPCACHE_DELETED"]
    assert {"cidr": f"{before['ip']}/32", "identity": before["identity"]}.items() <= gone[-1].items()
    new = [e["ipcache_update"] for e in rows if e["type"] == "IPCACHE_UPSERTED"]
    assert new[-1]["cidr"] == f"{after['ip']}/32" and new[-1]["identity"] == after["identity"]


def test_a_tofqdns_answer_upserts_its_ip_identity(lab):
    code = lab.exec(
        "payments/api",
        "curl",
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "https://api.stripe.com",
    ).stdout
    assert code == "200"
    status = lab.run("status", "-o", "json")  # state.json as of now
    assert status.returncode == 0, status.stderr
    cidrs = json.loads(status.stdout)["cidr_identities"]
    learned = {p: i for p, i in cidrs.items() if p in ("192.0.2.20/32", "192.0.2.21/32")}
    assert learned, cidrs
    upserts = {
        e["ipcache_update"]["cidr"]: e["ipcache_update"]["identity"]
        for e in (r["agent_event"] for r in events(lab))
        if e["type"] == "IPCACHE_UPSERTED"
    }
    for prefix, identity in learned.items():
        assert upserts[prefix] == identity
