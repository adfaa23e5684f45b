"""`--tls-allow-insecure`: the CLI reaches TLS servers whose certificate it cannot verify (real processes)."""

import datetime
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

from hubblepy.cli.live_tls import certificate_names
from hubblepy.cli.status import status_main

pytest.importorskip("cryptography")

if "liveprocs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "liveprocs", Path(__file__).parent.parent / "observer" / "liveprocs.py"
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["liveprocs"] = _module
    _spec.loader.exec_module(_module)
liveprocs = sys.modules["liveprocs"]
ENV = {"HOME": "/nonexistent-hubblepy-test-home"}
SELF_SIGNED_NAME = "self-signed.hubble-grpc.cilium.io"


def make_self_signed(directory: Path, dns_name: str | None, common_name: str) -> tuple[Path, Path, bytes]:
    """A self-signed server certificate (optionally without subjectAltName): cert path, key path, DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if dns_name:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = directory / f"{common_name}.pem", directory / f"{common_name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def procs():
    owner = liveprocs.Procs()
    yield owner
    owner.close()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("selfsigned"), SELF_SIGNED_NAME, "self-signed")


def run_status(argv):
    out, err = io.StringIO(), io.StringIO()
    code = status_main(argv, ENV, out, err)
    return code, out.getvalue(), err.getvalue()


def test_certificate_names_reads_san_and_common_name(tmp_path):
    _, _, der = make_self_signed(tmp_path, "a.example", "cn-a")
    assert certificate_names(der) == (["a.example"], [], "cn-a")
    _, _, der = make_self_signed(tmp_path, None, "cn-only")
    assert certificate_names(der) == ([], [], "cn-only")
    with pytest.raises(ValueError):
        certificate_names(b"\x30\x05\x02\x01")


def test_status_and_list_against_self_signed_node(procs, self_signed):
    cert, key, _ = self_signed
    node = procs.agent("n1", "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    refused = run_status(["--server", node.address, "--tls", "--timeout", "1s"])
    assert (
        refused[0] == 1
        and refused[2]
        == f"failed to connect to '{node.address}': tls: failed to verify certificate: x509: certificate signed by unknown authority (pass the CA that signed it with --tls-ca-cert-files, or use --tls-allow-insecure)\n"
    )
    code, out, err = run_status(["--server", node.address, "--tls", "--tls-allow-insecure"])
    assert code == 0, err
    assert out.splitlines()[:2] == [
        f"Healthcheck (via {node.address}): Ok",
        "Current/Max Flows: 0/4,095 (0.00%)",
    ]
    # the tls:// prefix turns TLS on as well; a certificate with only a common name is usable too
    out_io, err_io = io.StringIO(), io.StringIO()
    from hubblepy.cli.list import list_main

    code = list_main(
        ["nodes", "--server", f"tls://{node.address}", "--tls-allow-insecure"], ENV, out_io, err_io
    )
    assert code == 0, err_io.getvalue()
    assert out_io.getvalue().splitlines()[1].startswith("n1 ")


def test_common_name_only_certificate(procs, tmp_path):
    cert, key, _ = make_self_signed(tmp_path, None, "cn-only-node")
    node = procs.agent("n1", "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    code, out, err = run_status(["--server", node.address, "--tls", "--tls-allow-insecure"])
    assert code == 0, err
    assert out.startswith(f"Healthcheck (via {node.address}): Ok\n")


def test_observe_through_self_signed_relay(procs, self_signed):
    cert, key, _ = self_signed
    node = procs.agent("n1", "--replay", str(liveprocs.FLOWS), "--replay-verbatim", "--rate", "0")
    relay = procs.relay(
        "--peers",
        node.address,
        "--tls-relay-server-cert-file",
        str(cert),
        "--tls-relay-server-key-file",
        str(key),
    )
    base = [
        *liveprocs.hubble_cli(),
        "observe",
        "--server",
        relay.address,
        "--tls",
        "--last",
        "2",
        "-o",
        "json",
    ]
    ok = subprocess.run(
        [*base, "--tls-allow-insecure"], capture_output=True, env=liveprocs.clean_env(), timeout=60
    )
    assert ok.returncode == 0, ok.stderr.decode()
    assert ok.stdout == b"".join(liveprocs.FLOWS.read_bytes().splitlines(keepends=True)[-2:])
    refused = subprocess.run(
        [*base, "--timeout", "1s"], capture_output=True, env=liveprocs.clean_env(), timeout=60
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.decode()
        == f"failed to connect to '{relay.address}': tls: failed to verify certificate: x509: certificate signed by unknown authority (pass the CA that signed it with --tls-ca-cert-files, or use --tls-allow-insecure)\n"
    )


def test_allow_insecure_against_plaintext_server_is_one_line(procs):
    node = procs.agent("n1")
    code, out, err = run_status(
        ["--server", node.address, "--tls", "--tls-allow-insecure", "--timeout", "2s"]
    )
    assert code == 1 and out == ""
    assert err.startswith(f"failed to connect to '{node.address}': ") and err.count("\n") == 1


def test_allow_insecure_unreachable_is_one_line(procs):
    node = procs.agent("n1")
    address = node.address
    node.kill()
    code, _, err = run_status(["--server", address, "--tls", "--tls-allow-insecure", "--timeout", "2s"])
    assert code == 1
    assert err.startswith(f"failed to connect to '{address}': ") and err.count("\n") == 1
