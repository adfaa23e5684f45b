"""The HTTP proxy's own Python cost per request, in one process, without the network.

``nox -s bench -- l7`` measures the proxy against HAProxy on real traffic, but on a shared 2-CPU VM
its figures move by 15% from run to run. This benchmark isolates what the proxy's code costs: real
``ClientConnection`` / ``UpstreamConnection`` objects with the real httptools parsers, the compiled
seed rule (GET /api/v1/orders from frontend: the state tests/proxy/proxytools.py writes) and the
real access-log writer (rows, templates, header sets, correlation), fed keep-alive requests and responses on 32 connections through stand-in
transports that only count writes. No sockets, no kernel time, no node.

Prints, with and without the access log: CPU microseconds per request (process time, best of
``--repeat``), requests per CPU-second, and the share of the cost that is the L7 records. With
``--instructions`` it also runs itself under valgrind's callgrind and prints instructions per request
(the difference of two run lengths: start-up cancels out); that figure is deterministic, so it tells
a 2% change in the proxy's code apart on any machine.

Usage: .venv/bin/python benchmarks/bench_proxy_cost.py [--requests 200000] [--repeat 5] [--instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "proxy"))
sys.path.insert(0, str(REPO / "benchmarks"))

import callgrind  # noqa: E402
from proxytools import FRONTEND_IP, SEED, SERVER_IP, state_document  # noqa: E402

from hubblepy import native  # noqa: E402
from hubblepy.proxy import accesslog, http  # noqa: E402
from hubblepy.proxy.state import ProxyState, parse_state  # noqa: E402

CONNECTIONS = 32
SERVER = (SERVER_IP, 8080)
REQUEST = b"GET /api/v1/orders HTTP/1.1\r\nHost: api:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
RESPONSE = b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{"ok":true}'


def seed_state() -> ProxyState:
    """The proxy state the lab would write for the seed's api-http-l7 (the test harness's): api
    local, frontend a peer that may GET /api/v1/orders."""
    doc, _ = state_document(SEED, SERVER[1], revision=1)
    return parse_state(orjson.dumps(doc))


class CountingTransport:
    """Stands in for a TCP transport: counts writes, never blocks."""

    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.extra = {"peername": peer, "sockname": local}
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return self.extra[name]

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def run(requests: int, repeat: int, with_log: bool) -> tuple[float, int]:
    """Best CPU seconds per request over ``repeat`` passes, and the records the log made."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)  # what the proxy process sets
    log = accesslog.AccessLogWriter("/nonexistent", batch=1 << 30) if with_log else None
    if log is not None:
        log._scheduled = True  # no timer and no socket: take_batch takes the batches
    server = http.ProxyServer(http.Options(upstream=SERVER), seed_state(), log)
    pairs = []
    for i in range(CONNECTIONS):
        client = http.ClientConnection(server)
        client.connection_made(CountingTransport((FRONTEND_IP, 40000 + i), SERVER))  # type: ignore[arg-type]
        upstream = http.UpstreamConnection(client)
        upstream.connection_made(CountingTransport(SERVER, (FRONTEND_IP, 40000 + i)))  # type: ignore[arg-type]
        client.upstream = upstream
        pairs.append((client, upstream))
    rows = 0

    def take_batch() -> None:
        """What the writer's timer would send: the rows' one orjson line (then dropped)."""
        nonlocal rows
        assert log is not None
        rows += log._pending_records
        if log._rows:
            log._close_rows()
        log._pending.clear()
        log._pending_records = 0
        log._scheduled = True  # no timer: the batches are taken here

    best = float("inf")
    rounds = max(1, requests // CONNECTIONS)
    for _ in range(repeat):
        start = time.process_time()
        for turn in range(rounds):
            for client, _ in pairs:
                client.data_received(REQUEST)
            server.flush()
            for _, upstream in pairs:
                upstream.data_received(RESPONSE)
            server.flush()
            if log is not None and turn % 8 == 7:
                take_batch()
        if log is not None:
            take_batch()
        best = min(best, (time.process_time() - start) / (rounds * CONNECTIONS))
        await asyncio.sleep(0)
    answered = sum(up.transport.writes for _, up in pairs)  # type: ignore[union-attr]
    if answered < repeat * rounds * CONNECTIONS:
        raise SystemExit(f"only {answered} requests reached the server: the rule refused them?")
    return best, rows


def instructions(requests: int, with_log: bool) -> int | None:
    """Instructions per request under callgrind: the difference of two run lengths."""

    def cmd(n: int) -> list[str]:
        return [sys.executable, __file__, "--requests", str(n), "--repeat", "1", "--quiet"] + (
            [] if with_log else ["--no-log"]
        )

    return callgrind.marginal(cmd, requests, 4 * requests)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    parser.add_argument("--no-log", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cost-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.quiet:  # one pass for --instructions
        uvloop.run(run(args.requests, 1, not args.no_log))
        return
    if args.cost_only:  # the Python source's figure, for the comparison below
        print(uvloop.run(run(args.requests, args.repeat, True))[0])
        return
    compiled = native.is_compiled(http)
    print(
        f"HTTP proxy, in-process: {CONNECTIONS} keep-alive connections, GET /api/v1/orders allowed by an "
        f"L7 rule, {args.requests} requests per pass, best of {args.repeat}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; the proxy's modules "
        + ("compiled by mypyc" if compiled else f"from their Python source ({native.stale_reason()})")
    )
    results = {}
    for with_log in (True, False):
        cost, rows = uvloop.run(run(args.requests, args.repeat, with_log))
        results[with_log] = cost
        name = "with L7 records" if with_log else "without records"
        line = f"{name:18} {cost * 1e6:6.2f} µs CPU/request  {1 / cost:9,.0f} requests per CPU-second"
        if with_log:
            line += f"  ({rows / (args.repeat * max(1, args.requests // CONNECTIONS) * CONNECTIONS):.2f} records/request)"
        if args.instructions:
            count = instructions(5_000, with_log)
            line += f"  {count:,} instructions/request" if count else "  (no valgrind)"
        print(line)
    share = 1 - results[False] / results[True]
    print(f"the L7 records' share of the proxy's Python cost: {share:.0%}")
    if compiled:
        env = dict(os.environ, HUBBLEPY_NATIVE="0")
        cmd = [sys.executable, __file__, "--requests", str(args.requests), "--repeat", str(args.repeat)]
        source = float(
            subprocess.run([*cmd, "--cost-only"], env=env, capture_output=True, text=True, check=True).stdout
        )
        print(
            f"from the Python source (HUBBLEPY_NATIVE=0): {source * 1e6:.2f} µs CPU/request with records; "
            f"the mypyc build needs {source / results[True]:.2f}x less"
        )


if __name__ == "__main__":
    main()
