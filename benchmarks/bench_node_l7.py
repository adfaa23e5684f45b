"""The node's cost per L7 record, in one process, without the network: access log -> ring -> metrics.

``nox -s bench -- l7`` measures the node's CPU per 1000 proxied requests on real traffic, where
the figure moves with whatever else the machine runs. This benchmark isolates the node's intake:
the real HTTP proxy objects (as in bench_proxy_cost: the seed rule, 32 keep-alive connections)
write their real access-log stream (template definitions and row batches) into memory once; then
the node's real pieces take it in the way ``hubble lab`` wires them: ``AccessLogSource``'s
batching of lines, ``RecordAssembler``, ``Observer.publish_l7`` into the ring (correlated, decoded
when read), and the lab's default Prometheus families counting every record (``FlowMetrics``).

Prints CPU microseconds per record (process time, best of ``--repeat``) with the metrics off and
on, then reads every flow back once (the decode a client's first read pays, per record) to check
that the records name both pods. With ``--instructions`` it also prints instructions per record
under valgrind's callgrind (the difference of two run lengths: start-up cancels out; within about
2% from run to run), a figure that does not move with the machine's load.

The first read's figure includes the cyclic garbage collector's passes over the flows it keeps
(with Python's default thresholds most of it: the ring holds tens of thousands of new dicts);
``--node-gc`` collects as the lab node does (``tune_gc_for_flows``).

Usage: .venv/bin/python benchmarks/bench_node_l7.py [--requests 100000] [--repeat 5] [--instructions] [--node-gc]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "proxy"))

import callgrind  # noqa: E402
from bench_proxy_cost import CONNECTIONS, REQUEST, RESPONSE, SERVER, CountingTransport, seed_state  # noqa: E402
from proxytools import FRONTEND_IP, SERVER_IP  # noqa: E402

from hubblepy.lab.source import AccessLogSource  # noqa: E402
from hubblepy.metrics.lab import DEFAULT_LAB_METRICS  # noqa: E402
from hubblepy.metrics.server import build_node_metrics  # noqa: E402
from hubblepy.observer.core import Observer  # noqa: E402
from hubblepy.parser import Parser  # noqa: E402
from hubblepy.parser.resolver import EndpointInfo, StaticResolver  # noqa: E402
from hubblepy.parser.seven import SevenParser  # noqa: E402
from hubblepy.proxy import accesslog, http  # noqa: E402
from hubblepy.proxy.accesslog import RecordAssembler  # noqa: E402

BATCH_REQUESTS = 128  # requests per access-log write (a busy proxy's batch: a few ms of traffic)
INSTRUCTION_WRITES = 40  # access-log writes taken in under callgrind (--instructions)


class Capture(CountingTransport):
    """The access log's socket: keeps what the writer sends."""

    def __init__(self) -> None:
        super().__init__(("", 0), ("", 0))
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


