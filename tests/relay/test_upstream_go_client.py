"""A grpc-go client (the gRPC stack of upstream's hubble CLI) reads GetFlows from a node and the relay.

benchmarks/upstream_client is built with Debian's golang-go and golang-google-grpc-dev (installed by
scripts/bootstrap.sh). It reads the standard observer.Observer/GetFlows stream without decoding and
prints the number of responses and a digest of their bytes; the node's stream must be byte for byte
what grpcio's client reads, and the relay's must parse and end with an OK status in grpc-go.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from liveprocs import FLOWS, REPO

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

GRPC_GO_SOURCES = Path("/usr/share/gocode/src/google.golang.org/grpc")
FLOW_COUNT = len(FLOWS.read_bytes().splitlines())


@pytest.fixture(scope="module")
def go_client(tmp_path_factory) -> str:
    go = shutil.which("go")
    if go is None or not GRPC_GO_SOURCES.is_dir():
        pytest.skip(
            "needs Debian's golang-go and golang-google-grpc-dev (scripts/bootstrap.sh installs them)"
        )
    out = tmp_path_factory.mktemp("goclient")
    binary = out / "upstream_client"
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="")
    if not (env.get("HOME") or env.get("XDG_CACHE_HOME")):  # else Go's own cache makes rebuilds quick
        env.setdefault("GOCACHE", str(out / "cache"))
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(REPO / "benchmarks" / "upstream_client" / "main.go")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    return str(binary)


def run_go(binary: str, address: str, request: observer_pb2.GetFlowsRequest) -> tuple[int, str]:
    proc = subprocess.run(
        [binary, address, request.SerializeToString().hex()],
        input="go\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ready"
    count, _, _, digest = lines[1].split()
    return int(count), digest


def grpcio_digest(address: str, request: observer_pb2.GetFlowsRequest) -> tuple[int, str]:
    channel = grpc.insecure_channel(address)
    call = channel.unary_stream(
        "/observer.Observer/GetFlows",
        request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
        response_deserializer=None,
    )
    digest = hashlib.sha256()
    count = 0
    for message in call(request, timeout=30):
        count += 1
        digest.update(len(message).to_bytes(4, "big") + message)
    channel.close()
    return count, digest.hexdigest()


def wait_for_flows(address: str, count: int) -> None:
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + 30
    while stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=5).seen_flows < count:
        assert time.monotonic() < deadline, "the node did not replay its flows"
        time.sleep(0.05)


@pytest.fixture
def node(procs):
    agent = procs.agent("go-node", "--replay", str(FLOWS), "--replay-verbatim", "--rate", "0")
    wait_for_flows(agent.address, FLOW_COUNT)
    return agent


def test_node_stream_is_what_grpcio_reads(go_client, node):
    for request in (
        observer_pb2.GetFlowsRequest(number=FLOW_COUNT),
        observer_pb2.GetFlowsRequest(number=7),
        observer_pb2.GetFlowsRequest(first=True, number=3),
    ):
        go = run_go(go_client, node.address, request)
        assert go == grpcio_digest(node.address, request)
        assert go[0] == request.number


def test_relay_stream_reaches_grpc_go(go_client, node, procs):
    relay = procs.relay("--peers", f"go-node={node.address}")
    count, _ = run_go(go_client, relay.address, observer_pb2.GetFlowsRequest(number=50))
    assert count == 50 + 1  # the relay's NODE_CONNECTED status, then the flows
    count, _ = run_go(go_client, relay.address, observer_pb2.GetFlowsRequest(number=FLOW_COUNT))
    assert count == FLOW_COUNT + 1


def test_bad_request_is_an_error_status_in_grpc_go(go_client, node):
    proc = subprocess.run(
        [
            go_client,
            node.address,
            observer_pb2.GetFlowsRequest(first=True, follow=True).SerializeToString().hex(),
        ],
        input="go\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "code = InvalidArgument desc = first cannot be specified with follow" in proc.stderr
