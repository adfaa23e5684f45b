"""The proxy's transparent path on real network namespaces (root): IP_TRANSPARENT listener, original
destination from getsockname(), upstream bound to the client's address with the from-proxy mark.

client ns (10.99.0.2) -- node ns (router; nftables TPROXY steers TCP to 10.99.1.2:8080 to the proxy
on :15001, and the replies to the proxy's client-address sockets back to it) -- server ns
(10.99.1.2:8080, answers with the peer address it sees). The datapath's own steering (eBPF) is
tested with the lab in tests/lab/test_l7_lab.py; this test pins the proxy's half of the contract.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxytools import SEED  # noqa: E402

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

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("HUBBLEPY_TEST_NETNS_PREFIX", "hpx-")
CLIENT, NODE, SERVER = f"{PREFIX}tpc", f"{PREFIX}tpn", f"{PREFIX}tps"
CLIENT_IP, SERVER_IP = "10.99.0.2", "10.99.1.2"
PEER_SERVER = textwrap.dedent("""\
    import http.server, json
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def _answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            body = json.dumps({"peer": self.client_address[0], "method": self.command}).encode()
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = _answer
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
    """)


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


@pytest.fixture
def topology(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is missing: scripts/bootstrap.sh installs it")
    procs: list[subprocess.Popen] = []
    try:
        for ns in (CLIENT, NODE, SERVER):
            sh("ip", "netns", "add", ns)
            sh(*in_ns(ns, "ip", "link", "set", "lo", "up"))
        for side, ns, addr, node_addr in (
            ("c", CLIENT, CLIENT_IP, "10.99.0.1"),
            ("s", SERVER, SERVER_IP, "10.99.1.1"),
        ):
            inner, outer = f"{PREFIX}{side}0", f"{PREFIX}{side}1"
            sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "netns", NODE)
            sh(*in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", inner))
            sh(*in_ns(ns, "ip", "link", "set", inner, "up"))
            sh(*in_ns(ns, "ip", "route", "add", "default", "via", node_addr))
            sh(*in_ns(NODE, "ip", "addr", "add", f"{node_addr}/24", "dev", outer))
            sh(*in_ns(NODE, "ip", "link", "set", outer, "up"))
        sh(*in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        sh(*in_ns(NODE, "ip", "rule", "add", "fwmark", "1", "lookup", "100"))
        sh(*in_ns(NODE, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"))
        rules = textwrap.dedent(f"""\
            table ip hp {{
              chain pre {{
                type filter hook prerouting priority mangle; policy accept;
                meta l4proto tcp socket transparent 1 meta mark set 1 accept
                ip daddr {SERVER_IP} tcp dport 8080 tproxy to :15001 meta mark set 1 accept
              }}
            }}
            """)
        subprocess.run(in_ns(NODE, "nft", "-f", "-"), input=rules, text=True, check=True)
        procs.append(subprocess.Popen(in_ns(SERVER, sys.executable, "-c", PEER_SERVER)))
        yield tmp_path, procs
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
        for ns in (CLIENT, NODE, SERVER):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_transparent_proxy_keeps_both_addresses(topology) -> None:
    folder, procs = topology
    ids = IdentityAllocator()
    frontend = pod_labels("payments", {"app": "frontend"})
    api = pod_labels("payments", {"app": "api"})
    endpoints = [Endpoint(100, ids.allocate(frontend), frontend), Endpoint(101, ids.allocate(api), api)]
    cookies = CookieJar()
    compiled = compile_policies(parse_policies(SEED.format(port=8080)), endpoints, dict(ids.items()), cookies)
    state = folder / "state.json"
    write_state(
        state,
        state_to_json(
            revision=1,
            l7=compiled.l7,
            rules=attribution_rules(compiled.l7, cookies),
            endpoints=[(101, SERVER_IP, endpoints[1].identity)],
            ipcache=[(f"{CLIENT_IP}/32", endpoints[0].identity)],
            identities=dict(ids.items()),
            proxy_port=15001,
        ),
    )
    records: list[dict] = []
    reader = AccessLogReader(str(folder / "access.sock"), records.append)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proxy = subprocess.Popen(
        in_ns(
            NODE,
            sys.executable,
            "-m",
            "hubblepy.proxy",
            "http",
            "--listen",
            "0.0.0.0:15001",
            "--transparent",
            "--mark",
            "0xa00",
            "--state",
            str(state),
            "--access-log",
            str(folder / "access.sock"),
        ),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    procs.append(proxy)
    try:
        assert "listening" in proxy.stdout.readline()
        time.sleep(0.5)  # the server in its namespace

        def curl(*extra: str) -> tuple[str, str]:
            out = subprocess.run(
                in_ns(
                    CLIENT,
                    "curl",
                    "-s",
                    "-m",
                    "5",
                    "-w",
                    "\n%{http_code}",
                    *extra,
                    f"http://{SERVER_IP}:8080/api/v1/orders",
                ),
                capture_output=True,
                text=True,
                timeout=30,
            )
            body, _, code = out.stdout.rpartition("\n")
            return code, body

        code, body = curl()
        assert code == "200"
        assert json.loads(body)["peer"] == CLIENT_IP  # the server sees the real client
        code, body = curl("-X", "POST")
        assert (code, body.strip()) == ("403", "Access denied")
        deadline = time.monotonic() + 5
        while len(records) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        request = records[0]
        assert request["DestinationAddress"] == f"{SERVER_IP}:8080"  # original destination
        assert request["SourceAddress"].startswith(f"{CLIENT_IP}:")
        assert request["DestinationEndpoint"]["ID"] == 101
        assert request["SourceEndpoint"]["Identity"] == endpoints[0].identity
        assert records[2]["Verdict"] == "Denied"
    finally:
        reader.close()
