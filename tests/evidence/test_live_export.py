"""Evidence export from a relay over real agent processes: same bytes as observe, node completeness, rings."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc
from hubblepy.sample.path import sample_capture_path

_spec = importlib.util.spec_from_file_location(
    "liveprocs", Path(__file__).parents[1] / "observer" / "liveprocs.py"
)
liveprocs = sys.modules.get("liveprocs") or importlib.util.module_from_spec(_spec)
if "liveprocs" not in sys.modules:
    sys.modules["liveprocs"] = liveprocs
    _spec.loader.exec_module(liveprocs)

SAMPLE = sample_capture_path()


def hubble(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*liveprocs.hubble_cli(), *args], capture_output=True, env=liveprocs.clean_env(**env), timeout=120
    )


def wait_for_flows(address: str, count: int) -> None:
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + 30
    while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def procs():
    owner = liveprocs.Procs()
    yield owner
    owner.close()


def test_live_export_matches_observe_and_names_the_node_that_did_not_answer(procs, tmp_path):
    node = procs.agent("n1", "--replay", SAMPLE, "--replay-verbatim", "--rate", "0")
    wait_for_flows(node.address, 78)
    down = free_port()  # nobody listens there
    relay = procs.relay("--peers", f"n1={node.address},n2=127.0.0.1:{down}")
    out = tmp_path / "b"
    query = ["--namespace", "payments", "--not", "--verdict", "FORWARDED"]
    result = hubble("evidence", "export", "--server", relay.address, *query, "--output", str(out))
    assert result.returncode == 0, result.stderr.decode()
    assert "NOT complete" in result.stdout.decode()
    observed = hubble("observe", "--server", relay.address, *query, "--all", "-o", "json")
    assert observed.returncode == 0 and observed.stdout
    assert (out / "flows.jsonl").read_bytes() == observed.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    nodes = manifest["completeness"]["nodes"]
    assert nodes["asked"] == ["n1", "n2"] and nodes["answered"] == ["n1"]
    assert any(p.startswith("node n2 did not answer") for p in manifest["completeness"]["problems"])
    assert manifest["query"]["source"] == {"kind": "server", "address": relay.address}
    assert manifest["query"]["observe_command"].endswith("--all -o json")
    report = (out / "report.html").read_text()
    assert "NOT complete:" in report and "<td>n2</td><td>NO</td>" in report
    assert hubble("evidence", "verify", str(out)).returncode == 0


def test_window_start_older_than_the_ring_is_reported(procs, tmp_path):
    node = procs.agent("n1", "--replay", SAMPLE, "--rate", "0", "--event-buffer-capacity", "63")
    wait_for_flows(node.address, 500)
    relay = procs.relay("--peers", f"n1={node.address}")
    out = tmp_path / "b"
    result = hubble("evidence", "export", "--server", relay.address, "--since", "1h", "--output", str(out))
    assert result.returncode == 0, result.stderr.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    ring = manifest["completeness"]["rings"][0]
    assert ring["node"] == "n1" and ring["ring_wrapped"] is True and ring["window_start_held"] is False
    assert ring["oldest_flow_time"] > manifest["query"]["since"]
    assert any("oldest flow still held" in p for p in manifest["completeness"]["problems"])
    assert manifest["query"]["since_given"] == "1h"


def test_complete_when_every_node_answered_and_nothing_was_overwritten(procs, tmp_path):
    node = procs.agent("n1", "--replay", SAMPLE, "--replay-verbatim", "--rate", "0")
    wait_for_flows(node.address, 78)
    relay = procs.relay("--peers", f"n1={node.address}")
    out = tmp_path / "b"
    result = hubble(
        "evidence", "export", "--server", relay.address, "--verdict", "DROPPED", "--output", str(out)
    )
    assert result.returncode == 0, result.stderr.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["completeness"]["complete"] is True, manifest["completeness"]["problems"]
    assert manifest["counts"]["by_verdict"] == {"DROPPED": 8}
    assert manifest["completeness"]["rings"][0]["window_start_held"] is True


def test_policies_are_recorded_only_from_the_lab_that_serves_the_exported_server(procs, tmp_path):
    node = procs.agent("n1", "--replay", SAMPLE, "--replay-verbatim", "--rate", "0")
    wait_for_flows(node.address, 78)
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    no_lab = hubble("evidence", "export", "--server", node.address, "--output", str(tmp_path / "a"),
                    HUBBLEPY_LAB_DIR=str(lab_dir))  # fmt: skip
    assert no_lab.returncode == 0, no_lab.stderr.decode()
    policies = json.loads((tmp_path / "a" / "manifest.json").read_text())["policies"]
    assert policies["source"] == "none" and f"no lab state at {lab_dir}" in policies["note"]
    # A lab whose relay is another address: not this server's policies.
    (lab_dir / "state.json").write_text(json.dumps({"relay": "127.0.0.1:1", "agent": "127.0.0.1:2"}))
    other = hubble("evidence", "export", "--server", node.address, "--output", str(tmp_path / "b"),
                   HUBBLEPY_LAB_DIR=str(lab_dir))  # fmt: skip
    assert other.returncode == 0
    note = json.loads((tmp_path / "b" / "manifest.json").read_text())["policies"]["note"]
    assert "serves 127.0.0.1:1, 127.0.0.1:2, not" in note
    # This server's lab, but its node does not answer: said so, and --policies-from lab fails closed.
    port = node.address.rsplit(":", 1)[1]
    (lab_dir / "state.json").write_text(json.dumps({"relay": f"localhost:{port}"}))
    silent = hubble("evidence", "export", "--server", node.address, "--output", str(tmp_path / "c"),
                    HUBBLEPY_LAB_DIR=str(lab_dir))  # fmt: skip
    assert silent.returncode == 0
    note = json.loads((tmp_path / "c" / "manifest.json").read_text())["policies"]["note"]
    assert "no lab node answered" in note
    strict = hubble("evidence", "export", "--server", node.address, "--policies-from", "lab",
                    "--output", str(tmp_path / "d"), HUBBLEPY_LAB_DIR=str(lab_dir))  # fmt: skip
    assert strict.returncode == 1 and "--policies-from lab: the lab is not up" in strict.stderr.decode()
    assert not (tmp_path / "d").exists()
