"""toFQDNs on the lab (root): the seed's Verify step 4 on payments, and the pci-cde workflow.

Real pods, the DNS proxy, the node's FQDN cache and the eBPF datapath: ``curl`` from the pods, flows
from ``hubble observe`` and the cache from ``hubble lab fqdn cache list``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root
TIMEOUT = "000"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("fqdn") / "state") as lab:
        yield lab


def _code(lab: Lab, pod: str, url: str, *extra: str) -> str:
    return lab.exec(pod, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", *extra, url).stdout


def test_api_reaches_the_allowed_name_and_its_flows_carry_the_name(lab):
    assert _code(lab, "payments/api", "https://api.stripe.com") == "200"
    time.sleep(0.5)
    flows = lab.flows("--from-pod", "payments/api", "--to-port", "443", "--verdict", "FORWARDED")
    named = [f for f in flows if f.get("destination_names") == ["api.stripe.com"]]
    assert named, flows
    assert named[0]["IP"]["destination"] in ("192.0.2.20", "192.0.2.21")
    verdicts = lab.flows("--from-pod", "payments/api", "--to-port", "443", "--type", "policy-verdict")
    allowed_by = {p["name"] for f in verdicts for p in f.get("egress_allowed_by", [])}
    assert "api-egress-fqdn" in allowed_by
    queries = {f["l7"]["dns"]["query"] for f in lab.flows("--from-pod", "payments/api", "--protocol", "dns")}
    assert "api.stripe.com." in queries


def test_a_name_outside_tofqdns_times_out_with_a_named_policy_drop(lab):
    assert _code(lab, "payments/api", "https://example.com", "-m", "3") == TIMEOUT
    time.sleep(0.5)
    drops = lab.flows("--from-pod", "payments/api", "--to-ip", "198.51.100.80", "--verdict", "DROPPED")
    assert drops and drops[-1]["drop_reason_desc"] == "POLICY_DENIED"
    assert "api-egress-fqdn" in {p["name"] for p in drops[-1]["egress_denied_by"]}
    assert drops[-1]["destination_names"] == ["example.com"]  # answered (DNS allowed), not selected


def test_fqdn_cache_list_table_and_json(lab):
    assert _code(lab, "payments/api", "https://api.stripe.com") == "200"
    table = lab.run("fqdn", "cache", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs"]
    assert any(" api.stripe.com. " in row for row in rows)
    out = lab.run("fqdn", "cache", "list", "-o", "json", "--endpoint", "payments/api")
    assert out.returncode == 0, out.stderr
    lookups = json.loads(out.stdout)
    stripe = [r for r in lookups if r["fqdn"] == "api.stripe.com."]
    assert stripe and stripe[0]["pod"] == "payments/api" and stripe[0]["ttl"] == 5
    assert set(stripe[0]) >= {"endpoint-id", "source", "ttl", "lookup-time", "expiration-time", "ips"}
    assert lab.run("fqdn", "cache", "list", "--endpoint", "payments/nobody").returncode != 0


def test_rotating_answers_are_all_followed(lab):
    # the world resolver answers api.stripe.com with its two addresses in turn
    seen = set()
    for _ in range(4):
        out = lab.exec(
            "payments/api",
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{remote_ip}",
            "https://api.stripe.com",
        ).stdout.split()
        assert out[0] == "200"
        seen.add(out[1])
    assert seen == {"192.0.2.20", "192.0.2.21"}
