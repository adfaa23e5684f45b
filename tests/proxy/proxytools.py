"""A real proxy process on loopback with a real upstream server, a compiled rule table and an access-log reader.

Loopback addresses stand for pods: the server (api) listens on 127.0.0.2, clients connect from
127.0.0.1 (frontend) or 127.0.0.3 (admin). The proxy runs with ``--upstream`` (not transparent), so
the connection is judged as addressed to the server; the transparent path is tested on real
namespaces in tests/lab.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from hubblepy.lab.servers import serve_http
from hubblepy.policy import (
    CookieJar,
    Endpoint,
    IdentityAllocator,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.proxy.accesslog import AccessLogReader
from hubblepy.proxy.state import attribution_rules, state_to_json, write_state

REPO = Path(__file__).resolve().parents[2]
SERVER_IP = "127.0.0.2"
FRONTEND_IP = "127.0.0.1"
ADMIN_IP = "127.0.0.3"

SEED = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-http-l7
  namespace: payments
spec:
  endpointSelector:
    matchLabels:
      app: api
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: frontend
      toPorts:
        - ports:
            - port: "{port}"
              protocol: TCP
          rules:
            http:
              - method: "GET"
                path: "/api/v1/orders"
              - method: "GET"
                path: "/healthz"
    - fromEndpoints:
        - matchLabels:
            app: admin
      toPorts:
        - ports:
            - port: "{port}"
              protocol: TCP
          rules:
            http:
              - {{}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def state_document(
    policy: str | None, server_port: int, revision: int, local_client: bool = False
) -> tuple[dict, dict[str, int]]:
    """The proxy state the lab would write for ``policy`` (formatted with the server's port): the
    server (api) a local endpoint, and with ``local_client`` the frontend too; frontend and admin
    peers by their addresses. Also the identities by pod name."""
    ids = IdentityAllocator()
    endpoints = {}
    for number, name in enumerate(("frontend", "api", "admin")):
        labels = pod_labels("payments", {"app": name})
        endpoints[name] = Endpoint(100 + number, ids.allocate(labels), labels)
    cookies = CookieJar()
    policies = parse_policies(policy.format(port=server_port)) if policy else []
    compiled = compile_policies(policies, endpoints.values(), dict(ids.items()), cookies)
    doc = state_to_json(
        revision=revision,
        l7=compiled.l7,
        rules=attribution_rules(compiled.l7, cookies, 1),
        endpoints=[(endpoints["api"].ep_id, SERVER_IP, endpoints["api"].identity)]
        + (
            [(endpoints["frontend"].ep_id, FRONTEND_IP, endpoints["frontend"].identity)]
            if local_client
            else []
        ),
        ipcache=[
            (f"{FRONTEND_IP}/32", endpoints["frontend"].identity),
            (f"{ADMIN_IP}/32", endpoints["admin"].identity),
        ],
        identities=dict(ids.items()),
        node={"name": "test-node", "ipv4": "127.0.0.1"},
    )
    return doc, {name: ep.identity for name, ep in endpoints.items()}


class Harness:
    def __init__(
        self,
        folder: Path,
        policy: str = SEED,
        target_port: int = 0,
        local_client: bool = False,
        **proxy_args: str,
    ) -> None:
        """``target_port``: a server of the test's own on 127.0.0.2 instead of the lab's HTTP server;
        ``local_client``: the frontend (127.0.0.1) is a local endpoint too (its egress rules apply)."""
        self.folder = folder
        self.local_client = local_client
        # port 0: the kernel picks a port free on every address (serve_http binds them all, so a port
        # checked free on 127.0.0.2 alone could be taken on another address)
        self.server = serve_http(0, ["/api/v1/orders", "/healthz", "/upload"])
        self.server_port = target_port or self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = free_port()
        self.state_path = folder / "proxy-state.json"
        self.log_path = str(folder / "access.sock")
        self.records: list[dict] = []
        self.correlations: list[tuple[int, str] | None] = []  # what each record's line carried
        self.reader = AccessLogReader(self.log_path, self.records.append, self.correlations)
        self.policy = policy
        self.write_state(policy)
        self.proxy_args = proxy_args
        self.proc: subprocess.Popen | None = None
        self.start()

    def write_state(self, policy: str | None) -> None:
        revision = len(self.records) + int(time.time() * 1000)
        doc, self.identities = state_document(policy, self.server_port, revision, self.local_client)
        write_state(self.state_path, doc)

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "hubblepy.proxy",
            "http",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--upstream",
            f"{SERVER_IP}:{self.server_port}",
            "--state",
            str(self.state_path),
            "--access-log",
            self.log_path,
        ]
        for key, value in self.proxy_args.items():
            args += [f"--{key.replace('_', '-')}", value]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        assert "listening" in line, self.proc.stderr.read()

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(1)  # SIGHUP
        time.sleep(0.3)

    def connect(self, source: str = FRONTEND_IP, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout, source_address=(source, 0))
        return sock

    def wait_records(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.records)

    def peak_rss_kb(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> str:
        """Stops the proxy process; returns its stderr."""
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            err = self.proc.stderr.read()
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None
        return err

    def close(self) -> None:
        self.stop()
        self.reader.close()
        self.server.shutdown()
        self.server.server_close()


class Reader:
    """Reads several pipelined responses from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response head: {self.buf!r}")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = 0 if 100 <= status < 200 else int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        self.buf = rest[length:]
        return status, headers, rest[:length]

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
