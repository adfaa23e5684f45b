"""The node's side of its HTTP proxy: the process's command line, its state file, readiness, restarts.

The node (``hubblepy.lab.node``) owns one :class:`NodeProxy`. It starts the proxy process in the node
namespace with :meth:`NodeProxy.argv` through its child supervisor, waits for :meth:`wait_ready`,
rewrites the state at every policy or endpoint change (:meth:`update`: atomic file + SIGHUP) and
calls :meth:`exited` when the supervisor reports that the process died; the node then starts it
again after :meth:`restart_delay`. While it is down the datapath drops redirected connections (the
proxy's socket is missing): fail closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hubblepy.policy.compiler import CookieJar
from hubblepy.policy.l7 import HTTP_PROXY_PORT, L7Table
from hubblepy.policy.model import PolicyRef
from hubblepy.proxy.sockets import from_proxy_mark
from hubblepy.proxy.state import attribution_rules, state_to_json, write_state

PROXY_NAME = "proxy-http"


class NodeProxy:
    """One node's HTTP proxy: files in ``folder``, the process in network namespace ``netns_name``."""

    def __init__(self, folder: Path, netns_name: str, port: int = HTTP_PROXY_PORT) -> None:
        self.folder = folder
        self.netns_name = netns_name
        self.port = port
        self.state_path = folder / f"{PROXY_NAME}-state.json"
        self.access_log_path = folder / "proxy-access-log.sock"
        self.stats_path = folder / f"{PROXY_NAME}-stats.json"
        self.pid = 0
        self.restarts = 0
        self.revision = 0
        self.last_exit: int | None = None
        self._down_since = 0.0

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hubblepy.proxy",
            "http",
            "--listen",
            f"0.0.0.0:{self.port}",
            "--transparent",
            "--mark",
            hex(from_proxy_mark()),
            "--state",
            str(self.state_path),
            "--access-log",
            str(self.access_log_path),
            "--stats",
            str(self.stats_path),
        ]

    def started(self, pid: int) -> None:
        self.pid = pid
        self._down_since = 0.0

    def exited(self, status: int) -> None:
        self.pid = 0
        self.last_exit = status
        self.restarts += 1
        self._down_since = time.monotonic()

    def restart_delay(self) -> float:
        """Seconds to wait before starting it again (grows while it keeps dying, at most 5 s)."""
        return min(5.0, 0.2 * (2 ** min(self.restarts - 1, 5))) if self.restarts else 0.0

    def due_for_restart(self) -> bool:
        return (
            not self.pid
            and bool(self._down_since)
            and time.monotonic() - self._down_since >= self.restart_delay()
        )

    def wait_ready(
        self, run_in_netns: Callable[[str, Callable[[], bool]], bool], timeout: float = 10.0
    ) -> bool:
        """True once the proxy accepts connections on its port inside the node namespace."""
        deadline = time.monotonic() + timeout

        def probe() -> bool:
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        while time.monotonic() < deadline:
            if run_in_netns(self.netns_name, probe):
                return True
            time.sleep(0.05)
        return False

    def update(
        self,
        *,
        l7: L7Table,
        cookies: CookieJar,
        policy_revision: int,
        uids: Mapping[PolicyRef, str],
        endpoints: Iterable[tuple[int, str, int]],
        ipcache: Iterable[tuple[str, int]],
        identities: Mapping[int, Iterable[str]],
        node: Mapping[str, str],
    ) -> None:
        """Writes the proxy's state (atomically) and tells a running proxy to load it."""
        self.revision += 1
        document = state_to_json(
            revision=self.revision,
            l7=l7,
            rules=attribution_rules(l7, cookies, policy_revision, uids),
            endpoints=endpoints,
            ipcache=ipcache,
            identities=identities,
            node=node,
            proxy_port=self.port,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        write_state(self.state_path, document)
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)

    def status(self) -> dict[str, Any]:
        """Port, process, restarts, and the proxy's own counters (requests, denied, errors, records
        sent and lost) as it last wrote them."""
        counters: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            counters = json.loads(self.stats_path.read_text())
        if counters.get("pid") != self.pid:
            counters = {}
        return {
            "port": self.port,
            "pid": self.pid,
            "running": bool(self.pid),
            "restarts": self.restarts,
            "revision": self.revision,
            **{k: v for k, v in counters.items() if k != "pid"},
        }
