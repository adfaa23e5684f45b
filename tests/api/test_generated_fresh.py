"""The checked-in hubblepy/api code must equal what scripts/gen_protos.py produces."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from spec_tables import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gen_protos.py"


def _run_check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_checked_in_generated_code_is_fresh() -> None:
    result = _run_check(REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def _copy_repo_subset(dest: Path) -> Path:
    for name in ("proto", "scripts"):
        shutil.copytree(REPO_ROOT / name, dest / name)
    shutil.copytree(
        REPO_ROOT / "hubblepy" / "api",
        dest / "hubblepy" / "api",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return dest


def test_check_reports_edited_missing_and_extra_files(tmp_path: Path) -> None:
    repo = _copy_repo_subset(tmp_path)
    assert _run_check(repo).returncode == 0

    api = repo / "hubblepy" / "api"
    edited = api / "flow" / "flow_pb2.py"
    edited.write_text(edited.read_text() + "# local edit\n")
    (api / "peer" / "peer_pb2.pyi").unlink()
    (api / "relay" / "relay_pb2_grpc.py").write_text("# stray generated file\n")

    result = _run_check(repo)
    assert result.returncode == 1
    assert "hubblepy/api/flow/flow_pb2.py" in result.stderr
    assert "hubblepy/api/peer/peer_pb2.pyi" in result.stderr
    assert "hubblepy/api/relay/relay_pb2_grpc.py" in result.stderr


def test_proto_change_makes_checked_in_code_stale(tmp_path: Path) -> None:
    repo = _copy_repo_subset(tmp_path)
    proto = repo / "proto" / "relay" / "relay.proto"
    proto.write_text(proto.read_text().replace("string message = 3;", "string message = 4;"))
    result = _run_check(repo)
    assert result.returncode == 1
    assert "hubblepy/api/relay/relay_pb2.py" in result.stderr


def test_regeneration_is_deterministic_and_repairs_the_tree(tmp_path: Path) -> None:
    repo = _copy_repo_subset(tmp_path)
    target = repo / "hubblepy" / "api" / "observer" / "observer_pb2_grpc.py"
    original = target.read_text()
    target.write_text("broken\n")
    result = subprocess.run(
        [sys.executable, str(repo / "scripts" / "gen_protos.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert target.read_text() == original
    assert _run_check(repo).returncode == 0
