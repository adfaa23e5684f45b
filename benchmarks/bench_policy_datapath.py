"""Policy-map size vs datapath speed (root, real eBPF): does a big policy map slow the programs down?

Two namespace pods with the endpoint programs attached (aggregation medium), the server's ingress
enforced. Variants, run in interleaved rounds (median per variant):

* ``empty map``: only the one allow entry the traffic needs;
* ``10k entries``: the same allow plus 10,000 other entries (other identities, ports, endpoints);
* ``10k + ranges``: as 10k, plus port-range (endPort) entries on the judged endpoint, so every new
  connection also walks the policy_ranges LPM trie.

Two workloads: TCP request/response on one connection (policy is judged once; steady-state cost)
and TCP connect/request/response/close (a new connection per transaction: every transaction is
judged by the policy map). Also prints the LPM block counts of typical port ranges.

Prints figures; asserts nothing. Usage: sudo .venv/bin/python benchmarks/bench_policy_datapath.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_datapath import build_rr, enable_bpf_stats, prog_run_stats, rr_round  # noqa: E402

from hubblepy.datapath import Datapath, DatapathUnavailable, PolicyEntry, check_environment, port_blocks  # noqa: E402
from hubblepy.datapath.testbed import Testbed  # noqa: E402

TCP = 6
BIG = 10_000

CRR_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
/* crr server IP PORT | crr client IP PORT SECONDS: connect, 64-byte request/response, close */
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int full(int fd, char *b, int n) { int g = 0; while (g < n) { int r = recv(fd, b + g, n - g, 0); if (r <= 0) return -1; g += r; } return 0; }
int main(int argc, char **argv) {
    char buf[64]; memset(buf, 'x', sizeof buf);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    int one = 1;
    if (argv[1][0] == 's') {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (void *)&a, sizeof a) || listen(fd, 128)) { perror("bind"); return 1; }
        printf("ready\n"); fflush(stdout);
        for (;;) { int c = accept(fd, 0, 0); if (c < 0) continue;
            if (full(c, buf, 64) == 0) send(c, buf, 64, 0); close(c); }
    }
    double end = now() + atof(argv[4]); long n = 0;
    struct linger lg = { 1, 0 };  /* RST on close: no TIME_WAIT pile-up on the client */
    while (now() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        if (connect(fd, (void *)&a, sizeof a)) { perror("connect"); return 1; }
        if (send(fd, buf, 64, 0) != 64 || full(fd, buf, 64)) return 1;
        close(fd); n++;
    }
    printf("%ld\n", n); return 0;
}
"""


def build_crr(tmp: Path) -> list[str] | None:
    if not shutil.which("gcc"):
        return None
    src = tmp / "crr.c"
    src.write_text(CRR_C)
    exe = tmp / "crr"
    res = subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
    return [str(exe)] if res.returncode == 0 else None


def filler(count: int) -> dict[int, list[PolicyEntry]]:
    """``count`` entries that never match the benchmark's traffic, spread over endpoints 2..9."""
    out: dict[int, list[PolicyEntry]] = {}
    for i in range(count):
        ep = 2 + i % 8
        out.setdefault(ep, []).append(PolicyEntry(identity=5000 + i, dport=1 + i % 60000, proto=TCP))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    try:
        check_environment()
    except DatapathUnavailable as exc:
        print(f"bench_policy_datapath: skipped: {exc}")
        return
    run(args.seconds, args.rounds)


def run(seconds: float, rounds: int) -> None:
    """Prints the figures (also called by bench_datapath.py, so `nox -s bench` reports them)."""
    print("\npolicy map size vs datapath speed (bench_policy_datapath.py)")
    print("port-range cost in the policy_ranges LPM trie (entries per range):")
    for first, last in [(8000, 8080), (1024, 65535), (1, 65535), (30000, 32767), (9000, 9100)]:
        print(
            f"  {first}-{last}: {len(port_blocks(first, last))} blocks (vs {last - first + 1} exact entries)"
        )

    allow = PolicyEntry(1001, 0, 0)  # the client's identity, every port (L3-only)
    ranges = [PolicyEntry(7000 + i, 1024, TCP, end_port=65535) for i in range(8)] + [
        PolicyEntry(0, 40000, TCP, end_port=40100)
    ]
    big = filler(BIG)
    with Testbed(2) as tb, tempfile.TemporaryDirectory() as tmp:
        rr = build_rr(Path(tmp))
        crr = build_crr(Path(tmp))
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, 1000 + i, 0x1)
            dp.set_ipcache(f"{pod.ip}/32", 1000 + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        reader = dp.open_monitor()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                reader.read()

        t = threading.Thread(target=drain, daemon=True)
        t.start()

        def setup(variant: str) -> int:
            for ep in range(2, 10):
                wanted = big.get(ep, []) if variant != "empty map" else []
                if ep == 2:
                    wanted = [allow, *wanted, *(ranges if variant == "10k + ranges" else [])]
                if ep <= 2 or variant != "empty map" or dp.policy_entries(ep, "ingress"):
                    dp.set_policy_entries(ep, "ingress", wanted)
            return sum(len(dp.policy_entries(ep, "ingress")) for ep in range(1, 10)) + dp.range_block_count()

        variants = ["empty map", "10k entries", "10k + ranges"]
        results: dict[tuple[str, str], list[float]] = {(w, v): [] for w in ("rr", "crr") for v in variants}
        bpf_ns = dict.fromkeys(results, 0)
        bpf_runs = dict.fromkeys(results, 0)
        sizes = {}
        port = 21000
        stats_fd = enable_bpf_stats()
        try:
            for round_no in range(rounds):
                # rotate the order every round so no variant always runs first or last
                for variant in variants[round_no % 3 :] + variants[: round_no % 3]:
                    sizes[variant] = setup(variant)
                    for workload, prog in (("rr", rr), ("crr", crr)):
                        if prog is None and workload == "crr":
                            continue
                        port += 1
                        dp.flush_conntrack()
                        before = [prog_run_stats(fd) for fd in dp.program_fds]
                        results[(workload, variant)].append(rr_round(tb, prog, seconds, port))
                        after = [prog_run_stats(fd) for fd in dp.program_fds]
                        bpf_ns[(workload, variant)] += sum(
                            a[0] - b[0] for a, b in zip(after, before, strict=True)
                        )
                        bpf_runs[(workload, variant)] += sum(
                            a[1] - b[1] for a, b in zip(after, before, strict=True)
                        )
        finally:
            if stats_fd >= 0:
                os.close(stats_fd)
            stop.set()
            t.join(2)
            reader.close()
            dp.close()
        print(f"\nTCP transactions/s, {rounds} interleaved rounds of {seconds:.0f}s (median)")
        for workload, title in (
            ("rr", "request/response, one connection"),
            ("crr", "connect/request/response/close"),
        ):
            if not results[(workload, variants[0])]:
                print(f"  {title}: skipped (no gcc)")
                continue
            base = statistics.median(results[(workload, variants[0])])
            print(f"  {title}:")
            for variant in variants:
                med = statistics.median(results[(workload, variant)])
                runs = bpf_runs[(workload, variant)]
                per_packet = f"{bpf_ns[(workload, variant)] / runs:,.0f} ns" if runs else "-"
                print(
                    f"    {variant:<13} ({sizes[variant]:>6,} map entries) {med:>10,.0f}/s   "
                    f"ratio to empty map {med / base:.3f}   time in BPF per packet {per_packet}"
                )


if __name__ == "__main__":
    main()
