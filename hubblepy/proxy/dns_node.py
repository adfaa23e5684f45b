"""The node's side of its DNS proxy: command line, state file (with the DNS rule table), readiness, restarts.

Like :class:`hubblepy.proxy.node.NodeProxy` for the HTTP proxy: the lab node starts
:meth:`NodeDNSProxy.argv` in the node namespace through its child supervisor, rewrites the state at
every policy or endpoint change (:meth:`update`, atomic file + SIGHUP) and restarts the process when
it dies. While it is down the datapath drops redirected DNS (no proxy socket, reason 178).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hubblepy.policy.compiler import CookieJar
from hubblepy.policy.dns import dns_table_to_json
from hubblepy.policy.l7 import DNS_PROXY_PORT, L7Table
from hubblepy.policy.model import PolicyRef
from hubblepy.proxy.node import NodeProxy
from hubblepy.proxy.sockets import from_proxy_mark
from hubblepy.proxy.state import attribution_rules, state_to_json, write_state

DNS_PROXY_NAME = "proxy-dns"
FQDN_NOTIFY_SOCKET = "fqdn-notify.sock"  # in the lab folder: the node's notify server (hubblepy.fqdn)
RESPONSE_MAX_DELAY = 0.1  # seconds (Cilium's --tofqdns-proxy-response-max-delay)


def dns_state_document(
    *,
    revision: int,
    dns: L7Table,
    cookies: CookieJar,
    policy_revision: int,
    uids: Mapping[PolicyRef, str],
    endpoints: Iterable[tuple[int, str, int]],
    ipcache: Iterable[tuple[str, int]],
    identities: Mapping[int, Iterable[str]],
    node: Mapping[str, str],
    proxy_port: int = DNS_PROXY_PORT,
) -> dict[str, Any]:
    """The DNS proxy's state: :func:`hubblepy.proxy.state.state_to_json` plus the ``dns`` table."""
    document = state_to_json(
        revision=revision,
        l7=L7Table(),
        rules=attribution_rules(dns, cookies, policy_revision, uids),
        endpoints=endpoints,
        ipcache=ipcache,
        identities=identities,
        node=node,
        proxy_port=proxy_port,
    )
    document["dns"] = dns_table_to_json(dns)
    return document


class NodeDNSProxy(NodeProxy):
    """One node's DNS proxy: files in ``folder``, the process in network namespace ``netns_name``."""

    def __init__(
        self,
        folder: Path,
        netns_name: str,
        port: int = DNS_PROXY_PORT,
        access_log_path: Path | None = None,
        notify_path: Path | None = None,
        response_max_delay: float = RESPONSE_MAX_DELAY,
    ) -> None:
        super().__init__(folder, netns_name, port)
        self.state_path = folder / f"{DNS_PROXY_NAME}-state.json"
        self.stats_path = folder / f"{DNS_PROXY_NAME}-stats.json"
        if access_log_path is not None:
            self.access_log_path = access_log_path
        self.notify_path = notify_path
        self.response_max_delay = response_max_delay

    def argv(self) -> list[str]:
        out = [
            sys.executable,
            "-m",
            "hubblepy.proxy.dns",
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
            "--response-max-delay",
            str(self.response_max_delay),
        ]
        if self.notify_path is not None:
            out += ["--fqdn-notify", str(self.notify_path)]
        return out

    def update(  # type: ignore[override]
        self,
        *,
        dns: L7Table,
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
        document = dns_state_document(
            revision=self.revision,
            dns=dns,
            cookies=cookies,
            policy_revision=policy_revision,
            uids=uids,
            endpoints=endpoints,
            ipcache=ipcache,
            identities=identities,
            node=node,
            proxy_port=self.port,
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        write_state(self.state_path, document)
        self._signal_reload()

    def _signal_reload(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)
