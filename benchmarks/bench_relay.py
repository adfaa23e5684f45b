"""End-to-end live throughput: replay nodes -> hubble-relay -> `hubble observe -o json > /dev/null`.

Each node is a `hubble agent` whose ring (65535) is filled once from a generated flows file
(``--replay-verbatim``), so the measurement is the backlog transfer, not the replay rate. Printed:
flows/s reading one node directly, through the relay with 1 node and with 3 nodes, and the relay's
cost as the ratio direct/relayed for one node. Our CLI talks the hubblepy.Batch/GetFlowsJSON
extension to our nodes and relay; the "upstream client path" lines measure the standard
observer.Observer/GetFlows stream (one GetFlowsResponse per gRPC message, what an upstream client
uses) with clients that do not decode: a grpc-go client (benchmarks/upstream_client, the gRPC
stack of upstream's CLI, built with Debian's golang-go and golang-google-grpc-dev; skipped with a
note when they are missing) and grpcio's single-threaded unary-stream reader, and 20 such clients asking ``--last 1000`` at once
(each in its own process, as 20 upstream CLIs would be) against one of them. The "where the time
goes" lines time each stage of that path in this process: the node's ring read of cached bytes,
building a response's protobuf bytes on first read, the relay's scan and sort buffer, and gRPC's own
per-message cost (a server streaming constant bytes). Last, unfiltered readers of a node whose ring
holds raw datapath samples (benchmarks/unfiltered_bench.py: shape templates against the ordinary
decode-and-encode path, flows/s and flows per node CPU-second). No assertions.

Run: ``python benchmarks/bench_relay.py`` (``HUBBLEPY_HUBBLE_CMD`` overrides the CLI command).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    seen = []
    for raw in proc.stderr:  # the relay may log its nodes' condition before it says where it listens
        line = raw.decode()
        seen.append(line)
        m = re.search(r"listening on (\S+)", line)
        if m:
            threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()  # keep the pipe drained
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"cannot start {argv}: {''.join(seen)}")


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


def raw_rate(server: str, fast_reader: bool = True) -> tuple[float, int]:
    """Flows/s of a bare gRPC reader that does not decode (isolates server and relay cost).

    ``fast_reader`` uses grpcio's single-threaded unary-stream path: its default iterator hands each
    message between two threads and tops out near 21k messages/s on its own here (against a server
    that only repeats one frame), far below what upstream's Go client reads.
    """
    import grpc
    import grpc.experimental

    from hubblepy.api.observer import observer_pb2

    options = [("grpc.max_receive_message_length", 64 << 20)]
    if fast_reader:
        options.append((grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1))
    channel = grpc.insecure_channel(server, options=options)
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


CLIENT_CODE = """
import sys, time, grpc, grpc.experimental
from hubblepy.api.observer import observer_pb2
channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_receive_message_length", 64 << 20),
    (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)])
call = channel.unary_stream("/observer.Observer/GetFlows",
    request_serializer=observer_pb2.GetFlowsRequest.SerializeToString, response_deserializer=None)
