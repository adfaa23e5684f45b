"""End-to-end live throughput: replay nodes -> hubble-relay -> `hubble observe -o json > /dev/null`.

Each node is a `hubble agent` whose ring (65535) is filled once from a generated flows file
(``--replay-verbatim``), so the measurement is the backlog transfer, not the replay rate. Printed:
flows/s reading one node directly, through the relay with 1 node and with 3 nodes, and the relay's
cost as the ratio direct/relayed for one node. Our CLI talks the hubblepy.Batch/GetFlowsJSON
extension to our nodes and relay; the "upstream client path" lines measure the standard
observer.Observer/GetFlows stream (one GetFlowsResponse per gRPC message, what an upstream client
uses) with clients that do not decode: a grpc-go client (benchmarks/upstream_client, the gRPC
stack of upstream's CLI, built with Debian's golang-go and golang-google-grpc-dev; skipped with a
note when they are missing) and grpcio's single-threaded unary-stream reader.

Twenty such clients then ask ``--last 1000`` of 3 nodes via the relay at once, each in its own
process as 20 upstream CLIs would be, against one client alone (median of 5 rounds each, rounds
apart by more than the relay's join window). Printed: both walls and their ratio, each client's
phases (its call's first and last response; connecting happens before the clock), the CPU of the
relay, the nodes and the clients (their own count of the call's user+system CPU, and wait4's count
of the whole process), and the lower bound the clients' own CPU sets on the 20-client wall: their
summed CPU during the call divided by the machine's cores. Then the same with our CLI (whole
processes, Python start-up included). The "where the time goes" lines time each stage of that path in this process: the node's ring read of cached bytes,
building a response's protobuf bytes on first read, the relay's scan and sort buffer, and gRPC's own
per-message cost (a server streaming constant bytes). Last, unfiltered readers of a node whose ring
holds raw datapath samples (benchmarks/unfiltered_bench.py: shape templates against the ordinary
decode-and-encode path, flows/s and flows per node CPU-second), and the relay's overhead over a direct
stream of such a node for one client (benchmarks/relay_overhead.py). No assertions.

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
from dataclasses import dataclass, field
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
        return [go_client, server, request, "nodigest"]
    return [sys.executable, "-c", CLIENT_CODE, server, str(number)]


@dataclass
class ClientRun:
    """What one round of concurrent clients took: wall seconds from the start signal to the last
    response, responses, and per client the phases it reported (grpc-go only) and its CPU."""

    wall: float
    responses: int
    first_byte: list[float] = field(default_factory=list)  # s from the call's start, per client
    last_byte: list[float] = field(default_factory=list)
    connect: list[float] = field(default_factory=list)  # s to connect, before the clock starts
    stream_cpu: list[float] = field(default_factory=list)  # user+sys s during the call
    process_cpu: list[float] = field(default_factory=list)  # user+sys s of the whole process (wait4)
    run_wait: list[float] = field(default_factory=list)  # s runnable but waiting for a CPU, during the call
    watched_cpu: dict[str, float] = field(default_factory=dict)  # server processes, during the round
    watched_wait: dict[str, float] = field(default_factory=dict)  # their threads' run-queue waits


def run_clients(argvs: list[list[str]], watched: dict[str, subprocess.Popen] | None = None) -> ClientRun:
    """Start the clients, let them connect, then start them together: seconds until the last one
    has its last response (process start and exit are not counted), the responses they got, and the
    CPU the clients and the ``watched`` server processes used."""
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for argv in argvs
    ]
    for proc in procs:  # every client has started and connected before the clock starts
        assert proc.stdout.readline().strip() == "ready"
    watched = watched or {}
    cpu_before = {name: process_cpu_s(p) for name, p in watched.items()}
    wait_before = {name: process_run_wait_s(p) for name, p in watched.items()}
    t0 = time.time()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    run = ClientRun(0.0, 0)
    last_end = t0
    for proc in procs:
        count, _, end = proc.stdout.readline().split()[:3]
        run.responses += int(count)
        last_end = max(last_end, float(end))
        phases = proc.stdout.readline().split()
        if phases and phases[0] == "phases":
            connect, first, last, stream_cpu, _, run_wait = (float(x) for x in phases[1:7])
            run.connect.append(connect)
            run.first_byte.append(first)
            run.last_byte.append(last)
            run.stream_cpu.append(stream_cpu)
            run.run_wait.append(run_wait)
    run.watched_cpu = {name: process_cpu_s(p) - cpu_before[name] for name, p in watched.items()}
    run.watched_wait = {name: process_run_wait_s(p) - wait_before[name] for name, p in watched.items()}
    for proc in procs:
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        run.process_cpu.append(usage.ru_utime + usage.ru_stime)
    run.wall = last_end - t0
    return run


def concurrent_last(
    go_client: str | None,
    server: str,
    clients: int,
    number: int = 1000,
    watched: dict[str, subprocess.Popen] | None = None,
) -> ClientRun:
    """``clients`` upstream-style clients (one process each) asking ``--last number`` at once.

    Waits out the relay's join window first (relay.flights.JOIN_WINDOW_S, 0.25 s), so a round never
    reuses the answer of the one before it."""
    time.sleep(0.3)
    return run_clients([client_argv(go_client, server, number) for _ in range(clients)], watched)


def client_rate(go_client: str, server: str) -> tuple[float, int]:
    """Flows/s of one grpc-go client reading everything (``--all``) without decoding."""
    run = run_clients([client_argv(go_client, server, (1 << 64) - 1)])
    return run.responses / run.wall, run.responses


def process_cpu_s(proc: subprocess.Popen) -> float:
    """User + system CPU seconds a running child has used so far (Linux /proc)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_run_wait_s(proc: subprocess.Popen) -> float:
    """Seconds a running child's live threads have spent runnable but waiting for a CPU (Linux
    schedstat; threads that ended are not counted)."""
    total = 0
    for stat in Path(f"/proc/{proc.pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def median_run(runs: list[ClientRun]) -> ClientRun:
    """The round with the median wall time."""
    return sorted(runs, key=lambda run: run.wall)[len(runs) // 2]


def total_cpu(runs: list[ClientRun], name: str) -> float:
    """Mean CPU seconds per round of a watched process (its /proc counters tick every 10 ms)."""
    return sum(run.watched_cpu.get(name, 0.0) for run in runs) / len(runs)


CLIENTS = 20
LAST_ROUNDS = 5


def print_last(ones: list[ClientRun], manys: list[ClientRun]) -> None:
    """One client against ``CLIENTS``: wall, phases, the CPU of every party and the lower bound the
    clients' own CPU sets on this machine."""
    one, many = median_run(ones), median_run(manys)
    cores = os.cpu_count() or 1
    print(f"1 client        : {one.wall:7.3f} s ({one.responses} responses)")
    if one.first_byte:
        print(
            f"  phases        : connect {one.connect[0] * 1000:.1f} ms (before the clock),"
            f" first response {one.first_byte[0] * 1000:.1f} ms, last {one.last_byte[0] * 1000:.1f} ms"
        )
    print(f"{CLIENTS} clients      : {many.wall:7.3f} s ({many.responses} responses)")
    if many.first_byte:
        firsts = sorted(many.first_byte)
        print(
            f"  phases        : first response {firsts[0] * 1000:.0f}-{firsts[-1] * 1000:.0f} ms,"
            f" last {min(many.last_byte) * 1000:.0f}-{max(many.last_byte) * 1000:.0f} ms"
            " (each client from its own start)"
        )
    print(f"ratio           : {many.wall / one.wall:7.2f} x (target 2 x)")
    for runs, n in ((ones, 1), (manys, CLIENTS)):
        relay = total_cpu(runs, "relay")
        nodes = sum(total_cpu(runs, f"node{i}") for i in range(3))
        process = sum(sum(r.process_cpu) for r in runs) / len(runs)
        line = f"CPU, {n:2d} client{'s' if n > 1 else ' '}: relay {relay * 1000:5.0f} ms, nodes {nodes * 1000:4.0f} ms,"
        if runs[0].stream_cpu:
            stream = sum(sum(r.stream_cpu) for r in runs) / len(runs)
            line += f" clients {stream * 1000:5.0f} ms during the call ({stream * 1000 / n:.1f} ms each),"
        print(line + f" {process * 1000:5.0f} ms whole processes (wait4)")
    for runs, n in ((ones, 1), (manys, CLIENTS)):
        if runs[0].run_wait:
            waits = sum(sum(r.run_wait) for r in runs) / len(runs)
            servers = sum(sum(r.watched_wait.values()) for r in runs) / len(runs)
            print(
                f"CPU wait, {n:2d}   : clients {waits * 1000:5.0f} ms, relay and nodes {servers * 1000:4.0f} ms"
                " runnable but not running (Linux schedstat: each other and the machine's other work)"
            )
    if many.stream_cpu:
        stream = sum(sum(r.stream_cpu) for r in manys) / len(manys)
        everything = stream + total_cpu(manys, "relay") + sum(total_cpu(manys, f"node{i}") for i in range(3))
        print(
            f"lower bound     : {stream / cores:7.3f} s = the {CLIENTS} clients' own CPU / {cores} cores"
            f" ({stream / cores / one.wall:.1f} x one client's wall);"
            f" {everything / cores:.3f} s with the relay's and nodes' CPU"
            f" ({everything / cores / one.wall:.1f} x)"
        )


def cli_last(server: str, clients: int) -> tuple[float, float]:
    """Wall seconds for ``clients`` of our CLI started together (``--last 1000``, output discarded),
    whole processes, and their summed CPU seconds."""
    cmd = os.environ.get("HUBBLEPY_HUBBLE_CMD", "").split() or [sys.executable, "-m", "hubblepy.cli"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*cmd, "observe", "--server", server, "--last", "1000"], cwd=REPO, stdout=subprocess.DEVNULL
        )
        for _ in range(clients)
    ]
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    return time.perf_counter() - t0, cpu


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
            watched = {"relay": relay3, **{f"node{i}": p for i, p in enumerate(procs[:3])}}
            last_runs = {
                n: [concurrent_last(go_client, r3, n, watched=watched) for _ in range(LAST_ROUNDS)]
                for n in (1, CLIENTS)
            }
            cli_runs = {n: cli_last(r3, n) for n in (1, CLIENTS)}
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
        print(f"{client_kind} clients asking --last 1000 of 3 nodes via the relay at once, one process each")
        print(f"(median of {LAST_ROUNDS} rounds; the clock starts when every client has connected):")
        print_last(last_runs[1], last_runs[CLIENTS])
        print(
            "our CLI, `hubble observe --last 1000 > /dev/null` via the relay, whole processes (start-up included):"
        )
        (one_wall, one_cpu), (many_wall, many_cpu) = cli_runs[1], cli_runs[CLIENTS]
        cores = os.cpu_count() or 1
        print(f"1 client    : {one_wall:7.2f} s wall, {one_cpu * 1000:6.0f} ms CPU")
        print(
            f"{CLIENTS} clients  : {many_wall:7.2f} s wall, {many_cpu * 1000:6.0f} ms CPU"
            f" ({many_cpu * 1000 / CLIENTS:.0f} ms each); ratio {many_wall / one_wall:.2f} x;"
            f" their CPU / {cores} cores: {many_cpu / cores:.2f} s"
        )
        print("where the time goes, per response (us):")
        for label, micros in stages:
            print(f"  {label:<44}: {micros:8.2f}")
        load = os.getloadavg()
        print(f"machine load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        from unfiltered_bench import main as unfiltered  # nodes whose rings hold raw datapath samples

        unfiltered([])
        from relay_overhead import main as relay_overhead  # one client: through the relay vs direct

        relay_overhead([])
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    main()
