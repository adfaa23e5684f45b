"""The whole loop on the payments lab with the real eBPF datapath (root, bcc, kernel headers).

Audit mode for the payments namespace, traffic that default-deny would stop, `hubble policy suggest`
over the AUDIT flows, `hubble lab policy apply`, enforcement back on: the same traffic passes and
traffic outside the observed set is dropped. Then `hubble evidence export` records the drops with the
lab's policies in force, and `hubble evidence verify` checks the bundle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from labtools import REPO_ROOT, Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root

WORLD_URL = "http://192.0.2.10/"
API = "http://api.payments:8080/api/v1/orders"
TIMEOUT = "000"  # curl's %{http_code} when no answer came


def connect(port: int = 5432, host: str = "postgres") -> str:
    return f"import socket; socket.create_connection(({host!r}, {port}), 3); print('connected')"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("lab") / "state") as lab:
        yield lab


def hubble(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", *args],
        capture_output=True,
        text=True,
        env=lab.env,
        cwd=REPO_ROOT,
        timeout=120,
    )


def the_observed_traffic(lab: Lab) -> tuple[str, str]:
    """frontend -> world:80 and frontend -> postgres:5432: neither is allowed by the scenario."""
    world = lab.curl("payments/frontend", WORLD_URL).stdout
    db = lab.exec("payments/frontend", "python3", "-c", connect()).stdout.strip()
    return world, db


def test_suggested_policies_let_the_observed_traffic_pass_and_drop_the_rest(lab, tmp_path):
    # Enforced, the scenario stops both connections.
    assert the_observed_traffic(lab) == (TIMEOUT, "")
    audit = lab.run("audit", "enable", "--namespace", "payments")
    assert audit.returncode == 0, audit.stderr
    assert the_observed_traffic(lab) == ("200", "connected")
    # The unlabeled probe: only its namespace could select it, so no rule is suggested for it.
    assert lab.curl("default/probe", API).stdout == "200"
    time.sleep(0.5)  # let the events reach the ring

    suggested = hubble(lab, "policy", "suggest", "--server", lab.relay, "--verdict", "AUDIT", "--since", "5m")
    assert suggested.returncode == 0, suggested.stderr
    text = suggested.stdout
    assert "name: suggested-frontend" in text and "name: suggested-postgres" in text
    assert "- world" in text and "app: postgres" in text
    assert "# Not suggested" in text and "default/probe (probe) -> payments/api" in text
    assert "run: probe" not in text and "io.kubernetes.pod.namespace: default" not in text
    assert "listed at the end of the output" in suggested.stderr
    policy_file = tmp_path / "suggested.yaml"
    policy_file.write_text(text)
    applied = lab.run("policy", "apply", str(policy_file))
    assert applied.returncode == 0, applied.stderr
    audit = lab.run("audit", "disable", "--namespace", "payments")
    assert audit.returncode == 0, audit.stderr

    enforced_since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Enforcement back on: what was observed passes ...
    assert the_observed_traffic(lab) == ("200", "connected")
    # ... and what was not is dropped: api and postgres to the world, the probe to postgres.
    assert lab.curl("payments/api", WORLD_URL).stdout == TIMEOUT
    assert lab.curl("payments/postgres", WORLD_URL).stdout == TIMEOUT
    assert lab.exec("default/probe", "python3", "-c", connect(host="postgres.payments")).stdout.strip() == ""
    assert lab.curl("default/probe", API).stdout == TIMEOUT
    time.sleep(0.5)
    drops = lab.flows("--namespace", "payments", "--verdict", "DROPPED", "--since", enforced_since)
    dropped_pairs = {(f["source"].get("pod_name"), f["l4"]["TCP"]["destination_port"]) for f in drops}
    assert ("api", 80) in dropped_pairs and ("probe", 5432) in dropped_pairs
    assert not any(f["source"].get("pod_name") == "frontend" for f in drops)

    # Evidence of those drops, with the policies in force (the suggested ones among them): the server is
    # the lab's relay, so the default --policies-from auto asks the lab node.
    bundle = tmp_path / "evidence"
    export = hubble(
        lab, "evidence", "export", "--server", lab.relay, "--namespace", "payments", "--verdict", "DROPPED",
        "--since", enforced_since, "--output", str(bundle),
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    names = {p["name"] for p in manifest["policies"]["items"]}
    assert {"default-deny", "suggested-frontend", "suggested-postgres"} <= names
    assert manifest["completeness"]["nodes"]["answered"] == [lab.state()["node"]]
    assert manifest["completeness"]["complete"] is True, manifest["completeness"]["problems"]
    assert manifest["counts"]["by_verdict"].get("DROPPED", 0) >= 2
    observed = hubble(
        lab, "observe", "--server", lab.relay, "--namespace", "payments", "--verdict", "DROPPED",
        "--since", manifest["query"]["since"], "--until", manifest["query"]["until"] or manifest["created"],
        "-o", "json",
    )  # fmt: skip
    assert observed.returncode == 0
    assert (bundle / "flows.jsonl").read_text() == observed.stdout
    verify = hubble(lab, "evidence", "verify", str(bundle))
    assert verify.returncode == 0 and "intact" in verify.stdout