grpc.channel_ready_future(channel).result(timeout=30)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
n = sum(1 for _ in call(observer_pb2.GetFlowsRequest(number=int(sys.argv[2]))))
print(n, time.perf_counter() - t0, time.time(), flush=True)
"""


def build_go_client(tmp: str) -> tuple[str | None, str]:
    """Build benchmarks/upstream_client (grpc-go, as upstream's CLI) with Debian's Go packages.

    Returns ``(binary, "")``, or ``(None, reason)`` when Go or grpc-go's sources are missing.
    """
    go = shutil.which("go")
    if go is None:
        return None, "no go toolchain (Debian: golang-go, golang-google-grpc-dev)"
    binary = os.path.join(tmp, "upstream_client")
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="")
    if not (env.get("HOME") or env.get("XDG_CACHE_HOME")):  # else Go's own cache makes rebuilds quick
        env.setdefault("GOCACHE", os.path.join(tmp, "gocache"))
    built = subprocess.run(
        [go, "build", "-o", binary, str(REPO / "benchmarks" / "upstream_client" / "main.go")],
        env=env,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        return None, "cannot build the grpc-go client: " + (built.stderr.strip().splitlines() or ["?"])[-1]
    return binary, ""


def client_argv(go_client: str | None, server: str, number: int) -> list[str]:
    """One upstream-style client reading GetFlows with ``number``: grpc-go when built, else grpcio."""
    if go_client is not None:
        from hubblepy.api.observer import observer_pb2

        request = observer_pb2.GetFlowsRequest(number=number).SerializeToString().hex()
        return [go_client, server, request]
    return [sys.executable, "-c", CLIENT_CODE, server, str(number)]


def run_clients(argvs: list[list[str]]) -> tuple[float, int]:
    """Start the clients, let them connect, then start them together: seconds until the last one
    has its last response (process start and exit are not counted) and the responses they got."""
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for argv in argvs
    ]
    for proc in procs:  # every client has started and connected before the clock starts
        assert proc.stdout.readline().strip() == "ready"
    t0 = time.time()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    got = 0
    last_end = t0
    for proc in procs:
        count, _, end = proc.stdout.readline().split()[:3]
        got += int(count)
        last_end = max(last_end, float(end))
        proc.wait(60)
    return last_end - t0, got


def concurrent_last(
    go_client: str | None, server: str, clients: int, number: int = 1000
) -> tuple[float, int]:
    """Seconds for ``clients`` upstream-style clients (one process each) asking ``--last number`` at once."""
    return run_clients([client_argv(go_client, server, number) for _ in range(clients)])


def client_rate(go_client: str, server: str) -> tuple[float, int]:
    """Flows/s of one grpc-go client reading everything (``--all``) without decoding."""
    elapsed, got = run_clients([client_argv(go_client, server, (1 << 64) - 1)])
    return got / elapsed, got


def process_cpu_s(proc: subprocess.Popen) -> float:
    """User + system CPU seconds a running child has used so far (Linux /proc)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_with_cpu(go_client: str | None, server: str, server_proc: subprocess.Popen, clients: int) -> tuple:
    """``concurrent_last`` plus the CPU seconds the server process and the clients (whole client
    processes, start-up included) used meanwhile."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # counts the clients once they are reaped
    server_before = process_cpu_s(server_proc)
    elapsed, got = concurrent_last(go_client, server, clients)
    server_cpu = process_cpu_s(server_proc) - server_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return elapsed, got, server_cpu, client_cpu


def _per_item_us(func, items: list) -> float:
    t0 = time.perf_counter()
    for item in items:
        func(item)
    return (time.perf_counter() - t0) / len(items) * 1e6


def breakdown(flows_file: Path) -> list[tuple[str, float]]:
    """Microseconds per response for each stage of the upstream GetFlows path (this process only)."""
    import grpc

    from hubblepy.api.observer import observer_pb2
    from hubblepy.observer.ring import Ring, RingEntry
    from hubblepy.observer.service import ResponseEncoder, stream_ring
    from relay.merge import SortBuffer
    from relay.wire import scan_response

    lines = flows_file.read_bytes().splitlines()[:20000]
    entries = []
    for i, line in enumerate(lines):
        resp = orjson.loads(line)
        entries.append(RingEntry(i, resp))
    ring = Ring(32767)
    ring.write_many(entries)
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    t0 = time.perf_counter()
    wires = [encoder.encode(e) for e in entries]  # first read: dict -> protobuf bytes, cached
    build_us = (time.perf_counter() - t0) / len(entries) * 1e6
    request = observer_pb2.GetFlowsRequest(number=len(entries))
    t0 = time.perf_counter()
    sent = sum(1 for _ in stream_ring(ring, request, lambda: True, encoder.encode, "n"))
    ring_us = (time.perf_counter() - t0) / sent * 1e6
    scan_us = _per_item_us(scan_response, wires)
    buffer = SortBuffer(100)
    sort_us = _per_item_us(lambda w: buffer.push(len(w), w), wires)

    from concurrent import futures

    payload = wires[0]
    count = 20000

    def constant(request, context):
        for _ in range(count):
            yield payload

    from hubblepy.observer.transport import GrpcServer

    def per_message_us(server) -> float:
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "b.B", {"S": grpc.unary_stream_rpc_method_handler(constant)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        client = subprocess.run(
            [sys.executable, "-c", GRPC_CEILING_CODE, f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            check=True,
        )
        server.stop(0)
        return 1e6 / float(client.stdout.split()[0])

    grpcio_us = per_message_us(grpc.server(futures.ThreadPoolExecutor(4)))
    transport_us = per_message_us(GrpcServer(4))
    return [
        ("node: ring read of cached bytes", ring_us),
        ("node: build protobuf bytes (first read)", build_us),
        ("relay: scan time + kind", scan_us),
        ("relay: sort buffer push", sort_us),
        ("grpcio server: one streamed message, both ends", grpcio_us),
        ("h2 transport: one streamed message, both ends", transport_us),
    ]


GRPC_CEILING_CODE = """
import sys, time, grpc, grpc.experimental
channel = grpc.insecure_channel(sys.argv[1], options=[(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)])
call = channel.unary_stream("/b.B/S")
t0 = time.perf_counter()
n = sum(1 for _ in call(b""))
print(n / (time.perf_counter() - t0))
"""


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
            go_client, no_go = build_go_client(tmp)
            go_rates = []
            if go_client is not None:
                go_rates = [client_rate(go_client, server) for server in (nodes[0], r1, r3)]
            raw_direct, _ = raw_rate(nodes[0])
            raw_direct_mt, _ = raw_rate(nodes[0], fast_reader=False)
            raw_via1, _ = raw_rate(r1)
            raw_via3, n_raw3 = raw_rate(r3)
            concurrent_last(go_client, r3, 1)  # warm-up: the relay's channels and threads
            last_one, _, relay_one, client_one = last_with_cpu(go_client, r3, relay3, 1)
            last_twenty, n_twenty, relay_twenty, client_twenty = last_with_cpu(go_client, r3, relay3, 20)
            stages = breakdown(Path(tmp) / "node0.jsonl")
        print("hubble observe --all -o json > /dev/null:")
        print(f"direct node      : {direct:10.0f} flows/s ({n_direct} flows, -o json > /dev/null)")
        print(f"relay, 1 node    : {via1:10.0f} flows/s ({n_via1} flows)")
        print(f"relay, 3 nodes   : {via3:10.0f} flows/s ({n_via3} flows)")
        print(f"relay cost ratio : {direct / via1:10.2f} x (direct / via relay, 1 node)")
        print("upstream client path (standard GetFlows, one response per message, no decoding):")
        if go_rates:
            (g_direct, _), (g_via1, _), (g_via3, n_g3) = go_rates
            print("grpc-go client (upstream's hubble CLI's gRPC stack), one process:")
            print(f"direct node      : {g_direct:10.0f} flows/s")
            print(f"relay, 1 node    : {g_via1:10.0f} flows/s")
            print(f"relay, 3 nodes   : {g_via3:10.0f} flows/s ({n_g3} responses incl. node status)")
        else:
            print(f"grpc-go client   : not run ({no_go})")
        print("grpcio single-threaded stream reader, in this process:")
        print(f"direct node      : {raw_direct:10.0f} flows/s")
        print(f"direct node      : {raw_direct_mt:10.0f} flows/s (grpcio's default multi-threaded reader)")
        print(f"relay, 1 node    : {raw_via1:10.0f} flows/s")
        print(f"relay, 3 nodes   : {raw_via3:10.0f} flows/s ({n_raw3} responses incl. node status)")
        print(f"relay cost ratio : {raw_direct / raw_via1:10.2f} x")
        client_kind = "grpc-go" if go_client is not None else "grpcio"
        print(f"{client_kind} clients, one process each, asking at once:")
        print(f"--last 1000 of 3 nodes via relay, 1 client   : {last_one:7.2f} s")
        print(f"--last 1000 of 3 nodes via relay, 20 clients : {last_twenty:7.2f} s ({n_twenty} responses)")
        print(f"20 clients / 1 client                        : {last_twenty / last_one:7.2f} x")
        print(
            f"CPU, 1 client  : relay {relay_one * 1000:6.0f} ms, client {client_one * 1000:6.0f} ms"
            " (client: whole process, start-up included)"
        )
        print(
            f"CPU, 20 clients: relay {relay_twenty * 1000:6.0f} ms, clients {client_twenty * 1000:6.0f} ms"
            f" ({client_twenty * 1000 / 20:.0f} ms each); relay per extra reader"
            f" {(relay_twenty - relay_one) * 1000 / 19:.1f} ms; {os.cpu_count()} CPUs"
        )
        print("where the time goes, per response (us):")
        for label, micros in stages:
            print(f"  {label:<44}: {micros:8.2f}")
        load = os.getloadavg()
        print(f"machine load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        from unfiltered_bench import main as unfiltered  # nodes whose rings hold raw datapath samples

        unfiltered([])
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    main()
