"""Start real `hubble agent` / `hubble-relay` processes on loopback ports chosen by the OS.

Used by the observer and relay tests. Each process prints ``listening on HOST:PORT`` on stderr once
it serves; :class:`Procs` waits for that line, remembers the address and kills everything at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HUBBLEPY_SHARED", REPO.parent / "shared"))
FLOWS = SHARED / "fixtures" / "flows.jsonl"
_LISTENING = re.compile(r"listening on (\S+)")


class Proc:
    """A running server process with its address and collected stderr."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stderr_lines: list[str] = []
        self.address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(30) or self.address is None:
            self.kill()
            raise RuntimeError(f"{argv} did not start: {''.join(self.stderr_lines)}")

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode(errors="replace")
            self.stderr_lines.append(line)
            m = _LISTENING.search(line)
            if m and self.address is None:
                self.address = m.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def port(self) -> int:
        assert self.address is not None
        return int(self.address.rsplit(":", 1)[1])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Procs:
    """Factory and owner of test processes."""

    def __init__(self) -> None:
        self.all: list[Proc] = []

    def agent(self, name: str, *extra: str, listen: str = "127.0.0.1:0") -> Proc:
        argv = [
            sys.executable,
            "-m",
            "hubblepy.observer",
            "--node-name",
            name,
            "--listen-address",
            listen,
            *extra,
        ]
        proc = Proc(argv)
        self.all.append(proc)
        return proc

    def relay(self, *extra: str) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "relay",
            "--listen-address",
            "127.0.0.1:0",
            "--node-name",
            "relay-test",
            *extra,
        ]
        proc = Proc(argv)
        self.all.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.all:
            proc.kill(signal.SIGTERM)


def hubble_cli() -> list[str]:
    """The `hubble` command: this checkout's, or ``$HUBBLEPY_HUBBLE_CMD`` (e.g. an upstream binary)."""
    override = os.environ.get("HUBBLEPY_HUBBLE_CMD", "")
    return override.split() if override else [sys.executable, "-m", "hubblepy.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """Environment without HUBBLE_* settings or a user config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBLE")}
    env["HOME"] = "/nonexistent-hubblepy-test-home"
    env.pop("XDG_CONFIG_HOME", None)
    env.update(extra)
    return env
