"""The relay's overhead over a direct node stream: one client, the same events, the same filter.

A node process fills its ring (65535) with synthetic Cilium-layout samples (benchmarks/node_traffic:
trace and policy-verdict events of long-lived TCP connections, and a quarter policy drops of a
denied client, in the ring as the monitor reader leaves them, decoded when read) and serves it on our h2 transport; a ``hubble-relay`` process
has that node as its only peer. One upstream-style client (grpc-go, upstream's CLI's gRPC stack:
benchmarks/upstream_client; grpcio's single-threaded reader when Go is missing) reads the whole ring
with the standard GetFlows stream, directly from the node and through the relay, in turns: unfiltered
and with ``--verdict DROPPED``. Each read is timed from the call's start to its last response; every
stream is read once first (the node builds or templates each response on first read). Printed per
filter: the median flows/s of ROUNDS reads each way, the ratio direct / relayed and the relay's
overhead (target: at most 10%), the relay's and the node's CPU per 1000 flows during the relayed
reads (the node serves the relay indexed batches) and the node's during the direct reads
(standard GetFlows on its h2 transport, from cached bytes or templates), and the load average.

``python benchmarks/relay_overhead.py`` runs it alone (bench_relay runs it too); ``--serve`` is the node.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

CAPACITY = 65535
ROUNDS = 5
TARGET = 0.10  # the relay may cost at most this share of a direct stream's flows/s
FILTERS = (("unfiltered", None), ("--verdict DROPPED", "DROPPED"))


def serve() -> None:
    """The node: a ring of raw samples served on 127.0.0.1 until SIGTERM."""
    from unfiltered_bench import CAPACITY as RING
    from unfiltered_bench import serve_samples

    assert RING == CAPACITY
    serve_samples(mixed_traffic(CAPACITY))


def mixed_traffic(count: int, drops: float = 0.25) -> list[bytes]:
    """Long-lived connections with a denied client retrying all along: about ``drops`` of the
    samples are policy drops (as in the pipeline benchmark's mix), spread evenly."""
    import random

    import node_traffic

    rng = random.Random(3)
    flows = node_traffic.traffic(count - int(count * drops), rounds=200)
    denied: list[bytes] = []
    port = 20000
    while len(denied) < count - len(flows):
        port += 1
        denied += node_traffic.denied_events(rng, port)
    denied = denied[: count - len(flows)]
    every = len(flows) / max(1, len(denied))
    out: list[bytes] = []
    taken = 0
    for i, sample in enumerate(flows):
        out.append(sample)
        while taken < len(denied) and taken * every <= i:
            out.append(denied[taken])
            taken += 1
    return out + denied[taken:]


def request_hex(verdict: str | None) -> str:
    """GetFlowsRequest for the whole ring (``--all``), with a verdict filter when given."""
    from hubblepy.api.observer import observer_pb2

    request = observer_pb2.GetFlowsRequest(number=(1 << 64) - 1)
    if verdict is not None:
        request.whitelist.add().verdict.append(verdict)
    return request.SerializeToString().hex()


GRPCIO_CLIENT = r"""
import sys, time
import grpc, grpc.experimental
server, request = sys.argv[1], bytes.fromhex(sys.argv[2])
options = [("grpc.max_receive_message_length", 64 << 20)]
channel = grpc.insecure_channel(server, options=options)
grpc.channel_ready_future(channel).result(timeout=10)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
n = 0
for _ in grpc.experimental.unary_stream(request, server, "/observer.Observer/GetFlows",
        request_serializer=None, response_deserializer=None, options=options, insecure=True):
    n += 1
print(n, time.perf_counter() - t0, time.time(), "-", flush=True)
print("phases", flush=True)
"""


def read_once(go_client: str | None, server: str, request: str) -> tuple[float, int]:
    """(seconds from the call's start to its last response, responses) of one client read."""
    if go_client is not None:
        argv = [go_client, server, request, "nodigest"]
    else:
        argv = [sys.executable, "-c", GRPCIO_CLIENT, server, request]
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the client could not connect to {server}")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        count, seconds = proc.stdout.readline().split()[:2]
        proc.stdout.read()
    finally:
        proc.wait(60)
    return float(seconds), int(count)


def bench_relay_overhead(go_client: str | None, note: str = "", rounds: int = ROUNDS) -> list[float]:
    """Prints the table; returns the overhead per filter (share of the direct stream's flows/s)."""
    from bench_relay import process_cpu_s, start

    client = "grpc-go (upstream's CLI's gRPC stack)" if go_client is not None else f"grpcio ({note})"
    print(
        f"relay overhead: one client ({client}) reads a node's ring of {CAPACITY} raw datapath samples\n"
        "  (decoded when read) with the standard GetFlows stream, directly and through a relay with that one"
        " node,\n"
        f"  in turns, median of {rounds} reads each way; the relay's overhead is 1 - relayed / direct"
        f" (target <= {TARGET:.0%})"
    )
    node, node_address = start([sys.executable, str(Path(__file__).resolve()), "--serve"])
    procs = [node]
    overheads: list[float] = []
    try:
        relay, relay_address = start(
            [sys.executable, "-m", "relay", "--listen-address", "127.0.0.1:0", "--peers", node_address,
             "--health-listen-address", ""]
        )  # fmt: skip
        procs.append(relay)
        print(
            f"    {'filter':<18} {'flows':>7} {'direct/s':>10} {'relayed/s':>10} {'direct/relayed':>15} "
            f"{'overhead':>9} {'relay CPU ms/1k':>16} {'node CPU ms/1k':>15} {'(direct reads)':>15}"
        )
        for title, verdict in FILTERS:
            request = request_hex(verdict)
            for address in (node_address, relay_address):  # first reads: templates, cached bytes
                read_once(go_client, address, request)
            direct: list[float] = []
            relayed: list[float] = []
            relay_cpu = node_cpu = node_direct_cpu = 0.0
            flows = 0
            for _ in range(rounds):
                n0 = process_cpu_s(node)
                seconds, flows = read_once(go_client, node_address, request)
                node_direct_cpu += process_cpu_s(node) - n0
                direct.append(flows / seconds)
                r0, n0 = process_cpu_s(relay), process_cpu_s(node)
                seconds, got = read_once(go_client, relay_address, request)
                relay_cpu += process_cpu_s(relay) - r0
                node_cpu += process_cpu_s(node) - n0
                relayed.append(got / seconds)
            d, r = statistics.median(direct), statistics.median(relayed)
            overhead = 1 - r / d if d else 0.0
            overheads.append(overhead)
            per_k = 1000 * 1000 / (flows * rounds) if flows else 0.0  # ms per 1000 flows
            print(
                f"    {title:<18} {flows:>7,} {d:>10,.0f} {r:>10,.0f} {d / r if r else 0:>14.2f}x "
                f"{100 * overhead:>8.1f}% {relay_cpu * per_k:>16.2f} {node_cpu * per_k:>15.2f}"
                f" {node_direct_cpu * per_k:>15.2f}"
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    load = os.getloadavg()
    print(
        f"  machine load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs"
    )
    return overheads


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"reads each way per filter (default {ROUNDS})"
    )
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return
    from bench_relay import build_go_client

    with tempfile.TemporaryDirectory() as tmp:
        go_client, note = build_go_client(tmp)
        bench_relay_overhead(go_client, note, max(1, args.rounds))


if __name__ == "__main__":
    main()
