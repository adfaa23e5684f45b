"""Child processes of the lab node: pods' servers, the relay (and, with L7, the node's proxies).

:class:`Supervisor` starts each child with its own log file in the lab directory, inside a network
namespace when asked (``ip netns exec``), with the repository on ``PYTHONPATH``; ``poll()`` reports
the children that exited (the node loop logs them) and ``stop()`` ends them all. A proxy is started
the same way (``start("proxy-http", [...], netns=node_ns)``) and is watched by the same ``poll()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hubblepy.lab import netns

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """The environment of a child: ours, with this repository first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Starts, watches and stops the lab node's child processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._children: dict[str, Child] = {}

    def start(self, name: str, argv: list[str], netns_name: str = "", log: str = "") -> Child:
        """Starts ``argv`` (in network namespace ``netns_name`` if given), output to ``log``.

        The log defaults to ``<name>.log`` in the lab directory and is appended to. A child of the
        same name that still runs is an error of the caller (names are unique).
        """
        old = self._children.get(name)
        if old is not None and old.proc.poll() is None:
            raise RuntimeError(f"child {name} is already running (pid {old.pid})")
        command = ["ip", "netns", "exec", netns_name, *argv] if netns_name else argv
        with open(self.folder / (log or f"{name}.log"), "ab") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                cwd=str(REPO_ROOT),
                start_new_session=True,
            )
        child = Child(name, proc)
        self._children[name] = child
        return child

    def get(self, name: str) -> Child | None:
        return self._children.get(name)

    def poll(self) -> list[tuple[str, int]]:
        """Children that exited since the last call, as (name, exit status); they are forgotten."""
        exited = []
        for name, child in list(self._children.items()):
            status = child.proc.poll()
            if status is not None:
                exited.append((name, status))
                del self._children[name]
        return exited

    def forget(self, prefix: str) -> None:
        """Stops tracking the children whose name starts with ``prefix`` (their pod was deleted)."""
        for name in [n for n in self._children if n.startswith(prefix)]:
            del self._children[name]

    def stop(self, name: str, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the child is reaped and forgotten."""
        child = self._children.pop(name, None)
        if child is None:
            return
        netns.terminate([child.pid], timeout=timeout)
        try:
            child.proc.wait(1)
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"lab node: {name} (pid {child.pid}) did not exit after SIGKILL\n")

    def stop_all(self) -> None:
        for name in list(self._children):
            self.stop(name)


__all__ = ["Child", "Supervisor", "child_env", "python_module"]
