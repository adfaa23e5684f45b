"""The pci-cde scenario (root): `hubble lab verify` runs the seed's PCI audit workflow end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import running_lab  # noqa: E402

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("pci") / "state", "--scenario", "pci-cde") as lab:
        yield lab


def test_verify_runs_the_audit_then_enforce_workflow(lab):
    out = lab.run("verify", timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    assert "EGRESS AUDITED" in out.stdout and "198.51.100.50:80" in out.stdout
    assert out.stdout.rstrip().endswith("(drops and the FQDN cache are the evidence)")
    policies = {p["ref"] for p in lab.state()["policies"]}
    assert policies == {"cde/chd-egress-processor-only", "cde/chd-egress-metrics"}
    assert not any(p["audit"] for p in lab.state()["pods"])
    again = lab.run("verify", timeout=400)  # replays from the start
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    cache = json.loads(lab.run("fqdn", "cache", "list", "-o", "json").stdout)
    assert {r["fqdn"] for r in cache} >= {"eu.cardprocessor.com.", "us.cardprocessor.com."}
