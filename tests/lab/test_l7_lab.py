"""L7 HTTP policy on real traffic: the payments lab, the eBPF redirect and the node's proxy (root).

The payments scenario applies the seed's api-http-l7 (frontend may GET /api/v1/orders and /healthz on
api:8080). Every test drives real pods (network namespaces) with curl or a Python client, checks what
the client got, and the L7 flows ``hubble observe`` prints for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import Lab, running_lab  # noqa: E402

pytestmark = pytest.mark.root

ORDERS = "http://api:8080/api/v1/orders"
HEALTH = "http://api:8080/healthz"

# frontend egress with L7 rules too (egress redirect), and default/probe allowed on 8080 without L7
EXTRA = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: l7-extra, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingress:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: default}
          toPorts:
            - ports: [{port: "8080", protocol: TCP}]
        - fromEndpoints: [{matchLabels: {app: frontend}}]
          toPorts:
            - ports: [{port: "8080", protocol: TCP}]
              rules:
                http:
                  - {method: PUT, path: /healthz, headers: ["X-Team: blue"]}
                  - {method: DELETE, path: /healthz, host: "api(\\\\.payments)?:8080"}
                  - {method: POST, path: /upload}
    """)

PIPELINE = textwrap.dedent("""\
    import re, socket
    s = socket.create_connection(("api", 8080), 5)
    s.settimeout(5)
    get = b"GET /api/v1/orders HTTP/1.1\\r\\nHost: api:8080\\r\\n\\r\\n"
    post = b"POST /api/v1/orders HTTP/1.1\\r\\nHost: api:8080\\r\\nContent-Length: 2\\r\\n\\r\\n{}"
    s.sendall(get + post + get)
    data = b""
    while len(re.findall(rb"HTTP/1\\.1 \\d{3}", data)) < 3 or not data.endswith(b"}\\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print(" ".join(c.decode() for c in re.findall(rb"HTTP/1\\.1 (\\d{3})", data)))
    """)

# kills the node's proxy, then: a connection right away must fail (dropped, not sent around the
# proxy), and a GET must succeed again once the node has restarted the proxy
KILL_AND_RETRY = textwrap.dedent("""\
    import os, signal, socket, sys, time, urllib.request
    os.kill(int(sys.argv[1]), signal.SIGKILL)
    time.sleep(0.05)
    try:
        socket.create_connection(("api", 8080), 0.5).close()
        first = "connected"
    except OSError:
        first = "failed"
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline and status != 200:
        try:
            status = urllib.request.urlopen("http://api:8080/api/v1/orders", timeout=2).status
        except OSError:
            time.sleep(0.2)
    print(first, status)
    """)

UPLOAD = textwrap.dedent("""\
    import http.client, json
    conn = http.client.HTTPConnection("api", 8080, timeout=60)
    chunk = b"x" * (1 << 18)
    conn.request("POST", "/upload", body=(chunk for _ in range(200)), encode_chunked=True)
    resp = conn.getresponse()
    print(resp.status, json.loads(resp.read()).get("received"))
    """)

MALFORMED = textwrap.dedent("""\
    import socket
    s = socket.create_connection(("api", 8080), 5)
    s.settimeout(5)
    s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: api\\r\\nBroken header line\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    print(data.split(b"\\r\\n")[0].decode())
    """)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("lab") / "state") as lab:
        yield lab