async def access_log(requests: int) -> list[bytes]:
    """The access-log bytes the proxy writes for ``requests`` allowed GETs, one chunk per write."""
    log = accesslog.AccessLogWriter("/nonexistent", batch=1 << 30)
    log._scheduled = True  # no timer: the batches are flushed here
    sink = Capture()
    log._transport = sink  # type: ignore[assignment]
    server = http.ProxyServer(http.Options(upstream=SERVER), seed_state(), log)
    pairs = []
    for i in range(CONNECTIONS):
        client = http.ClientConnection(server)
        client.connection_made(CountingTransport((FRONTEND_IP, 40000 + i), SERVER))  # type: ignore[arg-type]
        upstream = http.UpstreamConnection(client)
        upstream.connection_made(CountingTransport(SERVER, (FRONTEND_IP, 40000 + i)))  # type: ignore[arg-type]
        client.upstream = upstream
        pairs.append((client, upstream))
    for turn in range(max(1, requests // CONNECTIONS)):
        for client, _ in pairs:
            client.data_received(REQUEST)
        server.flush()
        for _, upstream in pairs:
            upstream.data_received(RESPONSE)
        server.flush()
        if (turn + 1) * CONNECTIONS % BATCH_REQUESTS == 0:
            log._flush()
            log._scheduled = True
    log._flush()
    return sink.chunks


def resolver() -> StaticResolver:
    """The node's view of the pods of bench_proxy_cost's state (their identities and labels)."""
    state = seed_state()
    r = StaticResolver()
    for ip, name in ((FRONTEND_IP, "frontend"), (SERVER_IP, "api")):
        ep = state.endpoint(ip)
        r.add_endpoint(
            EndpointInfo(
                id=ep.id or 1000 + ep.identity,
                identity=ep.identity,
                namespace="payments",
                pod_name=name,
                labels=tuple(ep.labels),
                ips=(ip,),
            )
        )
        r.set_identity(ep.identity, ep.labels)
    return r


def node(metrics: bool) -> tuple[AccessLogSource, Observer, RecordAssembler]:
    """The lab node's L7 intake: its access-log source, observer (and metrics) and one assembler."""
    seven = SevenParser(Parser(resolver(), "bench-node"))
    observer = Observer("bench-node", capacity=65535)
    observer.use_parser(seven._parser)
    if metrics:
        build_node_metrics(observer, DEFAULT_LAB_METRICS, parser=seven._parser)
    source = AccessLogSource(Path("/nonexistent"), seven.decode, decode_batch=seven.decode_batch, seven=seven)
    return source, observer, RecordAssembler()


def intake(
    chunks: list[bytes], made: tuple[AccessLogSource, Observer, RecordAssembler], collect: bool = True
) -> tuple[float, int]:
    """CPU seconds to take ``chunks`` in as the lab node does, and the records published."""
    source, observer, assembler = made
    if collect:
        gc.collect()
    start = time.process_time()
    for chunk in chunks:
        source._publish(observer, [(assembler, chunk.split(b"\n")[:-1])])
    seconds = time.process_time() - start
    if source.malformed:
        raise SystemExit(f"the node found {source.malformed} malformed lines in the proxy's access log")
    return seconds, source.published


def read_back(observer: Observer) -> tuple[float, list[dict[str, Any]]]:
    ring = observer.flows
    start = time.process_time()
    got = []
    for seq in range(ring.oldest_seq, ring.next_seq, 4096):
        got += [e.flow for _, e in ring.read_many(range(seq, min(seq + 4096, ring.next_seq)))[0]]
    return time.process_time() - start, got


def get_flows(observer: Observer) -> tuple[float, int, int]:
    """CPU seconds of a full unfiltered GetFlows read of the ring (``first``, protobuf, no field
    mask) as the node's service serves it on its own h2 transport (stream_ring with the ring's wire
    templates, flows_on_wire), the responses and the bytes."""
    from hubblepy.api.observer import observer_pb2
    from hubblepy.observer import service

    ring = observer.flows
    request = observer_pb2.GetFlowsRequest(first=True)
    encoder = service.ResponseEncoder(observer_pb2.GetFlowsResponse)
    start = time.process_time()
    frames = service.flow_templates(observer, None, None, None)
    responses = service.stream_ring(
        ring, request, lambda: True, encoder.encode, observer.node_name, idle_marker=True, frames=frames
    )
    size = sum(len(chunk) for chunk in service.flows_on_wire(responses, True))
    seconds = time.process_time() - start
    return seconds, len(ring), size


def instructions(chunks: list[bytes], records: int, metrics: bool) -> int | None:
    """Instructions per record under callgrind: the difference of two run lengths (the intake of
    ``chunks`` once and three times; start-up and reading the file cancel out)."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "access-log"
        data.write_bytes(orjson.dumps([c.decode() for c in chunks]))

        def cmd(times: int) -> list[str]:
            return [sys.executable, __file__, "--input", str(data), "--times", str(times)] + (
                ["--metrics"] if metrics else []
            )

        return callgrind.marginal(cmd, 1, 3, records)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    parser.add_argument(
        "--node-gc",
        action="store_true",
        help="collect garbage as the lab node does (hubblepy.lab.node.tune_gc_for_flows), not with "
        "Python's default thresholds",
    )
    parser.add_argument("--metrics", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)  # --instructions' runs: the chunks, as JSON
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.input:
        chunks = [c.encode() for c in orjson.loads(Path(args.input).read_bytes())]
        nodes = [node(args.metrics) for _ in range(3)]  # the same set-up whatever the count
        gc.disable()  # a collection's cost grows with what earlier runs left: not the same per run
        for made in nodes[: args.times]:
            intake(chunks, made, collect=False)
        return
    import uvloop

    chunks = uvloop.run(access_log(args.requests))
    if args.node_gc:
        from hubblepy.lab.node import tune_gc_for_flows

        gc.collect()
        tune_gc_for_flows()
    print(
        f"Node L7 intake, in-process: {args.requests:,} proxied GETs (2 records each) in access-log "
        f"writes of {BATCH_REQUESTS} requests, best of {args.repeat}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    observer = None
    for metrics in (False, True):
        best, records = float("inf"), 0
        for _ in range(args.repeat):
            made = node(metrics)
            seconds, records = intake(chunks, made)
            observer = made[1]
            best = min(best, seconds)
        name = "metrics on (lab default)" if metrics else "metrics off"
        line = f"{name:25} {best / records * 1e6:6.2f} µs CPU/record  {records / best:11,.0f} records per CPU-second"
        if args.instructions:
            few = chunks[:INSTRUCTION_WRITES]
            count = instructions(few, INSTRUCTION_WRITES * BATCH_REQUESTS * 2, metrics)
            line += f"  {count:,} instructions/record" if count else "  (no valgrind)"
        print(line)
    assert observer is not None
    seconds, flows = read_back(observer)
    pods = {(f.get("source", {}).get("pod_name"), f.get("destination", {}).get("pod_name")) for f in flows}
    if len(flows) != min(records, observer.flows.capacity) or pods != {
        ("frontend", "api"),
        ("api", "frontend"),
    }:
        raise SystemExit(f"the ring read back {len(flows):,} flows of {records:,} records between {pods}")
    print(
        f"{'first read (decode)':25} {seconds / len(flows) * 1e6:6.2f} µs CPU/flow  ({len(flows):,} flows in the ring"
        f"{', the lab node GC' if args.node_gc else ''})"
    )
    best, size = float("inf"), 0
    for _ in range(args.repeat):  # a fresh ring each time: the first GetFlows read decodes and encodes
        made = node(False)
        intake(chunks, made)
        gc.collect()
        seconds, count, size = get_flows(made[1])
        best = min(best, seconds)
    print(
        f"{'first GetFlows read':25} {best / count * 1e6:6.2f} µs CPU/flow  (unfiltered, first=true, "
        f"protobuf on the h2 transport: {size / count:.0f} bytes/flow)"
    )


if __name__ == "__main__":
    main()
