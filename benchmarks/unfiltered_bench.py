"""Unfiltered readers of a node whose ring holds raw datapath samples (the ``unfiltered`` rows of bench_relay).

A node process fills its ring (65535) with synthetic Cilium-layout samples (benchmarks/node_traffic:
trace, drop and policy-verdict events of TCP connections between pods, in the ring as the monitor
reader leaves them, decoded when read) and serves it on our h2 transport. Two traffic profiles:
long-lived connections (about 200 request/response exchanges each) and short ones (about 4: every
few dozen events a new source port, so many shapes are new). For each profile and for the node with
and without shape templates (hubblepy/observer/wiretemplates.py), a grpc-go client (upstream's CLI's
gRPC stack, benchmarks/upstream_client) reads everything twice: the first read decodes (or templates)
every sample, the second finds the bytes cached in the ring (ordinary path) or templates ready. Our
CLI (``hubble observe --all -o json``, the GetFlowsJSON extension) reads once. Printed: flows/s, and
flows per CPU-second of the node process during each read. No assertions.

``python benchmarks/unfiltered_bench.py`` runs it alone (bench_relay runs it at its end);
``--serve`` is the node process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

CAPACITY = 65535
PROFILES = (("long-lived connections", 200), ("short connections", 4))


def serve(rounds: int, templates: bool) -> None:
    """The node: a ring of raw samples served on 127.0.0.1 until SIGTERM."""
    import node_traffic

    from hubblepy.observer.core import Observer
    from hubblepy.observer.records import RecordDecoder
    from hubblepy.observer.server import ObserverServer, ServerConfig
    from hubblepy.parser import Parser

    if not templates:
        RecordDecoder.wire_templates = lambda self: None  # type: ignore[method-assign]
    observer = Observer("bench-node", CAPACITY)
    observer.use_parser(Parser(node_traffic.resolver(), "bench-node"))
    samples = node_traffic.traffic(CAPACITY, rounds=rounds)
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


def bench_unfiltered(go_client: str | None, note: str = "") -> None:
    from bench_relay import client_rate, process_cpu_s, start

    print(
        "unfiltered readers of one node whose ring holds 65535 raw datapath samples (decoded when read),\n"
        "flows/s and flows per node CPU-second during the read (first read: decode or template each sample;\n"
        "second: cached bytes or ready templates):"
    )
    if go_client is None:
        print(f"  grpc-go client: not run ({note})")
    for title, rounds in PROFILES:
        for templates in (True, False):
            argv = [sys.executable, str(Path(__file__).resolve()), "--serve", "--rounds", str(rounds)]
            proc, address = start([*argv, *([] if templates else ["--no-templates"])])
            try:
                label = f"{title}, {'templates' if templates else 'ordinary path'}"
                reads = []
                for _ in range(2 if go_client is not None else 0):
                    cpu0 = process_cpu_s(proc)
                    rate, got = client_rate(go_client, address)  # type: ignore[arg-type]
                    cpu = process_cpu_s(proc) - cpu0
                    reads.append(f"{rate:>9,.0f}/s {got / cpu if cpu else 0:>9,.0f}/CPU-s")
                if reads:
                    print(f"  grpc-go, {label:<44}: first {reads[0]}   second {reads[1]}")
                if templates:
                    cpu0 = process_cpu_s(proc)
                    rate, got = _cli_rate(address)
                    cpu = process_cpu_s(proc) - cpu0
                    print(
                        f"  our CLI -o json, {title:<36}: {rate:>9,.0f}/s "
                        f"{got / cpu if cpu else 0:>9,.0f}/CPU-s (node CPU; {got} flows)"
                    )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    load = os.getloadavg()
    print(
        f"  machine load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=200, help=argparse.SUPPRESS)
    ap.add_argument("--no-templates", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.rounds, not args.no_templates)
        return
    from bench_relay import build_go_client

    with tempfile.TemporaryDirectory() as tmp:
        go_client, note = build_go_client(tmp)
        bench_unfiltered(go_client, note)


if __name__ == "__main__":
    main()
