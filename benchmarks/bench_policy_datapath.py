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
import ctypes
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the namespace test bed (tests/testbed.py)
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_datapath import (  # noqa: E402
    BPF_PROG_TEST_RUN,
    _TestRunAttr,
    build_rr,
    enable_bpf_stats,
    prog_run_stats,
    rr_round,
)
from testbed import Testbed  # noqa: E402

from hubblepy.datapath import Datapath, DatapathUnavailable, PolicyEntry, check_environment, port_blocks  # noqa: E402
from hubblepy.monitor.perf import NR_BPF  # noqa: E402

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


def judge_cost(repeat: int = 2000, bursts: int = 25) -> None:
    """ns per run of to_container judging a new TCP SYN (BPF_PROG_TEST_RUN), per policy-map size.

    No entry allows the SYN, so no conntrack entry is made and every run is a full judgement: six
    policy-hash lookups (plus the range trie when the endpoint has ranges) and the drop and verdict
    events. Free of the scheduler noise that the transaction rates on a shared machine carry.
    """
    eth = bytes.fromhex("020000000001020000000002") + b"\x08\x00"
    tcp = struct.pack("!HHIIBBHHH", 40000, 8080, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, b"\n\xc8\x00\x01", b"\n\xc8\x00\x02"
    )
    frame = eth + ip + tcp
    buf = ctypes.create_string_buffer(frame, len(frame))
    libc = ctypes.CDLL(None, use_errno=True)

    def once(fd: int) -> int:
        attr = _TestRunAttr(prog_fd=fd, data_size_in=len(frame), data_in=ctypes.addressof(buf), repeat=repeat)
        if libc.syscall(NR_BPF, BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
            raise OSError(ctypes.get_errno(), "BPF_PROG_TEST_RUN failed")
        return attr.duration

    print(
        f"\njudging a new connection (to_container, denied SYN, BPF_PROG_TEST_RUN, median of {bursts} x {repeat})"
    )
    with Datapath() as dp:
        dp.upsert_endpoint(1, 1, 1002, 0x1)  # test runs see the loopback device, ifindex 1
        dp.set_ipcache("10.200.0.1/32", 1001)
        fd = dp.program_fds[1]
        big = [PolicyEntry(identity=5000 + i, dport=1 + i % 60000, proto=TCP) for i in range(BIG)]
        ranges = [PolicyEntry(7000 + i, 1024, TCP, end_port=65535) for i in range(8)]
        variants = {"empty map": [], "10k entries": big, "10k + ranges": big + ranges}
        figures: dict[str, list[int]] = {v: [] for v in variants}
        with dp.open_monitor(pages=256) as reader:
            for _ in range(bursts):
                for name, entries in variants.items():
                    dp.set_policy_entries(1, "ingress", entries)
                    figures[name].append(once(fd))
                    while reader.read(0).samples:
                        pass
            lost = reader.lost
        base = statistics.median(figures["empty map"])
        for name, values in figures.items():
            med = statistics.median(values)
            print(f"  {name:<13} {med:>5.0f} ns per new connection   ratio to empty map {med / base:.3f}")
        print(f"  (events lost: {lost})")


def run(seconds: float, rounds: int) -> None:
    """Prints the figures (also called by bench_datapath.py, so `nox -s bench` reports them)."""
    print("\npolicy map size vs datapath speed (bench_policy_datapath.py)")
    judge_cost()
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
