"""Nodes + relay + CLI as real processes on loopback: same bytes as upstream, merge, node failure, TLS."""

import calendar
import json
import signal
import subprocess
import threading
import time

import grpc
import orjson
import pytest
from liveprocs import FIXTURES, FLOWS, clean_env, hubble_cli

from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

CASES = {
    c["name"]: c for c in map(json.loads, (FIXTURES / "expected" / "cases.jsonl").read_text().splitlines())
}
SAME_BYTES_CASES = [
    "compact-all-default",
    "dict-first-8",
    "table-dropped",
    "json-all-roundtrip",
    "jsonpb-kafka",
    "http-path-regex",
    "color-always-first-12",
    "policy-names-compact",
    "since-until-midnight",
    "last-3-dropped",
    "to-service-l7",
    "allowlist-ored-with-flags",
]
SELECTORS = {"--first", "--last", "--all", "--since", "--until", "--follow"}


def observe(
    server: str, *args: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*hubble_cli(), "observe", "--server", server, *args],
        capture_output=True,
        env=env or clean_env(),
        timeout=timeout,
    )


def wait_for_flows(address: str, count: int) -> None:
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + 20
    while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def one_node_relay():
    from liveprocs import Procs

    procs = Procs()
    node = procs.agent("n1", "--replay", str(FLOWS), "--replay-verbatim", "--rate", "0")
    wait_for_flows(node.address, 230)
    relay = procs.relay("--peers", node.address)
    yield relay.address
    procs.close()


@pytest.mark.parametrize("name", SAME_BYTES_CASES)
def test_live_output_through_node_and_relay_matches_upstream_file_output(one_node_relay, name):
    case = CASES[name]
    args = list(case["args"])
    if not SELECTORS & set(args):
        args.append("--all")  # a file prints every record; live defaults to --last 20
    result = observe(one_node_relay, *args)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == case["stdout"]


def test_two_nodes_merge_into_time_order(procs, tmp_path):
    lines = FLOWS.read_bytes().splitlines(keepends=True)
    halves = []
    for i in range(2):
        path = tmp_path / f"half{i}.jsonl"
        path.write_bytes(b"".join(lines[i::2]))
        halves.append(procs.agent(f"n{i}", "--replay", str(path), "--replay-verbatim", "--rate", "0"))
    for node in halves:
        wait_for_flows(node.address, 115)
    relay = procs.relay("--peers", ",".join(n.address for n in halves), "--sort-buffer-len-max", "1000")
    result = observe(relay.address, "--all", "-o", "json")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == FLOWS.read_bytes()
    # Upstream semantics: --last N goes to every node (N per node); strict mode gives N in total.
    assert observe(relay.address, "--last", "3", "-o", "json").stdout.count(b"\n") == 6
    strict = observe(relay.address, "--last", "3", "-o", "json", env=clean_env(HUBBLEPY_STRICT_LAST="1"))
    assert strict.stdout == b"".join(lines[-3:])
    assert "3 flows returned, 2/2 nodes answered, 0 events lost" in strict.stderr.decode()


def test_relay_rejects_invalid_regex_with_invalid_argument(one_node_relay):
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(one_node_relay))
    req = observer_pb2.GetFlowsRequest(number=5)
    req.whitelist.add().http_path.append("(")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.GetFlows(req))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "error parsing regexp" in info.value.details()


def test_unreachable_server_is_one_line_and_nonzero(tmp_path):
    result = observe("127.0.0.1:1", "--timeout", "1s")
    assert result.returncode != 0
    assert result.stderr.decode().count("\n") == 1 and "127.0.0.1:1" in result.stderr.decode()


