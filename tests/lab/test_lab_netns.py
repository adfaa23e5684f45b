"""`hubble lab up --no-datapath` / `down` with real network namespaces (root)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import TEST_PREFIX, Lab, lab_netns, needs_root, pid_alive

pytestmark = pytest.mark.root


@pytest.fixture
def lab(tmp_path):
    needs_root()
    if lab_netns():
        pytest.skip(f"namespaces with the test prefix {TEST_PREFIX} exist already")
    lab = Lab(tmp_path / "lab")
    try:
        yield lab
    finally:
        lab.down()


def test_pods_reach_each_other_by_cluster_name_and_down_leaves_nothing(lab):
    up = lab.up("--no-datapath")
    assert up.returncode == 0, up.stderr
    state = lab.state()
    assert "payments/api" in up.stdout and state["datapath"] is False
    names = {f"{TEST_PREFIX}{p['namespace']}.{p['name']}" for p in state["pods"]} | {f"{TEST_PREFIX}lab-node"}
    names.add(f"{TEST_PREFIX}world")  # the scenario's hosts outside the cluster
    assert set(lab_netns()) == names
    # HTTP by short name and namespace-qualified name through the lab's kube-dns
    assert lab.curl("payments/frontend", "http://api:8080/api/v1/orders").stdout == "200"
    assert lab.curl("default/probe", "http://api.payments:8080/healthz", "-X", "POST").stdout == "201"
    dig = lab.exec("payments/frontend", "dig", "+short", "+tcp", "postgres.payments.svc.cluster.local")
    postgres_ip = next(p["ip"] for p in state["pods"] if p["name"] == "postgres")
    assert dig.stdout.strip() == postgres_ip
    echo = lab.exec(
        "payments/api",
        "python3",
        "-c",
        "import socket; s=socket.create_connection(('postgres', 5432), 3); s.sendall(b'ping'); print(s.recv(4).decode())",
    )
    assert echo.stdout.strip() == "ping", echo.stderr
    status = lab.run("status")
    assert status.returncode == 0 and "kube-system/kube-dns" in status.stdout
    server_pids = [s["pid"] for p in state["pods"] for s in p["servers"]]
    node_pid = state["pid"]
    assert server_pids and all(pid_alive(p) for p in server_pids)

    down = lab.down()
    assert down.returncode == 0 and down.stdout.strip() == "lab removed"
    assert lab_netns() == []
    assert not any(pid_alive(p) for p in [*server_pids, node_pid])
    assert not lab.folder.exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "hpv" not in links
    again = lab.down()
    assert again.returncode == 0 and again.stdout.strip() == "no lab to remove"


def test_exec_exit_status_is_the_commands_127_not_found_126_not_executable(lab, tmp_path):
    up = lab.up("--no-datapath")
    assert up.returncode == 0, up.stderr
    assert lab.exec("payments/api", "sh", "-c", "exit 3").returncode == 3
    missing = lab.exec("payments/api", "hubblepy-no-such-command")
    assert missing.returncode == 127
    assert missing.stderr.strip() == "hubble lab: hubblepy-no-such-command: command not found"
    assert lab.exec("payments/api", str(tmp_path / "nothing-here")).returncode == 127
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o644)
    refused = lab.exec("payments/api", str(script))
    assert (
        refused.returncode == 126
        and refused.stderr.count("\n") == 1
        and "permission denied" in refused.stderr
    )
    assert lab.exec("payments/api", str(tmp_path)).returncode == 126  # a directory
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hubblepy-lab-tool").write_text("#!/bin/sh\necho tool\n")  # on PATH, mode 0644
    lab.env["PATH"] = f"{bin_dir}:{lab.env.get('PATH', '/usr/bin:/bin')}"
    assert lab.exec("payments/api", "hubblepy-lab-tool").returncode == 126
    (bin_dir / "hubblepy-lab-tool").chmod(0o755)
    ran = lab.exec("payments/api", "hubblepy-lab-tool")
    assert ran.returncode == 0 and ran.stdout.strip() == "tool"


def test_down_after_a_crash_removes_leftovers(lab):
    assert lab.up("--no-datapath").returncode == 0
    state = lab.state()
    import os
    import signal

    os.kill(state["pid"], signal.SIGKILL)  # the lab node dies without cleaning up
    server_pids = [s["pid"] for p in state["pods"] for s in p["servers"]]
    assert lab_netns()
    down = lab.down()
    assert down.returncode == 0
    assert lab_netns() == []
    assert not any(pid_alive(p) for p in server_pids)


def test_commands_without_a_lab_say_so(lab):
    for args in (["status"], ["exec", "payments/api", "--", "true"], ["audit", "enable", "payments/api"]):
        out = lab.run(*args)
        assert out.returncode == 1
        assert out.stderr.strip() == "hubble lab: the lab is not up (run: hubble lab up)"


def test_bad_scenario_is_one_line_and_creates_nothing(lab, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npods:\n  - {name: a, servers: [{http: {port: 0}}]}\n")
    out = lab.up("--scenario", str(bad))
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        == f"hubble lab: scenario {bad}: pods[0].servers[0].http.port: 0 is not a valid port"
    )
    assert lab_netns() == []


def test_without_root_one_line_and_non_zero(tmp_path):
    needs_root()  # we need root to drop to an unprivileged user
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is missing")
    out = _lab_command(tmp_path, "up", user=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert out.returncode == 1
    assert (
        out.stderr
        == "hubble lab: hubble lab up needs root (network namespaces, veths and eBPF): run it as root\n"
    )
    assert lab_netns() == []


@pytest.mark.parametrize("pages", ["1000", "0", "131072", "many"])
def test_bad_monitor_num_pages_is_refused_before_anything_is_made(tmp_path, pages):
    out = _lab_command(tmp_path, "up", "--monitor-num-pages", pages)
    assert out.returncode == 1
    assert out.stderr.startswith("hubble lab: --monitor-num-pages must be ") and out.stderr.count("\n") == 1
    assert pages in out.stderr
    assert not (tmp_path / "lab").exists()


def _lab_command(tmp_path, *argv: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    """``hubble lab ARGV`` in a lab folder of its own (``user``: a command prefix such as setpriv)."""
    lab = Lab(tmp_path / "lab")
    return subprocess.run(
        [*(user or []), sys.executable, "-m", "hubblepy.cli.lab", *argv],
        capture_output=True,
        text=True,
        env=lab.env,
        cwd=lab.env["PYTHONPATH"],
        timeout=60,
    )
