"""The relay's separate plaintext gRPC health listener (--health-listen-address), real processes."""

import re
import socket
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

_HEALTH_LINE = re.compile(r"hubble-relay: health service on (\S+)")


def _health_address(proc) -> str:
    deadline = time.monotonic() + 10
    while True:
        for line in proc.stderr_lines:
            m = _HEALTH_LINE.search(line)
            if m:
                return m.group(1)
        assert time.monotonic() < deadline, proc.stderr_lines
        time.sleep(0.05)


def _check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_listener_answers_serving_and_nothing_else(procs):
    node = procs.agent("n1")
    relay = procs.relay("--peers", node.address)
    health = _health_address(relay)
    assert health != relay.address
    for service in ("hubble.server.Observer", ""):
        assert _check(health, service) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        _check(health, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(health) as channel, pytest.raises(grpc.RpcError) as observer:
        observer_pb2_grpc.ObserverStub(channel).ServerStatus(observer_pb2.ServerStatusRequest(), timeout=10)
    assert observer.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_listener_stays_plaintext_when_the_relay_serves_tls(procs, tmp_path):
    pytest.importorskip("cryptography")
    from liveprocs import make_pki

    pki = make_pki(tmp_path, server_name="relay.hubble-relay.cilium.io")
    relay = procs.relay(
        "--peers",
        procs.agent("n1").address,
        "--tls-relay-server-cert-file",
        str(pki["server"]),
        "--tls-relay-server-key-file",
        str(pki["server-key"]),
    )
    assert _check(_health_address(relay), "hubble.server.Observer") == health_pb2.HealthCheckResponse.SERVING


def test_empty_address_disables_the_health_listener(procs):
    relay = procs.relay("--peers", procs.agent("n1").address, "--health-listen-address", "")
    # the main endpoint still answers health checks; no second listener is announced
    assert _check(relay.address, "hubble.server.Observer") == health_pb2.HealthCheckResponse.SERVING
    assert not any(_HEALTH_LINE.search(line) for line in relay.stderr_lines)


def test_busy_health_address_is_a_warning_not_a_failure(procs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        relay = procs.relay("--peers", procs.agent("n1").address, "--health-listen-address", taken)
        assert _check(relay.address, "") == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 10
        while not any("warning: health service disabled" in line for line in relay.stderr_lines):
            assert time.monotonic() < deadline, relay.stderr_lines
            time.sleep(0.05)
    assert any(f"cannot listen on {taken}" in line for line in relay.stderr_lines)