def test_node_killed_mid_stream_reports_error_and_comes_back_in_follow_mode(procs):
    a = procs.agent("node-a", "--replay", str(FLOWS), "--rate", "100")
    b = procs.agent("node-b", "--replay", str(FLOWS), "--rate", "100")
    relay = procs.relay(
        "--peers",
        f"{a.address},{b.address}",
        "--retry-timeout",
        "1s",
        "--sort-buffer-drain-timeout",
        "100ms",
        "--error-aggregation-window",
        "100ms",
    )
    cli = subprocess.Popen(
        [*hubble_cli(), "observe", "--server", relay.address, "-f", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    seen: dict[str, float] = {}
    newest_second: dict[str, int] = {}  # per node, the whole second of its newest flow
    stderr_chunks: list[bytes] = []
    stderr_reader = threading.Thread(target=lambda: stderr_chunks.extend(cli.stderr), daemon=True)
    stderr_reader.start()

    def reader():
        for line in cli.stdout:
            resp = orjson.loads(line)
            node = resp.get("node_name", "")
            seen[node] = time.monotonic()
            second = calendar.timegm(time.strptime(resp["time"][:19], "%Y-%m-%dT%H:%M:%S"))
            newest_second[node] = max(newest_second.get(node, 0), second)

    threading.Thread(target=reader, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not {"node-a", "node-b"} <= seen.keys():
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        port = b.port
        b.kill(signal.SIGKILL)
        time.sleep(0.5)
        killed_at = time.monotonic()
        last_a = seen["node-a"]
        while seen["node-a"] == last_a:  # the stream goes on with the other node
            assert time.monotonic() < killed_at + 10
            time.sleep(0.05)
        restart_second = int(time.time())
        restarted = procs.agent("node-b", "--replay", str(FLOWS), "--rate", "100", listen=f"127.0.0.1:{port}")
        back_at = time.monotonic()
        # flows made by the restarted node (flows of before the kill may still leave the sort buffer)
        while newest_second.get("node-b", 0) <= restart_second:
            assert time.monotonic() < back_at + 5, "node-b not back within 5 s"
            time.sleep(0.05)
        assert restarted.popen.poll() is None
        assert cli.poll() is None
    finally:
        cli.send_signal(signal.SIGINT)
        cli.wait(10)
        stderr_reader.join(10)  # the node error may be among the last lines written
    assert cli.returncode == 0
    errors = b"".join(stderr_chunks).decode()
    assert "NODE_ERROR" in errors and "node-b" in errors


def test_node_unavailable_at_start_is_picked_up_in_follow_mode(procs):
    import socket

    with socket.socket() as s:  # a free port for a node that is not up yet
        s.bind(("127.0.0.1", 0))
        late_port = s.getsockname()[1]
    early = procs.agent("early", "--replay", str(FLOWS), "--rate", "50")
    relay = procs.relay(
        "--peers",
        f"{early.address},late=127.0.0.1:{late_port}",
        "--retry-timeout",
        "1s",
        "--dial-timeout",
        "1s",
    )
    cli = subprocess.Popen(
        [*hubble_cli(), "observe", "--server", relay.address, "-f", "-o", "json", "--debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    nodes: set[str] = set()
    threading.Thread(
        target=lambda: [nodes.add(orjson.loads(line).get("node_name", "")) for line in cli.stdout],
        daemon=True,
    ).start()
    stderr_chunks: list[bytes] = []
    threading.Thread(target=lambda: stderr_chunks.extend(cli.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while "early" not in nodes:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        procs.agent("late", "--replay", str(FLOWS), "--rate", "50", listen=f"127.0.0.1:{late_port}")
        started = time.monotonic()
        while "late" not in nodes:
            assert time.monotonic() < started + 5, "late node not picked up within 5 s"
            time.sleep(0.05)
    finally:
        cli.send_signal(signal.SIGINT)
        cli.wait(10)
    assert cli.returncode == 0
    status = b"".join(stderr_chunks).decode()
    assert "NODE_UNAVAILABLE" in status and "late" in status


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_through_relay_gets_lost_events_and_relay_memory_stays_bounded(procs):
    node = procs.agent("fast", "--replay", str(FLOWS), "--rate", "8000", "--event-buffer-capacity", "255")
    relay = procs.relay("--peers", node.address)
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
    stream = stub.GetFlows(observer_pb2.GetFlowsRequest(follow=True))
    lost = flows = 0
    samples = []
    for resp in stream:
        if resp.HasField("lost_events"):
            lost += resp.lost_events.num_events_lost
        elif resp.HasField("flow"):
            flows += 1
            if flows % 20 == 0:
                time.sleep(0.01)  # a client slower than the node
                samples.append(_rss_kib(relay.popen.pid))
        if lost > 5_000:
            break
    stream.cancel()
    assert lost > 5_000
    settled = samples[len(samples) // 4 :]
    assert max(settled) - min(settled) < 30 * 1024, samples


def test_relay_learns_nodes_from_the_peer_service(procs, tmp_path):
    a = procs.agent("node-a")
    sock = tmp_path / "hubble.sock"
    b = procs.agent("node-b", "--socket-path", str(sock), "--peers", f"node-a={a.address}")
    relay = procs.relay("--peer-service", f"unix://{sock}")
    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(relay.address))
    deadline = time.monotonic() + 10
    while True:
        nodes = {(n.name, n.address, n.state) for n in stub.GetNodes(observer_pb2.GetNodesRequest()).nodes}
        if len(nodes) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert nodes == {("node-a", a.address, 1), ("node-b", b.address, 1)}
