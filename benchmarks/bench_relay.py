"""End-to-end live throughput: replay nodes -> hubble-relay -> `hubble observe -o json > /dev/null`.

Each node is a `hubble agent` whose ring (65535) is filled once from a generated flows file
(``--replay-verbatim``), so the measurement is the backlog transfer, not the replay rate. Printed:
flows/s reading one node directly, through the relay with 1 node and with 3 nodes, and the relay's
cost as the ratio direct/relayed for one node. Our CLI talks the hubblepy.Batch/GetFlowsJSON
extension to our nodes and relay; the "bare gRPC reader" lines measure the standard
observer.Observer/GetFlows path (what an upstream client uses) without any decoding. No assertions.

Run: ``python benchmarks/bench_relay.py`` (``HUBBLEPY_HUBBLE_CMD`` overrides the CLI command).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
FLOWS = REPO / "tests" / "fixtures" / "flows.jsonl"  # recorded upstream flows
CAPACITY = 65535


def make_flows(path: Path, count: int, node: str) -> None:
    """``count`` fixture flows with distinct, increasing times and uuids, on node ``node``."""
    sys.path.insert(0, str(REPO))
    from hubblepy.codec.timestamps import format_ns

    base = [orjson.loads(line)["flow"] for line in FLOWS.read_bytes().splitlines()]
    start = time.time_ns() - count * 1000
    with path.open("wb") as out:
        for i in range(count):
            flow = dict(base[i % len(base)])
            stamp = format_ns(start + i * 1000 + 1)
            flow["time"] = stamp
            flow["uuid"] = f"bench-{node}-{i}"
            flow["node_name"] = node
            out.write(orjson.dumps({"flow": flow, "node_name": node, "time": stamp}) + b"\n")


def start(argv: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"cannot start {argv}: {line}")
    return proc, m.group(1)


def wait_filled(address: str, count: int) -> None:
    import grpc

    from hubblepy.api.observer import observer_pb2, observer_pb2_grpc

    stub = observer_pb2_grpc.ObserverStub(grpc.insecure_channel(address))
    while stub.ServerStatus(observer_pb2.ServerStatusRequest()).seen_flows < count:
        time.sleep(0.1)


def observe_rate(server: str, expected: int) -> tuple[float, int]:
    cmd = os.environ.get("HUBBLEPY_HUBBLE_CMD", "").split() or [sys.executable, "-m", "hubblepy.cli"]
    t0 = time.perf_counter()
    out = subprocess.run(
        [*cmd, "observe", "--server", server, "--all", "-o", "json"], capture_output=True, check=True
    ).stdout
    elapsed = time.perf_counter() - t0
    got = out.count(b"\n")
    return got / elapsed, got


def raw_rate(server: str) -> tuple[float, int]:
    """Flows/s of a bare gRPC reader that does not decode (isolates server and relay cost)."""
    import grpc

    from hubblepy.api.observer import observer_pb2

    channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)])
    call = channel.unary_stream(
        "/observer.Observer/GetFlows",
        request_serializer=observer_pb2.GetFlowsRequest.SerializeToString,
        response_deserializer=None,
    )
    t0 = time.perf_counter()
    got = sum(1 for _ in call(observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)))
    elapsed = time.perf_counter() - t0
    channel.close()
    return got / elapsed, got


def main() -> None:
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            nodes = []
            for i in range(3):
                path = Path(tmp) / f"node{i}.jsonl"
                make_flows(path, CAPACITY, f"bench-node-{i}")
                proc, addr = start(
                    [sys.executable, "-m", "hubblepy.observer", "--node-name", f"bench-node-{i}",
                     "--listen-address", "127.0.0.1:0", "--event-buffer-capacity", str(CAPACITY),
                     "--replay", str(path), "--replay-verbatim", "--rate", "0"]
                )  # fmt: skip
                procs.append(proc)
                nodes.append(addr)
            for addr in nodes:
                wait_filled(addr, CAPACITY)
            observe_rate(nodes[0], CAPACITY)  # warm-up: nodes serialize each entry once, on first read
            direct, n_direct = observe_rate(nodes[0], CAPACITY)
            relay1, r1 = start(
                [
                    sys.executable,
                    "-m",
                    "relay",
                    "--listen-address",
                    "127.0.0.1:0",
                    "--peers",
                    nodes[0],
                    "--health-listen-address",
                    "",
                ]
            )
            procs.append(relay1)
            via1, n_via1 = observe_rate(r1, CAPACITY)
            relay3, r3 = start(
                [
                    sys.executable,
                    "-m",
                    "relay",
                    "--listen-address",
                    "127.0.0.1:0",
                    "--peers",
                    ",".join(nodes),
                    "--health-listen-address",
                    "",
                ]
            )
            procs.append(relay3)
            via3, n_via3 = observe_rate(r3, 3 * CAPACITY)
            for addr in nodes:  # warm-up: each node builds its protobuf bytes once per entry
                raw_rate(addr)
            raw_direct, _ = raw_rate(nodes[0])
            raw_via1, _ = raw_rate(r1)
            raw_via3, n_raw3 = raw_rate(r3)
        print("hubble observe --all -o json > /dev/null:")
        print(f"direct node      : {direct:10.0f} flows/s ({n_direct} flows, -o json > /dev/null)")
        print(f"relay, 1 node    : {via1:10.0f} flows/s ({n_via1} flows)")
        print(f"relay, 3 nodes   : {via3:10.0f} flows/s ({n_via3} flows)")
        print(f"relay cost ratio : {direct / via1:10.2f} x (direct / via relay, 1 node)")
        print("bare gRPC reader (no decoding), same requests:")
        print(f"direct node      : {raw_direct:10.0f} flows/s")
        print(f"relay, 1 node    : {raw_via1:10.0f} flows/s")
        print(f"relay, 3 nodes   : {raw_via3:10.0f} flows/s ({n_raw3} responses incl. node status)")
        print(f"relay cost ratio : {raw_direct / raw_via1:10.2f} x")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    main()
