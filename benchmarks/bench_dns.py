"""DNS proxy benchmark (root): queries/s and latency, direct vs through the node's DNS proxy.

The routed namespace test bed with the eBPF datapath (tests/proxy/dnstools.py): the client pods
``payments/api`` (egress to kube-dns:53 with DNS rules ``*.stripe.com`` / ``api.stripe.com``: every
query goes through the proxy) and ``payments/frontend`` (the same peer and port allowed at L4 only:
direct), and ``kube-system/kube-dns`` running a small answering loop (every A query gets one
address, built from the query's bytes) so the server is not what is measured. dnsperf (Debian)
runs in a client pod:

* max throughput: ``--seconds`` at most, ``--clients`` sockets, 200 queries outstanding: queries/s
  completed, lost, average latency;
* latency at a fixed rate: our own generator (``--rate`` q/s, one query every 1/rate s, not waiting
  for answers; dnsperf's ``-Q`` sends in bursts when it falls behind, which measures its queue, not
  the path): p50 / p99 of every query's latency.

Paths: direct (L4 only); through the proxy with a few repeated names (its parse cache hits); through
the proxy with a new name per query (every message parsed by dnspython). For the proxy rows: its CPU
per query and queries per proxy CPU-second (what one core sustains), from /proc. The proxy's access
log goes to a reader that counts records (the node's flow parsing is not part of these figures).
Prints a table; asserts nothing. Then the answer-to-allow rows (:mod:`fqdn_allow`): the time from a
DNS answer to its toFQDNs policy-map entry, p50/p99.

Usage: sudo .venv/bin/python benchmarks/bench_dns.py [--seconds 10] [--rate 2000] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "proxy"))
sys.path.insert(0, str(REPO / "benchmarks"))

os.environ.setdefault("HUBBLEPY_TEST_NETNS_PREFIX", os.environ.get("HUBBLEPY_BENCH_NETNS_PREFIX", "hpbd-"))

import fqdn_allow  # noqa: E402
from dnstools import DNSProxyLab, kube_dns_policy  # noqa: E402

from hubblepy.datapath import DatapathUnavailable, check_environment  # noqa: E402

POLICY = "\n---\n".join(
    (
        kube_dns_policy(
            "bench-dns", dns_rules=[{"matchPattern": "*.stripe.com"}, {"matchName": "api.stripe.com"}]
        ),
        kube_dns_policy("bench-direct", app="frontend"),
    )
)

# kube-dns: answers every query (no EDNS) with one A record, from the query's own bytes
SERVER = textwrap.dedent("""\
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((sys.argv[1], 53))
    tail = bytes.fromhex("c00c000100010000001e0004") + socket.inet_aton("203.0.113.10")
    head = bytes.fromhex("818000010001") + bytes(4)
    recv, send = s.recvfrom, s.sendto
    while True:
        q, peer = recv(2048)
        if len(q) > 12:
            send(q[:2] + head + q[12:] + tail, peer)
    """)

# the fixed-rate generator, run in a client pod: argv = server, rate, seconds, "repeated" | "unique"
GENERATOR = textwrap.dedent("""\
    import json, socket, statistics, sys, threading, time
    import dns.message
    server, rate, seconds, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    count = min(int(rate * seconds), 60000)
    names = [f"n{i}.stripe.com" for i in range(count)] if mode == "unique" else ["api.stripe.com"] * count
    wires = [dns.message.make_query(n, "A", id=i & 0xFFFF).to_wire() for i, n in enumerate(names)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.connect((server, 53))
    sent = [0.0] * count
    got = {}
    def receive():
        s.settimeout(2.0)
        while len(got) < count:
            try:
                data = s.recv(4096)
            except OSError:
                return
            now = time.perf_counter()
            ident = int.from_bytes(data[:2], "big")
            if ident < count and ident not in got:
                got[ident] = now - sent[ident]
    reader = threading.Thread(target=receive)
    reader.start()
    start = time.perf_counter()
    for i, wire in enumerate(wires):
        due = start + i / rate
        while (delay := due - time.perf_counter()) > 0:
            time.sleep(delay if delay > 0.0005 else 0)
        sent[i] = time.perf_counter()
        s.send(wire)
    reader.join()
    lat = sorted(got.values())
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    print(json.dumps({"p50": q[49], "p99": q[98], "lost": count - len(lat), "count": count}))
    """)


def fixed_rate(lab: DNSProxyLab, pod: Any, rate: int, seconds: float, mode: str) -> dict:
    """p50/p99 (seconds) and lost queries of the fixed-rate generator, run in ``pod``."""
    args = (lab.kube_dns.ip, str(rate), str(seconds), mode)
    out = lab.run_python(pod, GENERATOR, *args, timeout=seconds + 60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


_NUMBER = r"([0-9.]+)"


def dnsperf(netns: str, server: str, names: Path, seconds: float, clients: int) -> dict:
    args = ["ip", "netns", "exec", netns, "dnsperf", "-s", server, "-d", str(names), "-l", str(seconds)]
    args += ["-c", str(clients), "-q", "200", "-t", "2"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    result: dict = {}
    for key, pattern in (
        ("sent", r"Queries sent:\s+(\d+)"),
        ("completed", r"Queries completed:\s+(\d+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
        ("qps", r"Queries per second:\s+" + _NUMBER),
        ("avg", r"Average Latency \(s\):\s+" + _NUMBER),
    ):
        found = re.search(pattern, out)
        result[key] = float(found.group(1)) if found else 0.0
    return result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="q/s of the fixed-rate latency runs")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_dns: needs root (namespaces, eBPF)")
        return 0
    if shutil.which("dnsperf") is None:
        print("bench_dns: dnsperf is missing (Debian package dnsperf; scripts/bootstrap.sh installs it)")
        return 0
    try:
        check_environment()
    except DatapathUnavailable as exc:
        print(f"bench_dns: {exc}")
        return 0
    with tempfile.TemporaryDirectory(prefix="hubblepy-bench-dns-") as tmp:
        folder = Path(tmp)
        repeated = folder / "repeated.txt"
        repeated.write_text("api.stripe.com A\nfiles.stripe.com A\ncdn.stripe.com A\nm.stripe.com A\n")
        unique = folder / "unique.txt"
        unique.write_text("".join(f"n{i}.stripe.com A\n" for i in range(400_000)))
        lab = DNSProxyLab(folder, policy=POLICY, dns_server=False)
        server = subprocess.Popen(
            ["ip", "netns", "exec", lab.kube_dns.netns, sys.executable, "-c", SERVER, lab.kube_dns.ip]
        )
        try:
            time.sleep(0.5)
            load = os.getloadavg()
            rows = []
            for label, pod, names in (
                ("direct (L4 only)", lab.frontend, repeated),
                ("through the proxy, repeated names", lab.client, repeated),
                ("through the proxy, a new name per query", lab.client, unique),
            ):
                proxied = pod is lab.client
                assert lab.proc is not None
                before = cpu_seconds(lab.proc.pid) if proxied else 0.0
                top = dnsperf(pod.netns, lab.kube_dns.ip, names, args.seconds, args.clients)
                used = cpu_seconds(lab.proc.pid) - before if proxied else 0.0
                mode = "unique" if names is unique else "repeated"
                fixed = fixed_rate(lab, pod, args.rate, min(args.seconds, 5.0), mode)
                rows.append((label, top, fixed, used))
            stats = lab.stats()
        finally:
            server.terminate()
            server.wait(5)
            lab.close()
    print(
        f"DNS proxy benchmark (load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs)"
    )
    head = (
        f"{'path':<42} {'q/s max':>9} {'lost':>6} {'avg ms':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'proxy us/q':>10} {'q/s per proxy core':>18}"
    )
    print(f"max: {args.clients} clients, 200 outstanding, {args.seconds:g} s; p50/p99 at {args.rate} q/s")
    print(head)
    print("-" * len(head))
    for label, top, fixed, used in rows:
        completed = top["completed"] or 1
        per_query = f"{used / completed * 1e6:.1f}" if used else "-"
        per_core = f"{completed / used:,.0f}" if used else "-"
        print(
            f"{label:<42} {top['qps']:>9,.0f} {top['lost']:>6.0f} {top['avg'] * 1e3:>7.3f} "
            f"{fixed.get('p50', 0) * 1e3:>7.3f} {fixed.get('p99', 0) * 1e3:>7.3f} {per_query:>10} {per_core:>18}"
        )
    print(
        f"proxy counters: {stats.get('queries', 0)} queries, parse cache {stats.get('cache_hits', 0)} hits / "
        f"{stats.get('cache_misses', 0)} misses, access-log records sent {stats.get('sent', 0)} lost {stats.get('lost', 0)}"
    )
    return 0


if __name__ == "__main__":
    code = main()
    fqdn_allow.main()
    sys.exit(code)