def http_code(lab: Lab, pod: str, url: str, *extra: str) -> str:
    return lab.exec(pod, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", *extra, url).stdout


def python_in(lab: Lab, pod: str, code: str, timeout: float = 120) -> str:
    out = lab.exec(pod, sys.executable, "-c", code, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def l7_flows(lab: Lab, *filters: str) -> list[dict]:
    time.sleep(0.5)  # the access log is batched (5 ms) and published by the node
    return lab.flows("--type", "l7", *filters)


def proxy_pid(lab: Lab) -> int:
    out = lab.run("status", "-o", "json")  # asks the node (state.json is written on changes only)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["proxy"]["pid"])


def test_seed_verify_step_3_get_200_post_403(lab: Lab) -> None:
    assert http_code(lab, "payments/frontend", ORDERS) == "200"
    assert http_code(lab, "payments/frontend", ORDERS, "-X", "POST") == "403"
    assert lab.exec("payments/frontend", "curl", "-s", "-X", "POST", ORDERS).stdout.strip() == "Access denied"
    assert http_code(lab, "payments/frontend", HEALTH) == "200"
    assert http_code(lab, "payments/frontend", ORDERS + "/1") == "403"


def test_seed_verify_step_5_the_dropped_http_request_flow(lab: Lab) -> None:
    assert http_code(lab, "payments/frontend", ORDERS, "-X", "POST") == "403"
    flows = l7_flows(lab, "--namespace", "payments", "--protocol", "http", "--http-method", "POST")
    request = [f for f in flows if f["l7"]["type"] == "REQUEST"][-1]
    assert request["verdict"] == "DROPPED"
    assert request["source"]["pod_name"] == "frontend" and request["destination"]["pod_name"] == "api"
    assert request["source"]["identity"] and request["destination"]["identity"]
    assert request["traffic_direction"] == "INGRESS"
    assert request["l7"]["http"]["method"] == "POST"
    assert request["l7"]["http"]["url"] == "http://api:8080/api/v1/orders"
    assert [p["name"] for p in request["ingress_denied_by"]] == ["api-http-l7"]
    response = [f for f in flows if f["l7"]["type"] == "RESPONSE"][-1]
    assert response["l7"]["http"]["code"] == 403 and response["is_reply"] is True
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubblepy.cli",
            "observe",
            "--server",
            lab.relay,
            "--namespace",
            "payments",
            "--protocol",
            "http",
            "--http-method",
            "POST",
            "--last",
            "20",
        ],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
    )
    lines = [line for line in out.stdout.splitlines() if "http-request DROPPED" in line]
    assert lines, out.stdout
    assert "payments/frontend" in lines[-1] and "payments/api:8080" in lines[-1]
    assert lines[-1].endswith("http-request DROPPED (HTTP/1.1 POST http://api:8080/api/v1/orders)")


def test_status_shows_redirected_ports(lab: Lab) -> None:
    out = lab.run("status")
    assert out.returncode == 0, out.stderr
    assert "proxy" in out.stdout.lower() and "8080" in out.stdout


def test_method_path_host_and_header_rules_and_per_identity(lab: Lab) -> None:
    policy = lab.folder.parent / "l7-extra.yaml"
    policy.write_text(EXTRA)
    applied = lab.run("policy", "apply", str(policy))
    assert applied.returncode == 0, applied.stderr
    try:
        assert http_code(lab, "payments/frontend", HEALTH, "-X", "PUT", "-H", "X-Team: blue") == "200"
        assert http_code(lab, "payments/frontend", HEALTH, "-X", "PUT", "-H", "X-Team: red") == "403"
        assert http_code(lab, "payments/frontend", HEALTH, "-X", "DELETE") == "200"  # Host: api:8080
        assert (
            http_code(lab, "payments/frontend", "http://api.payments:8080/healthz", "-X", "DELETE") == "200"
        )
        assert http_code(lab, "payments/frontend", HEALTH, "-X", "DELETE", "-H", "Host: evil:8080") == "403"
        # default/probe is allowed on 8080 without L7 rules: not restricted (and not redirected)
        assert (
            http_code(lab, "default/probe", "http://api.payments:8080/api/v1/orders", "-X", "POST") == "201"
        )
        # keep-alive: a denied request in the middle of one connection, the connection is reused
        out = lab.exec(
            "payments/frontend",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}/%{num_connects} ",
            ORDERS,
            "--next",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}/%{num_connects} ",
            "-X",
            "POST",
            ORDERS,
            "--next",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}/%{num_connects}",
            ORDERS,
        )
        assert out.stdout.split() == ["200/1", "403/0", "200/0"]
        assert python_in(lab, "payments/frontend", PIPELINE) == "200 403 200"
        # a 50 MB chunked upload streams through the proxy with its memory bounded
        pid = proxy_pid(lab)
        before = _peak_rss_mb(pid)
        assert python_in(lab, "payments/frontend", UPLOAD) == f"404 {200 * (1 << 18)}"
        assert _peak_rss_mb(pid) - before < 16
        assert python_in(lab, "payments/frontend", MALFORMED) == "HTTP/1.1 400 Bad Request"
        assert http_code(lab, "payments/frontend", ORDERS) == "200"
    finally:
        lab.run("policy", "delete", str(policy))


