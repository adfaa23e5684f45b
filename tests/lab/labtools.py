"""Helpers for the root lab tests: a private lab (own state dir, netns prefix and ports) driven by the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubbletest import REPO_ROOT, clean_env

TEST_PREFIX = os.environ.get("HUBBLEPY_TEST_NETNS_PREFIX", "hpx-")  # parallel runs set their own


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and veths)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """One private lab; ``run`` calls ``hubble lab ...`` (python -m hubblepy.cli.lab) as a real process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = clean_env()
        self.env["HUBBLEPY_LAB_DIR"] = str(folder)
        self.env["HUBBLEPY_LAB_NETNS_PREFIX"] = TEST_PREFIX
        self.env["PYTHONPATH"] = str(REPO_ROOT)
        self.agent = f"127.0.0.1:{free_port()}"
        self.relay = f"127.0.0.1:{free_port()}"

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hubblepy.cli.lab", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO_ROOT,
            timeout=timeout,
        )

    def up(self, *extra: str) -> subprocess.CompletedProcess:
        return self.run("up", "--listen-address", self.agent, "--relay-address", self.relay, *extra)

    def exec(self, pod: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.run("exec", pod, "--", *cmd, timeout=timeout)

    def curl(self, pod: str, url: str, *extra: str) -> subprocess.CompletedProcess:
        return self.exec(pod, "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", *extra, url)

    def state(self) -> dict:
        return json.loads((self.folder / "state.json").read_text())

    def diagnosis(self, *namespaces: str) -> str:
        """For a failure message: the tail of every log of the lab and the listening sockets of
        the given network namespaces (a server that died says why in its log)."""
        parts = []
        for log in sorted(self.folder.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        for ns in namespaces:
            ss = subprocess.run(["ip", "netns", "exec", ns, "ss", "-ltnp"], capture_output=True, text=True)
            parts.append(f"--- listening in {ns}\n{ss.stdout}{ss.stderr}")
        return "\n".join(parts)

    def flows(self, *filters: str) -> list[dict]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "hubblepy.cli",
                "observe",
                "--server",
                self.relay,
                "--last",
                "4000",
                "-o",
                "json",
                *filters,
            ],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["flow"] for line in out.stdout.splitlines() if line.strip()]

    def down(self) -> subprocess.CompletedProcess:
        return self.run("down", timeout=120)


def lab_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(TEST_PREFIX)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_lab(folder: Path, *up_args: str) -> Iterator[Lab]:
    """A payments lab (or ``up_args``, e.g. ``--scenario pci-cde``) for one test module: skips when
    root or the datapath is missing (or another test lab holds the prefix), brings it up, and at the
    end takes it down leaving no namespace."""
    needs_root()
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
    lab = Lab(folder)
    try:
        up = lab.up(*up_args)
        assert up.returncode == 0, up.stderr
        yield lab
    finally:
        down = lab.down()
        assert down.returncode == 0, down.stderr
        assert lab_netns() == []
