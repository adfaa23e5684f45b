"""Unfiltered readers of a node whose ring holds raw datapath samples (the ``unfiltered`` rows of bench_relay).

A node process fills its ring (65535) with synthetic Cilium-layout samples (benchmarks/node_traffic:
trace, drop and policy-verdict events of TCP connections between pods, in the ring as the monitor
reader leaves them, decoded when read) and serves it on our h2 transport. Three traffic profiles:
long-lived connections (about 200 request/response exchanges each), short ones (about 4: every few
dozen events a new source port) and one request per connection (1-2 exchanges). For each profile
and for the node with and without shape templates (hubblepy/observer/wiretemplates.py: ports are
holes of the templates, so short connections share them), a grpc-go client (upstream's CLI's gRPC
stack, benchmarks/upstream_client) reads everything twice: the first read decodes (or templates)
every sample, the second finds the bytes cached in the ring (ordinary path) or templates ready.
With templates the node is started ``--repeat`` times (default 3): the median and the range of the
runs are printed. Our CLI (``hubble observe --all -o json``, the GetFlowsJSON extension) reads once.
Printed: flows/s, flows per CPU-second of the node process during each read, and the machine's
load average when the row was measured. No assertions.

``python benchmarks/unfiltered_bench.py [--repeat N]`` runs it alone (bench_relay runs it at its
end); ``--serve`` is the node process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

CAPACITY = 65535
PROFILES = (("long-lived connections", 200), ("short connections", 4), ("one request per connection", 1))


def serve(rounds: int, templates: bool) -> None:
    """The node: a ring of raw samples served on 127.0.0.1 until SIGTERM."""
    import node_traffic

    from hubblepy.observer.records import RecordDecoder

    if not templates:
        RecordDecoder.wire_templates = lambda self: None  # type: ignore[method-assign]
    serve_samples(node_traffic.traffic(CAPACITY, rounds=rounds))


def serve_samples(samples: list[bytes]) -> None:
    """A node whose ring holds ``samples`` (raw datapath samples, in the monitor reader's batches of
    256) served on 127.0.0.1 until SIGTERM; prints ``listening on ADDRESS`` on stderr."""
    import node_traffic

    from hubblepy.observer.core import Observer
    from hubblepy.observer.server import ObserverServer, ServerConfig
    from hubblepy.parser import Parser

    observer = Observer("bench-node", CAPACITY)
    observer.use_parser(Parser(node_traffic.resolver(), "bench-node"))
    now = time.time_ns() - 10**9
    for i in range(0, len(samples), 256):  # the reader's batches: one receive time each
        observer.publish_records(node_traffic.record_batch(samples[i : i + 256]), now + i * 4000)
    server = ObserverServer(observer, ServerConfig(listen_address="127.0.0.1:0"))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"listening on 127.0.0.1:{server.tcp_port}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop_event.set()
    assert server.server is not None
    server.server.stop(0).wait(5)


def _cli_rate(server: str) -> tuple[float, int]:
    from bench_relay import observe_rate

    return observe_rate(server, CAPACITY)


def _reads(go_client: str | None, argv: list[str], cli: list[str] | None = None) -> list[tuple[float, float]]:
    """``(flows/s, flows per node CPU-second)`` of a first and a second read of a new node by the
    grpc-go client; then, with ``cli`` (``[title]``), our CLI reads too and its row replaces the title."""
    from bench_relay import client_rate, process_cpu_s, start

    proc, address = start(argv)
    try:
        out = []
        for _ in range(2 if go_client is not None else 0):
            cpu0 = process_cpu_s(proc)
            rate, got = client_rate(go_client, address)  # type: ignore[arg-type]
            cpu = process_cpu_s(proc) - cpu0
            out.append((rate, got / cpu if cpu else 0.0))
        if cli:
            cpu0 = process_cpu_s(proc)
            rate, got = _cli_rate(address)
            cpu = process_cpu_s(proc) - cpu0
            cli[0] = (
                f"  our CLI -o json, {cli[0]:<37}: {rate:>9,.0f}/s "
                f"{got / cpu if cpu else 0:>9,.0f}/CPU-s (node CPU; {got} flows); {_load()}"
            )
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def _summary(values: list[float]) -> str:
    """Median (and range over more than one run) of ``values``."""
    text = f"{statistics.median(values):>9,.0f}"
    if len(values) > 1:
        text += f" ({min(values):,.0f}-{max(values):,.0f})"
    return text


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def bench_unfiltered(go_client: str | None, note: str = "", repeat: int = 3) -> None:
    print(
        f"unfiltered readers of one node whose ring holds {CAPACITY} raw datapath samples (decoded when read):\n"
        "flows/s and flows per node CPU-second during the read (first read: decode or template each sample;\n"
        "second: cached bytes or ready templates); with templates the median (and range) of "
        f"{repeat} node{'s' if repeat > 1 else ''}, {os.cpu_count()} CPUs"
    )
    if go_client is None:
        print(f"  grpc-go client: not run ({note})")
    for title, rounds in PROFILES:
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve", "--rounds", str(rounds)]
        for templates in (True, False):
            label = f"{title}, {'templates' if templates else 'ordinary path'}"
            cli = [title] if templates else None
            runs = [_reads(go_client, argv if templates else [*argv, "--no-templates"], cli)]
            if go_client is not None:
                runs += [_reads(go_client, argv) for _ in range(repeat - 1 if templates else 0)]
                first, second = [[run[i] for run in runs] for i in (0, 1)]
                print(
                    f"  grpc-go, {label:<45}: first {_summary([r for r, _ in first])}/s "
                    f"{_summary([c for _, c in first])}/CPU-s; second {_summary([r for r, _ in second])}/s "
                    f"{_summary([c for _, c in second])}/CPU-s; {_load()}"
                )
            if cli is not None:
                print(cli[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=200, help=argparse.SUPPRESS)
    ap.add_argument("--no-templates", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help="nodes started per templates row (median printed)")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.rounds, not args.no_templates)
        return
    from bench_relay import build_go_client

    with tempfile.TemporaryDirectory() as tmp:
        go_client, note = build_go_client(tmp)
        bench_unfiltered(go_client, note, max(1, args.repeat))


if __name__ == "__main__":
    main()
