"""TLS and mTLS on the node's TCP listener, with certificates made in the test (cryptography)."""

import datetime

import grpc
import pytest

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(cn: str):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool, san: str | None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, _name("test-ca"), ca_key, True, None)
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    for who, san in (("server", "n1.default.hubble-grpc.cilium.io"), ("client", "client")):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{who}-key"] = _pem_key(key)
        files[who] = _cert(who, key, ca.subject, ca_key, False, san).public_bytes(serialization.Encoding.PEM)
    paths = {}
    for name, data in files.items():
        path = d / f"{name}.pem"
        path.write_bytes(data)
        paths[name] = path
    return paths


def _status(channel) -> int:
    stub = observer_pb2_grpc.ObserverStub(channel)
    return stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5).max_flows


def _tls_channel(address, pki, client_cert: bool):
    creds = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(),
        private_key=pki["client-key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client"].read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", "n1.default.hubble-grpc.cilium.io")]
    )


def test_tls_required_refuses_plaintext(procs, pki):
    node = procs.agent("n1", "--tls-cert-file", str(pki["server"]), "--tls-key-file", str(pki["server-key"]))
    with pytest.raises(grpc.RpcError) as info:
        _status(grpc.insecure_channel(node.address))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _status(_tls_channel(node.address, pki, client_cert=False)) == 4095


def test_mtls_refuses_client_without_certificate(procs, pki):
    node = procs.agent(
        "n1",
        "--tls-cert-file",
        str(pki["server"]),
        "--tls-key-file",
        str(pki["server-key"]),
        "--tls-client-ca-files",
        str(pki["ca"]),
    )
    with pytest.raises(grpc.RpcError) as info:
        _status(_tls_channel(node.address, pki, client_cert=False))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _status(_tls_channel(node.address, pki, client_cert=True)) == 4095


def test_relay_reaches_mtls_node(procs, pki):
    node = procs.agent(
        "n1",
        "--tls-cert-file",
        str(pki["server"]),
        "--tls-key-file",
        str(pki["server-key"]),
        "--tls-client-ca-files",
        str(pki["ca"]),
    )
    relay = procs.relay(
        "--peers",
        f"n1={node.address}",
        "--tls-hubble-server-ca-files",
        str(pki["ca"]),
        "--tls-hubble-client-cert-file",
        str(pki["client"]),
        "--tls-hubble-client-key-file",
        str(pki["client-key"]),
        "--tls-hubble-server-name",
        "n1.default.hubble-grpc.cilium.io",
    )
    status = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address)).ServerStatus(
        observer_pb2.ServerStatusRequest(), timeout=10
    )
    assert status.num_connected_nodes.value == 1 and status.max_flows == 4095
