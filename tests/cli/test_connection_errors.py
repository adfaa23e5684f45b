"""Connection errors of the live commands: each cause its own line, naming it and the flag that fixes it.

Every case runs `hubble status` as a process against a real server on loopback (or a port nothing
listens on) with ``--timeout 60s``: the subprocess limit of 30 s would fail a command that waited for
the dial timeout instead of finding the cause as soon as gRPC reports the failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import loopback  # noqa: E402

pytest.importorskip("cryptography")
REPO = Path(__file__).resolve().parents[2]


def hubble(*argv: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": "/nonexistent-hubblepy-test-home",
    }
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", *argv, "--timeout", "60s"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return loopback.make_ca_and_server_cert(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(certs):
    server, address = loopback.health_server(certs)
    yield address.replace("127.0.0.1", "localhost")
    server.stop(None)


@pytest.fixture(scope="module")
def plain_server():
    server, address = loopback.health_server()
    yield address
    server.stop(None)


def test_refused_names_the_cause_and_server_flag():
    port = loopback.free_port()
    err = one_error_line(hubble("status", "--server", f"127.0.0.1:{port}"))
    assert err.startswith(
        f"failed to connect to '127.0.0.1:{port}': dial tcp 127.0.0.1:{port}: connect: connection refused"
    )
    assert "--server" in err


def test_unresolvable_name():
    err = one_error_line(hubble("status", "--server", "nonexistent.invalid:4245"))
    assert err.startswith(
        "failed to connect to 'nonexistent.invalid:4245': dial tcp: lookup nonexistent.invalid: no such host"
    )
    assert "--server" in err


def test_tls_name_mismatch_names_the_certificate_names(tls_server, certs):
    err = one_error_line(
        hubble("status", "--server", tls_server, "--tls", "--tls-ca-cert-files", str(certs["ca"]))
    )
    assert err.startswith(
        f"failed to connect to '{tls_server}': tls: failed to verify certificate: "
        f"x509: certificate is valid for {loopback.RELAY_NAME}, not localhost"
    )
    assert "--tls-server-name" in err


def test_tls_server_name_fixes_the_mismatch(tls_server, certs):
    result = hubble(
        "status", "--server", tls_server, "--tls", "--tls-ca-cert-files", str(certs["ca"]),
        "--tls-server-name", loopback.RELAY_NAME,
    )  # fmt: skip
    # The connection works; this server only has the health service.
    assert result.stdout == f"Healthcheck (via {tls_server}): Ok\n"
    assert result.stderr.startswith("failed to get hubble server status: rpc error: code = Unimplemented")


def test_unknown_ca(tls_server):
    err = one_error_line(hubble("status", "--server", f"tls://{tls_server}"))
    assert err.startswith(
        f"failed to connect to 'tls://{tls_server}': tls: failed to verify certificate: "
        "x509: certificate signed by unknown authority"
    )
    assert "--tls-ca-cert-files" in err and "--tls-allow-insecure" in err


def test_plaintext_client_against_tls_server(tls_server):
    err = one_error_line(hubble("status", "--server", tls_server))
    assert err.startswith(
        f"failed to connect to '{tls_server}': the server speaks TLS, this client plaintext"
    )
    assert "--tls" in err


def test_tls_client_against_plaintext_server(plain_server):
    err = one_error_line(hubble("status", "--server", plain_server, "--tls"))
    assert err.startswith(
        f"failed to connect to '{plain_server}': tls: first record does not look like a TLS handshake"
    )
    assert "drop --tls" in err


def test_observe_reports_the_same_causes():
    port = loopback.free_port()
    err = one_error_line(hubble("observe", "--server", f"127.0.0.1:{port}"))
    assert "connect: connection refused" in err


def test_missing_unix_socket(tmp_path):
    path = tmp_path / "hubble.sock"
    err = one_error_line(hubble("status", "--server", f"unix://{path}"))
    assert err.startswith(
        f"failed to connect to 'unix://{path}': dial unix {path}: connect: no such file or directory"
    )
