"""Scenario validation and the lab's servers (no root: servers run on loopback in this namespace)."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from pathlib import Path

import pytest

from hubblepy.lab.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario
from hubblepy.lab.servers import ZoneFile, dns_answer, serve_dns, serve_http


def test_default_scenario_is_the_payments_story():
    sc = load_scenario()
    assert sc.path == str(DEFAULT_SCENARIO)
    pods = {p.key: p for p in sc.pods}
    assert set(pods) == {
        "payments/frontend",
        "payments/api",
        "payments/postgres",
        "kube-system/kube-dns",
        "default/probe",
    }
    assert pods["payments/api"].servers[0].kind == "http" and pods["payments/api"].servers[0].port == 8080
    assert pods["payments/postgres"].servers[0].port == 5432
    assert pods["kube-system/kube-dns"].labels == {"k8s-app": "kube-dns"}
    assert pods["default/probe"].labels == {}
    refs = {str(p.ref) for p in sc.policies}
    assert {"payments/default-deny", "payments/api-allow", "payments/allow-dns"} <= refs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\npods: []\n", "pods: must be a non-empty list"),
        (
            "name: x\npods:\n  - {name: Bad_Name}\n",
            "pods[0].name: 'Bad_Name' is not a valid name (lowercase letters, digits and '-')",
        ),
        (
            "name: x\npods:\n  - {name: a, servers: [{http: {port: 99999}}]}\n",
            "pods[0].servers[0].http.port: 99999 is not a valid port",
        ),
        (
            "name: x\npods:\n  - {name: a, servers: [{ftp: {}}]}\n",
            "pods[0].servers[0]: must have exactly one of: http, tcp, dns",
        ),
        ("name: x\npods:\n  - {name: a}\n  - {name: a}\n", "pods[1]: default/a is defined twice"),
        ("name: x\npods:\n  - {name: a}\npolicies: [nope.yaml]\n", "policies[0]: nope.yaml not found"),
        ("name: x\ncolour: red\npods:\n  - {name: a}\n", "colour: unknown field"),
    ],
)
def test_scenario_errors_name_the_field(tmp_path, text, expected):
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, text))
    assert str(info.value) == f"scenario {tmp_path / 's.yaml'}: {expected}"


def _query(name: str, qid: int = 0x1234, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_dns_answer_a_nxdomain_refused_and_garbage():
    zone = {"api.payments.svc.cluster.local": "10.244.0.11"}
    reply = dns_answer(_query("API.payments.svc.cluster.local"), zone)
    qid, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (qid, flags & 0xF, qd, an) == (0x1234, 0, 1, 1)
    assert reply[-4:] == socket.inet_aton("10.244.0.11")
    assert (
        struct.unpack_from("!H", dns_answer(_query("api.default.svc.cluster.local"), zone), 2)[0] & 0xF == 3
    )
    assert struct.unpack_from("!H", dns_answer(_query("example.com"), zone), 2)[0] & 0xF == 5
    assert dns_answer(b"\x00\x01", zone) is None
    assert struct.unpack_from("!H", dns_answer(_query("x")[:14], zone), 2)[0] & 0xF == 1  # FORMERR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dns_server_udp_and_tcp_with_zone_reload(tmp_path):
    zone_path = tmp_path / "zone.json"
    zone_path.write_text(json.dumps({"api.payments.svc.cluster.local": "10.244.0.11"}))
    port = _free_port()
    servers = serve_dns(port, ZoneFile(str(zone_path)))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(5)
            u.sendto(_query("api.payments.svc.cluster.local"), ("127.0.0.1", port))
            assert u.recv(512)[-4:] == socket.inet_aton("10.244.0.11")
        zone_path.write_text(json.dumps({"api.payments.svc.cluster.local": "10.244.0.99"}))
        import os

        os.utime(zone_path, (1, 1))  # a different mtime even within the same clock tick
        with socket.create_connection(("127.0.0.1", port), timeout=5) as t:
            q = _query("api.payments.svc.cluster.local")
            t.sendall(struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", t.recv(2))[0]
            data = b""
            while len(data) < size:
                data += t.recv(size - len(data))
            assert data[-4:] == socket.inet_aton("10.244.0.99")
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def test_http_server_answers_routes_and_every_method():
    server = serve_http(0, ["/api/v1/orders", "/healthz"])  # a port free on every address it binds
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        for method, path, status in [
            ("GET", "/api/v1/orders", 200),
            ("POST", "/api/v1/orders", 201),
            ("DELETE", "/healthz", 200),
            ("GET", "/nope", 404),
        ]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(method, path, body=b"{}" if method == "POST" else None)
            resp = conn.getresponse()
            assert resp.status == status
            assert json.loads(resp.read())["method"] == method
            conn.close()
        # bodies are read whole, chunked too, so the connection stays usable
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/healthz", body=iter([b"a" * 70000, b"b" * 5]), encode_chunked=True)
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())["received"]) == (201, 70005)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