def test_egress_l7_rules(lab: Lab) -> None:
    egress = textwrap.dedent("""\
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: frontend-egress, namespace: payments}
        spec:
          endpointSelector: {matchLabels: {app: frontend}}
          egress:
            - toEndpoints: [{matchLabels: {app: api}}]
              toPorts:
                - ports: [{port: "8080", protocol: TCP}]
                  rules:
                    http: [{method: GET, path: /healthz}]
        """)
    policy = lab.folder.parent / "frontend-egress-l7.yaml"
    policy.write_text(egress)
    assert lab.run("policy", "apply", str(policy)).returncode == 0
    try:
        assert http_code(lab, "payments/frontend", HEALTH) == "200"
        # /api/v1/orders: the api's ingress rules allow it, the frontend's egress rules do not
        assert http_code(lab, "payments/frontend", ORDERS) == "403"
        flows = l7_flows(
            lab, "--namespace", "payments", "--verdict", "DROPPED", "--http-path", "/api/v1/orders"
        )
        assert any(f["traffic_direction"] == "EGRESS" for f in flows)
    finally:
        # back to the scenario's L4 frontend-egress
        scenario = (
            Path(__file__).resolve().parents[2] / "hubblepy/lab/scenarios/payments/allow-app-paths.yaml"
        )
        assert lab.run("policy", "apply", str(scenario)).returncode == 0


def test_l7_flow_fields_and_filters(lab: Lab) -> None:
    assert (
        http_code(lab, "payments/frontend", ORDERS, "-H", "Authorization: Bearer secret", "-H", "X-Trace: t1")
        == "200"
    )
    flows = l7_flows(lab, "--namespace", "payments", "--http-path", "/api/v1/orders", "--http-status", "200")
    response = flows[-1]
    assert response["l7"]["type"] == "RESPONSE" and response["verdict"] == "FORWARDED"
    assert int(response["l7"]["latency_ns"]) > 0
    assert response["source"]["pod_name"] == "api" and response["destination"]["pod_name"] == "frontend"
    request = [
        f
        for f in l7_flows(lab, "--http-method", "GET", "--http-url", ".*/api/v1/orders")
        if f["l7"]["type"] == "REQUEST"
    ][-1]
    headers = {h["key"]: h["value"] for h in request["l7"]["http"]["headers"]}
    assert headers["Authorization"] == "HUBBLE_REDACTED"
    assert [p["name"] for p in request["ingress_allowed_by"]] == ["api-http-l7"]
    assert l7_flows(lab, "--http-header", "X-Trace:t1")
    assert not l7_flows(lab, "--http-header", "X-Trace:other")
    others = l7_flows(lab, "--namespace", "payments", "--not", "--http-method", "GET")
    assert all(f["l7"]["http"]["method"] != "GET" for f in others)


def test_proxy_killed_fails_closed_then_recovers(lab: Lab) -> None:
    pid = proxy_pid(lab)
    out = lab.exec("payments/frontend", sys.executable, "-c", KILL_AND_RETRY, str(pid), timeout=60)
    assert out.stdout.split() == ["failed", "200"], out.stderr
    assert proxy_pid(lab) != pid
    drops = lab.flows("--type", "drop", "--to-pod", "payments/api")
    assert any(f.get("drop_reason_desc") == "SOCKET_LOOKUP_FAILED" for f in drops), [
        f.get("drop_reason_desc") for f in drops
    ]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
