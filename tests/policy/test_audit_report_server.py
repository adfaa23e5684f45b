"""`hubble policy audit-report` against a real `hubble agent` process, plain and over TLS, with
--since/--until on the server and on files (the two must give the same report)."""

from __future__ import annotations

import datetime
import importlib.util
import json
import sys
import time
from pathlib import Path

import grpc
import orjson
import pytest
from hubbletest import clean_env, run_hubble

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

if "liveprocs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "liveprocs", Path(__file__).parent.parent / "observer" / "liveprocs.py"
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["liveprocs"] = _module
    _spec.loader.exec_module(_module)
liveprocs = sys.modules["liveprocs"]

SERVER_NAME = "audit.hubble-grpc.cilium.io"


def _audit_line(time_text: str, src_pod: str, port: int) -> bytes:
    flow = {
        "time": time_text,
        "uuid": f"00000000-0000-4000-8000-{port:06d}{len(src_pod):06d}",
        "verdict": "AUDIT",
        "IP": {"source": "10.244.0.10", "destination": "10.244.0.11", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": port}},
        "source": {"identity": 300, "namespace": "default", "pod_name": src_pod},
        "destination": {"ID": 101, "identity": 301, "namespace": "payments", "pod_name": "api"},
        "Type": "L3_L4",
        "node_name": "n1",
        "event_type": {"type": 5},
        "traffic_direction": "INGRESS",
        "ingress_denied_by": [{"name": "no-probe", "namespace": "payments", "kind": "CiliumNetworkPolicy"}],
        "policy_log": ["audit (policy payments/no-probe): deny: CiliumNetworkPolicy payments/no-probe"],
    }
    return orjson.dumps({"flow": flow, "node_name": "n1", "time": time_text})


@pytest.fixture(scope="module")
def flows_file(tmp_path_factory) -> tuple[Path, int]:
    """Our AUDIT flows at 10:00:00..10:00:05 followed by the upstream fixture flows."""
    lines = [
        _audit_line("2026-01-01T10:00:00Z", "probe", 8080),
        _audit_line("2026-01-01T10:00:01.500Z", "probe", 8080),
        _audit_line("2026-01-01T10:00:02.250Z", "probe", 8080),
        _audit_line("2026-01-01T10:00:03Z", "other", 8443),
        _audit_line("2026-01-01T10:00:05Z", "probe", 8080),
    ]
    path = tmp_path_factory.mktemp("audit") / "flows.jsonl"
    path.write_bytes(liveprocs.FLOWS.read_bytes() + b"\n".join(lines) + b"\n")
    return path, sum(1 for line in path.read_bytes().splitlines() if line.strip())


@pytest.fixture
def procs():
    owner = liveprocs.Procs()
    yield owner
    owner.close()


def _wait_for_replay(address: str, count: int, credentials: grpc.ChannelCredentials | None = None) -> None:
    channel = (
        grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", SERVER_NAME)])
        if credentials
        else grpc.insecure_channel(address)
    )
    try:
        stub = observer_pb2_grpc.ObserverStub(channel)
        deadline = time.monotonic() + 20
        while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < count:
            assert time.monotonic() < deadline, "replay did not finish"
            time.sleep(0.05)
    finally:
        channel.close()


def _report(*args: str) -> dict:
    out = run_hubble(["policy", "audit-report", *args, "-o", "json"])
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr == b""
    return json.loads(out.stdout)


def _groups(report: dict) -> list[tuple[str, str, int, str, str]]:
    return [(g["source"], g["port"], g["count"], g["first_seen"], g["last_seen"]) for g in report["groups"]]


WINDOWS = [
    ([], 5),
    (["--since", "2026-01-01T10:00:01Z"], 4),
    (["--since", "2026-01-01T10:00:01Z", "--until", "2026-01-01T10:00:03Z"], 3),
    (["--until", "2026-01-01T10:00:01.500Z"], 2),
]


def test_server_and_file_give_the_same_report_for_every_window(procs, flows_file):
    path, count = flows_file
    node = procs.agent("n1", "--replay", str(path), "--replay-verbatim", "--rate", "0")
    _wait_for_replay(node.address, count)
    upstream_audits = sum(
        1 for line in liveprocs.FLOWS.read_bytes().splitlines() if b'"verdict":"AUDIT"' in line
    )
    for window, ours in WINDOWS:
        from_server = _report("--server", node.address, *window)
        from_file = _report("--input-file", str(path), *window)
        assert from_server == from_file, window
        # the upstream fixture's AUDIT flows are from 2024: inside the window only without --since
        expected = ours + (upstream_audits if "--since" not in window else 0)
        assert from_server["audited_flows"] == expected, window
    windowed = _report("--server", node.address, *WINDOWS[2][0])
    assert _groups(windowed) == [
        ("default/probe", "TCP/8080", 2, "2026-01-01T10:00:01.500Z", "2026-01-01T10:00:02.250Z"),
        ("default/other", "TCP/8443", 1, "2026-01-01T10:00:03Z", "2026-01-01T10:00:03Z"),
    ]
    # a window nothing falls into
    empty = run_hubble(["policy", "audit-report", "--server", node.address, "--since", "2030-01-01"])
    assert (empty.returncode, empty.stdout) == (1, b"")
    assert empty.stderr.decode() == (
        "hubble policy: no flow with verdict AUDIT matched (since 2030-01-01) in 0 flows read from "
        f"{node.address}: nothing to report, and no evidence about what enforcement would drop\n"
    )


def test_server_settings_come_from_hubble_server_like_the_live_cli(procs, flows_file):
    path, count = flows_file
    node = procs.agent("n1", "--replay", str(path), "--replay-verbatim", "--rate", "0")
    _wait_for_replay(node.address, count)
    out = run_hubble(
        ["policy", "audit-report", "--since", "2026-01-01T10:00:04Z", "-o", "json"],
        env={**clean_env(), "HUBBLE_SERVER": node.address},
    )
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["audited_flows"] == 1


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for SERVER_NAME: it is also the CA that verifies it."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audit-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_flags_of_the_live_cli(procs, flows_file, tmp_path):
    cert, key = _certificate(tmp_path)
    path, count = flows_file
    node = procs.agent(
        "n1",
        "--replay",
        str(path),
        "--replay-verbatim",
        "--rate",
        "0",
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
    )
    _wait_for_replay(node.address, count, grpc.ssl_channel_credentials(cert.read_bytes()))
    window = ["--since", "2026-01-01T10:00:00Z"]
    plain = _report("--input-file", str(path), *window)
    verified = _report(
        "--server",
        node.address,
        "--tls",
        "--tls-ca-cert-files",
        str(cert),
        "--tls-server-name",
        SERVER_NAME,
        *window,
    )
    assert verified == plain and verified["audited_flows"] == 5
    # the tls:// prefix turns TLS on too; --tls-allow-insecure trusts what the server presents
    assert _report("--server", f"tls://{node.address}", "--tls-allow-insecure", *window) == plain
    # without a CA that knows the certificate the connection fails, in one line
    refused = run_hubble(["policy", "audit-report", "--server", node.address, "--tls", "--timeout", "1s"])
    assert refused.returncode == 1
    assert refused.stderr.decode() == (
        f"hubble policy: failed to connect to '{node.address}': tls: failed to verify certificate: x509: certificate signed by unknown authority (pass the CA that signed it with --tls-ca-cert-files, or use --tls-allow-insecure)\n"
    )
    missing = run_hubble(
        [
            "policy",
            "audit-report",
            "--server",
            node.address,
            "--tls",
            "--tls-ca-cert-files",
            "/nonexistent/ca.pem",
        ]
    )
    assert missing.returncode == 1
    assert missing.stderr.decode() == "hubble policy: open /nonexistent/ca.pem: no such file or directory\n"


def test_flag_errors_are_one_line(flows_file):
    path, _ = flows_file
    cases = [
        (
            ["--input-file", str(path), "--since", "yesterday"],
            "failed to parse the since time: failed to convert yesterday to time",
        ),
        (
            ["--input-file", str(path), "--until", "1d"],
            "failed to parse the until time: failed to convert 1d to time",
        ),
        (["--input-file", str(path), "--since", "1m", "--until", "1h"], "--since is later than --until"),
        (["--input-file", str(path), "--tls"], "--tls and --input-file cannot be used together"),
        (["--input-file", str(path), "--server", "x:1"], "--server and --input-file cannot be used together"),
        (
            ["--server", "127.0.0.1:1", "--timeout", "soon"],
            'invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"',
        ),
    ]
    for args, message in cases:
        out = run_hubble(["policy", "audit-report", *args])
        assert (out.returncode, out.stderr.decode()) == (1, f"hubble policy: {message}\n"), args
