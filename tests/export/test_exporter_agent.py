"""`hubble agent --export-file-path`: filtered, masked, rotated exports that observe --input-file reads,
and a full disk that is reported and counted while the agent keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from agentproc import Agent, free_port, scrape
from hubbletest import REPO_ROOT, run_hubble

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def observe_file(path: Path, *args: str) -> bytes:
    result = run_hubble(["observe", "--input-file", str(path), "-o", "json", *args])
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_allowlist_export_is_what_observe_prints(tmp_path: Path) -> None:
    out = tmp_path / "events.log"
    port = free_port()
    agent = Agent(
        "--replay",
        str(SAMPLE),
        "--replay-verbatim",
        "--metrics",
        "flow",
        "--metrics-server",
        f"127.0.0.1:{port}",
        "--export-file-path",
        str(out),
        "--export-allowlist",
        '{"verdict":["DROPPED"]}',
        "--export-denylist",
        '{"source_pod":["kube-system/"]},{"destination_pod":["kube-system/"]}',
        ready_line="metrics on",
    )
    try:
        wait_for(lambda: scrape(port)["hubble_seen_flows_total"][0][1] == 78)
        wait_for(lambda: scrape(port)["hubble_exporter_flows_exported_total"][0][1] == 8)
    finally:
        agent.stop()
    expected = observe_file(SAMPLE, "--verdict", "DROPPED", "--not", "--namespace", "kube-system")
    assert out.read_bytes() == expected  # the same bytes as `hubble observe -o json` of the source
    assert observe_file(out) == expected  # and observe --input-file reads the export


def test_fieldmask_keeps_only_the_given_fields(tmp_path: Path) -> None:
    out = tmp_path / "masked.log"
    agent = Agent(
        "--replay",
        str(SAMPLE),
        "--replay-verbatim",
        "--export-file-path",
        str(out),
        "--export-fieldmask",
        "time,verdict source.namespace destination.pod_name drop_reason_desc",
    )
    try:
        wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) == 78)
    finally:
        agent.stop()
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    keys = {k for r in records for k in r["flow"]}
    assert keys == {"time", "verdict", "source", "destination", "drop_reason_desc"}
    assert {tuple(r["flow"]["source"]) for r in records if "source" in r["flow"]} == {("namespace",)}
    assert len(observe_file(out).splitlines()) == 78


def test_rotation_keeps_whole_lines_and_prunes_backups(tmp_path: Path) -> None:
    out = tmp_path / "rot" / "events.log"
    port = free_port()
    agent = Agent(
        "--replay",
        str(SAMPLE),
        "--rate",
        "0",
        "--metrics",
        "flow",
        "--metrics-server",
        f"127.0.0.1:{port}",
        "--export-file-path",
        str(out),
        "--export-file-max-size-mb",
        "1",
        "--export-file-max-backups",
        "2",
        "--export-file-compress",
        ready_line="metrics on",
    )
    try:
        wait_for(lambda: scrape(port)["hubble_exporter_rotations_total"][0][1] >= 3, timeout=120)
    finally:
        agent.stop()
    backups = sorted(p for p in out.parent.iterdir() if p != out)
    assert len(backups) == 2 and all(p.name.endswith(".log.gz") for p in backups)
    for path in [*backups, out]:
        if path.suffix == ".gz":
            plain = tmp_path / path.name.removesuffix(".gz")
            with __import__("gzip").open(path) as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path = plain
        data = path.read_bytes()
        assert data.endswith(b"\n") and path.stat().st_size <= 1024 * 1024
        lines = data.splitlines()
        assert all(json.loads(line)["flow"]["node_name"] for line in lines)
        assert len(observe_file(path).splitlines()) == len(lines)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_full_disk_is_reported_counted_and_the_agent_keeps_serving(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    port = free_port()
    agent = Agent(
        "--node-name",
        "full-disk",
        "--replay",
        str(SAMPLE),
        "--rate",
        "2000",
        "--metrics",
        "flow",
        "--metrics-server",
        f"127.0.0.1:{port}",
        "--export-file-path",
        str(mnt / "events.log"),
        ready_line="metrics on",
        # a 64 KiB tmpfs, seen only by the agent (its own mount namespace)
        prefix=(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount -t tmpfs -o size=64k hm6-export "$0" && exec "$@"',
            str(mnt),
        ),
    )
    try:
        wait_for(lambda: scrape(port)["hubble_exporter_write_errors_total"][0][1] >= 3)
        samples = scrape(port)
        dropped = {labels["reason"]: v for labels, v in samples["hubble_exporter_flows_dropped_total"]}
        assert dropped["write_error"] > 0
        assert any("failed (disk full)" in line for line in agent.lines)
        # still serving: the flows keep coming through GetFlows
        result = run_hubble(["observe", "--server", agent.address, "--last", "5", "-o", "json"])
        assert result.returncode == 0 and len(result.stdout.splitlines()) == 5
        inside = Path(f"/proc/{agent.popen.pid}/root") / str(mnt).lstrip("/") / "events.log"
        for _ in range(50):  # a retried write may be between its partial write and its cut-back
            exported = inside.read_bytes()
            if exported.endswith(b"\n"):
                break
            time.sleep(0.01)
    finally:
        agent.stop()
    assert 0 < len(exported) <= 64 * 1024 and exported.endswith(b"\n")
    lines = exported.splitlines()
    assert all(json.loads(line)["flow"]["node_name"] == "full-disk" for line in lines)
    assert samples["hubble_exporter_flows_exported_total"][0][1] >= len(lines)


def test_bad_export_settings_are_start_up_errors(tmp_path: Path) -> None:
    base = ["agent", "--listen-address", "127.0.0.1:0", "--export-file-path", str(tmp_path / "e.log")]
    result = run_hubble([*base, "--export-allowlist", '{"verdict":["DROPPED"]'], timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("hubble agent: --export-allowlist: invalid JSON FlowFilter")
    result = run_hubble([*base, "--export-denylist", '{"verdict":["NOPE"]}'], timeout=60)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    result = run_hubble([*base, "--export-file-max-size-mb", "0"], timeout=60)
    assert result.stderr.decode() == "hubble agent: --export-file-max-size-mb must be at least 1\n"
    assert not (tmp_path / "e.log").exists()
