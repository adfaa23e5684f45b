"""A real `hubble agent` process for tests, and a /metrics scraper."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import defaultdict

from hubbletest import REPO_ROOT, clean_env
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """A real `hubble agent` process; waits for its 'listening on' line."""

    def __init__(self, *args: str, ready_line: str = "listening on", prefix: tuple[str, ...] = ()) -> None:
        self.ready_line = ready_line
        self.popen = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "hubblepy.cli",
                "agent",
                "--listen-address",
                "127.0.0.1:0",
                *args,
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**clean_env(), "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            self.stop()
            raise RuntimeError(f"agent did not start: {''.join(self.lines)}")

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.lines.append(raw.decode(errors="replace"))
            if self.ready_line in self.lines[-1]:
                self.ready.set()
        self.ready.set()

    @property
    def address(self) -> str:
        line = next(line for line in self.lines if "listening on" in line)
        return line.rsplit(" ", 1)[1].strip()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name].append((s.labels, s.value))
    return samples
