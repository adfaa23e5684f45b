"""TLS between clients and the relay: plaintext refused, mTLS requires a client certificate."""

import grpc
import pytest

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

pytest.importorskip("cryptography")
RELAY_NAME = "relay.hubble-relay.cilium.io"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from liveprocs import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"), server_name=RELAY_NAME)


def _status(channel) -> int:
    stub = observer_pb2_grpc.ObserverStub(channel)
    return stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10).num_connected_nodes.value


def _tls(address, pki, client_cert: bool):
    creds = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(),
        private_key=pki["client-key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client"].read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", RELAY_NAME)])


def test_relay_mtls_to_clients(procs, pki):
    node = procs.agent("n1")
    relay = procs.relay(
        "--peers",
        node.address,
        "--tls-relay-server-cert-file",
        str(pki["server"]),
        "--tls-relay-server-key-file",
        str(pki["server-key"]),
        "--tls-relay-client-ca-files",
        str(pki["ca"]),
    )
    with pytest.raises(grpc.RpcError) as plain:
        _status(grpc.insecure_channel(relay.address))
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as certless:
        _status(_tls(relay.address, pki, client_cert=False))
    assert certless.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _status(_tls(relay.address, pki, client_cert=True)) == 1


def test_cli_observe_over_mtls(procs, pki):
    import subprocess

    from liveprocs import FLOWS, clean_env, hubble_cli

    node = procs.agent("n1", "--replay", str(FLOWS), "--replay-verbatim", "--rate", "0")
    relay = procs.relay(
        "--peers",
        node.address,
        "--tls-relay-server-cert-file",
        str(pki["server"]),
        "--tls-relay-server-key-file",
        str(pki["server-key"]),
        "--tls-relay-client-ca-files",
        str(pki["ca"]),
    )
    common = [*hubble_cli(), "observe", "--server", f"tls://{relay.address}", "--tls-server-name", RELAY_NAME]
    ok = subprocess.run(
        [
            *common,
            "--tls-ca-cert-files",
            str(pki["ca"]),
            "--tls-client-cert-file",
            str(pki["client"]),
            "--tls-client-key-file",
            str(pki["client-key"]),
            "--last",
            "2",
            "-o",
            "json",
        ],
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr.decode()
    assert ok.stdout == b"".join(FLOWS.read_bytes().splitlines(keepends=True)[-2:])
    refused = subprocess.run(
        [*common, "--tls-ca-cert-files", str(pki["ca"]), "--timeout", "2s"],
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    assert refused.returncode != 0
    assert refused.stderr.decode().count("\n") == 1
