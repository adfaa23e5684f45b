"""TLS and mTLS on the node's TCP listener, with certificates made in the test (cryptography)."""

import grpc
import pytest

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from liveprocs import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


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
