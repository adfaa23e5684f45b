"""`hubble lab up --prometheus`: the probe's policy drop reaches the node's /metrics and a real Prometheus."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
from agentproc import scrape  # noqa: E402
from labtools import TEST_PREFIX, Lab, free_port, lab_netns, needs_root, pid_alive  # noqa: E402

from hubblepy.metrics.prometheus import query  # noqa: E402

pytestmark = pytest.mark.root

API = "http://api.payments:8080/api/v1/orders"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    needs_root()
    if shutil.which("prometheus") is None:
        pytest.skip("Debian's prometheus package is not installed (scripts/bootstrap.sh installs it)")
    try:
        from hubblepy.datapath import DatapathUnavailable, check_environment
    except ImportError as exc:
        pytest.skip(f"datapath package not importable: {exc}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    if lab_netns():
        pytest.skip(f"namespaces with the test prefix {TEST_PREFIX} exist already")
    lab = Lab(tmp_path_factory.mktemp("lab") / "state")
    lab.metrics = f"127.0.0.1:{free_port()}"
    lab.prometheus = f"127.0.0.1:{free_port()}"
    lab.relay_metrics = f"127.0.0.1:{free_port()}"
    try:
        up = lab.up(
            "--metrics-address",
            lab.metrics,
            "--prometheus",
            "--prometheus-address",
            lab.prometheus,
            "--relay-metrics-address",
            lab.relay_metrics,
        )
        assert up.returncode == 0, up.stderr
        assert f"Prometheus: http://{lab.prometheus}" in up.stdout
        yield lab
    finally:
        pid = lab.state().get("prometheus_pid", 0) if (lab.folder / "state.json").exists() else 0
        down = lab.down()
        assert down.returncode == 0, down.stderr
        assert lab_netns() == []
        assert not pid or not pid_alive(pid), "prometheus outlived the lab"


def wait_for(what, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_probe_drop_is_counted_on_the_node_and_in_prometheus(lab):
    assert lab.curl("default/probe", API).stdout == "000"  # default-deny: the request times out

    def node_drops() -> float:
        return sum(
            v
            for labels, v in scrape(int(lab.metrics.rsplit(":", 1)[1]))["hubble_drop_total"]
            if labels["reason"] == "POLICY_DENIED"
            and labels["source_namespace"] == "default"
            and labels["destination_namespace"] == "payments"
        )

    assert wait_for(node_drops, 20) >= 1

    def by_reason() -> dict[str, float]:
        result = query(lab.prometheus, "sum by (reason) (hubble_drop_total)")
        return {r["metric"].get("reason", ""): float(r["value"][1]) for r in result}

    reasons = wait_for(lambda: by_reason().get("POLICY_DENIED", 0) >= 1 and by_reason())
    assert reasons and reasons["POLICY_DENIED"] >= 1, reasons

    ready = wait_for(
        lambda: query(lab.prometheus, 'hubble_relay_pool_peer_connection_status{status="READY"}')
    )
    assert [float(r["value"][1]) for r in ready] == [1.0]
    up = {r["metric"]["job"]: r["value"][1] for r in query(lab.prometheus, "up")}
    assert up == {"hubble": "1", "hubble-relay": "1"}
