"""Datapath benchmarks (root, real eBPF): perf-buffer read rates and TCP request/response overhead.

1. Events/s from a perf event array, fed by a generator tc program that a separate process runs
   with BPF_PROG_TEST_RUN on a 142-byte frame; each run emits EVENTS_PER_CALL trace events
   (56-byte header + 128 packet bytes, perf_event_output with the skb, as the datapath does):
     - hubblepy.monitor.MonitorReader, raw (count samples only)  = the read ceiling
     - MonitorReader + a simple decode (trace header unpacked per event), unordered and ordered
       (batches sorted by kernel time stamps across CPUs: the reader's default)
     - bcc open_perf_buffer + per-event Python callback (wakeup_events 1 and 32), same decode
2. The pipeline as the agent runs it, in one measured process: perf buffer -> Parser.decode_batch ->
   Observer ring (hubblepy.lab.source.DatapathFlowSource), fed a trace/drop/policy-verdict mix at
   stepped offered rates; prints received events/s, flows/s into the ring, lost samples, events per
   pipeline CPU-second and the highest offered rate read with 0 loss (see pipeline_bench.py); its
   last table has Hubble's metric families off / all on / all on with contexts at each rate
   (``--only metrics`` runs that table alone).
3. Time per packet inside the endpoint programs (BPF_PROG_TEST_RUN on an established TCP packet),
   without and with a trace event per packet.
4. TCP request/response transactions/s between two namespace pods, without programs, with the
   endpoint programs attached (aggregation medium, the default), and with aggregation none; the
   ratio to "without" is printed. Uses a small C client/server when gcc is available (else Python).

Prints figures; asserts nothing. Usage: sudo .venv/bin/python benchmarks/bench_datapath.py [--seconds N]
[--rates 50000,100000,...] [--only read,pipeline,metrics,cost,rr,policy]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing as mp
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the namespace test bed (tests/testbed.py)

from testbed import Testbed  # noqa: E402

from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment, tc  # noqa: E402
from hubblepy.datapath.layout import TRACE_V2  # noqa: E402
from hubblepy.monitor import MonitorReader  # noqa: E402
from hubblepy.monitor.generator import frame_attr, prog_test_run  # noqa: E402
from hubblepy.monitor.perf import NR_BPF  # noqa: E402

EVENTS_PER_CALL = 16

GENERATOR_C = r"""
#include "hubble_events.h"
BPF_PERF_OUTPUT(bench_events);
/* Run with BPF_PROG_TEST_RUN on a 142-byte packet: each run emits EVENTS_PER_CALL trace events
 * through the same helper the endpoint programs use (header + 128 packet bytes from the skb). */
int generate(struct __sk_buff *skb) {
    struct hp_trace_notify ev = {};
    __u32 cap = skb->len < 128 ? skb->len : 128;
    ev.hdr.type = HP_NOTIFY_TRACE;
    ev.hdr.subtype = HP_TRACE_FROM_LXC;
    ev.hdr.version = HP_TRACE_VER;
    ev.hdr.len_cap = cap;
    ev.hdr.len_orig = skb->len;
    ev.src_label = 1001;
    ev.dst_label = 1002;
    #pragma unroll
    for (int i = 0; i < EVENTS_PER_CALL; i++) {
        ev.hdr.hash = i;
        bench_events.perf_submit_skb(skb, cap, &ev, sizeof(ev));
    }
    return 0;
}
"""

RR_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
/* rr server IP PORT | rr client IP PORT SECONDS: 64-byte request/response on one TCP connection */
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int full(int fd, char *b, int n) { int g = 0; while (g < n) { int r = recv(fd, b + g, n - g, 0); if (r <= 0) return -1; g += r; } return 0; }
int main(int argc, char **argv) {
    char buf[64]; memset(buf, 'x', sizeof buf);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (argv[1][0] == 's') {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (void *)&a, sizeof a) || listen(fd, 8)) { perror("bind"); return 1; }
        printf("ready\n"); fflush(stdout);
        for (;;) { int c = accept(fd, 0, 0); setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            while (full(c, buf, 64) == 0) if (send(c, buf, 64, 0) != 64) break; close(c); }
    }
    if (connect(fd, (void *)&a, sizeof a)) { perror("connect"); return 1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double end = now() + atof(argv[4]); long n = 0;
    while (now() < end) { if (send(fd, buf, 64, 0) != 64 || full(fd, buf, 64)) return 1; n++; }
    printf("%ld\n", n); return 0;
}
"""

RR_PY_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(64)):
        c.sendall(d)
"""

RR_PY_CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end = time.monotonic() + float(sys.argv[3]); n = 0; b = b"x" * 64
while time.monotonic() < end:
    s.sendall(b); got = 0
    while got < 64:
        got += len(s.recv(64 - got))
    n += 1
print(n)
"""


# -- perf buffer -----------------------------------------------------------------------------------
# Ethernet + IPv4 + UDP + 100 bytes: a 142-byte frame
PACKET = bytes.fromhex("02000000000102000000000208004500008000004000401100000ac800010ac80002") + bytes(108)


def _generate(prog_fd: int, seconds: float, ready, go, calls) -> None:
    attr = frame_attr(prog_fd, PACKET, repeat=64)
    ready.set()
    go.wait()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        prog_test_run(attr)
        n += attr.repeat
    calls.value = n


class Generator:
    """A BPF event generator: a separate process runs a tc program with BPF_PROG_TEST_RUN."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(
            text=GENERATOR_C.replace("EVENTS_PER_CALL", str(EVENTS_PER_CALL)),
            cflags=[f"-I{REPO / 'bpf'}", "-Wno-macro-redefined"],
        )
        self.prog_fd = self.bpf.load_func(b"generate", BPF.SCHED_CLS).fd
        self.table = self.bpf.get_table(b"bench_events")
        self.offered = 0

    def run(self, seconds: float, consume) -> None:
        """Starts the generator process and calls consume(stop_event) in this process meanwhile."""
        ctx = mp.get_context("fork")
        ready, go, calls = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
        proc = ctx.Process(target=_generate, args=(self.prog_fd, seconds, ready, go, calls))
        proc.start()
        ready.wait()
        stop = threading.Event()
        go.set()
        threading.Thread(target=lambda: (proc.join(), stop.set()), daemon=True).start()
        consume(stop)
        proc.join()
        self.offered = calls.value * EVENTS_PER_CALL

    def close(self) -> None:
        self.bpf.cleanup()


def bench_mmap_reader(
    gen: Generator, seconds: float, decode: bool, ordered: bool = False
) -> tuple[float, int, int, float]:
    reader = MonitorReader(gen.table.map_fd, pages=256, wakeup_events=32, ordered=ordered)
    unpack = TRACE_V2.unpack_from
    counted = [0]

    def consume(stop: threading.Event) -> None:
        while not stop.is_set():
            batch = reader.read()
            if decode:
                for _cpu, raw in batch.samples:
                    h = unpack(raw)
                    counted[0] += h[0] == 4
        for _ in range(3):
            reader.read(0.05)

    t0, c0 = time.monotonic(), time.process_time()
    gen.run(seconds, consume)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    reader.close()
    return reader.received / wall, reader.received, reader.lost, reader.received / cpu if cpu else 0.0


def bench_bcc_callback(gen: Generator, seconds: float, wakeup_events: int) -> tuple[float, int, int, float]:
    import ctypes as ct

    received = [0]
    lost = [0]
    unpack = TRACE_V2.unpack_from

    def on_event(_cpu: int, data: int, size: int) -> None:
        raw = ct.string_at(data, size)
        unpack(raw)
        received[0] += 1

    def on_lost(n: int) -> None:
        lost[0] += n

    gen.table.open_perf_buffer(on_event, page_cnt=256, lost_cb=on_lost, wakeup_events=wakeup_events)

    def consume(stop: threading.Event) -> None:
        while not stop.is_set():
            gen.bpf.perf_buffer_poll(timeout=20)
        for _ in range(3):
            gen.bpf.perf_buffer_poll(timeout=50)

    t0, c0 = time.monotonic(), time.process_time()
    gen.run(seconds, consume)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    for key in list(gen.table._open_key_fds):
        with contextlib.suppress(KeyError):
            del gen.table[key]
    return received[0] / wall, received[0], lost[0], received[0] / cpu if cpu else 0.0


# -- TCP request/response --------------------------------------------------------------------------
def build_rr(tmp: Path) -> list[str] | None:
    if not shutil.which("gcc"):
        return None
    src = tmp / "rr.c"
    src.write_text(RR_C)
    exe = tmp / "rr"
    res = subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
    return [str(exe)] if res.returncode == 0 else None


def rr_round(tb: Testbed, rr: list[str] | None, seconds: float, port: int) -> float:
    p1, p2 = tb.pods[:2]
    if rr:
        server_cmd = [*rr, "server", p2.ip, str(port)]
        client_cmd = [*rr, "client", p2.ip, str(port), str(seconds)]
    else:
        server_cmd = [sys.executable, "-c", RR_PY_SERVER, p2.ip, str(port)]
        client_cmd = [sys.executable, "-c", RR_PY_CLIENT, p2.ip, str(port), str(seconds)]
    server = subprocess.Popen(
        ["ip", "netns", "exec", p2.netns, *server_cmd], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        out = subprocess.run(
            ["ip", "netns", "exec", p1.netns, *client_cmd],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        return int(out.stdout.strip() or 0) / seconds
    finally:
        server.kill()
        server.wait()


BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
PROG_INFO_RUN_TIME_NS = 192  # offsets in struct bpf_prog_info
PROG_INFO_RUN_CNT = 200


def enable_bpf_stats() -> int:
    """Turns on run-time accounting for BPF programs while the returned fd stays open."""
    attr = (ctypes.c_uint32 * 2)(0, 0)  # type = BPF_STATS_RUN_TIME
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(NR_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr)))


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program."""
    info = ctypes.create_string_buffer(256)
    attr = struct.pack("<IIQ", prog_fd, len(info), ctypes.addressof(info))
    attr_buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(NR_BPF, BPF_OBJ_GET_INFO_BY_FD, attr_buf, len(attr)) != 0:
        return (0, 0)
    return struct.unpack_from("<QQ", info.raw, PROG_INFO_RUN_TIME_NS)


def bench_rr(seconds: float, rounds: int) -> None:
    with Testbed(2) as tb, tempfile.TemporaryDirectory() as tmp:
        rr = build_rr(Path(tmp))
        print(
            f"\nTCP request/response, 64-byte messages, {'C' if rr else 'Python'} client/server, "
            f"{rounds} interleaved rounds of {seconds:.0f}s (median)"
        )
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, 1000 + i, 0x1)  # ingress policy enforced
            dp.set_ipcache(f"{pod.ip}/32", 1000 + i)
        from hubblepy.datapath import PolicyEntry

        dp.set_policy_entries(2, "ingress", [PolicyEntry(1001, 0, 6)])
        reader = dp.open_monitor()
        stop = threading.Event()
        drained = [0]

        def drain() -> None:
            while not stop.is_set():
                drained[0] += len(reader.read().samples)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        results: dict[str, list[float]] = {
            "without programs": [],
            "pass-through prog": [],
            "attached, medium": [],
            "attached, none": [],
        }
        from bcc import BPF

        passthrough = BPF(text="int pass(struct __sk_buff *skb) { return 0; }")
        pass_fd = passthrough.load_func(b"pass", BPF.SCHED_CLS).fd
        port = 20000
        run_ns = dict.fromkeys(results, 0)
        run_cnt = dict.fromkeys(results, 0)
        stats_fd = enable_bpf_stats()
        try:
            for _ in range(rounds):
                for variant in results:
                    port += 1
                    if variant == "without programs":
                        for pod in tb.pods:
                            dp.detach(pod.host_ifname, netns=tb.node)
                    elif variant == "pass-through prog":  # the cost of the tc hooks themselves
                        with tc.netlink(tb.node) as ipr:
                            for pod in tb.pods:
                                tc.attach(ipr, pod.host_ifindex, pass_fd, pass_fd, ("pass", "pass"))
                    else:
                        dp.set_monitor_aggregation("medium" if variant.endswith("medium") else "none")
                        for pod in tb.pods:
                            dp.attach(pod.host_ifname, netns=tb.node)
                    before = [prog_run_stats(fd) for fd in dp.program_fds]
                    results[variant].append(rr_round(tb, rr, seconds, port))
                    after = [prog_run_stats(fd) for fd in dp.program_fds]
                    run_ns[variant] += sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
                    run_cnt[variant] += sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
        finally:
            stop.set()
            t.join()
            if stats_fd >= 0:
                os.close(stats_fd)
            reader.close()
            dp.close()
            with tc.netlink(tb.node) as ipr:
                for pod in tb.pods:
                    tc.detach(ipr, pod.host_ifindex, remove_qdisc=True)
            passthrough.cleanup()
        base = statistics.median(results["without programs"])
        for variant, values in results.items():
            med = statistics.median(values)
            per_packet = f"{run_ns[variant] / run_cnt[variant]:,.0f} ns" if run_cnt[variant] else "-"
            print(
                f"  {variant:<18} {med:>10,.0f} transactions/s   ratio {med / base:.2f}   "
                f"time in BPF per packet {per_packet}"
            )
        print(f"  events read meanwhile: {drained[0]:,} (lost {reader.lost})")


def bench_program_cost(runs: int = 200_000) -> None:
    """Time per run of the endpoint programs on an established TCP packet, via BPF_PROG_TEST_RUN."""
    eth = bytes.fromhex("020000000001020000000002") + b"\x08\x00"
    tcp = struct.pack("!HHIIBBHHH", 40000, 8080, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + 32, 0, 0, 64, 6, 0, b"\n\xc8\x00\x01", b"\n\xc8\x00\x02"
    )
    frame = eth + ip + tcp + bytes(32)

    def run(fd: int, repeat: int) -> int:
        return prog_test_run(frame_attr(fd, frame, repeat))

    print(
        f"\nendpoint program cost per packet (BPF_PROG_TEST_RUN, established TCP ACK, {runs:,} runs, median of 7)"
    )
    with Datapath() as dp:
        dp.upsert_endpoint(1, 1, 1001)  # test runs see the loopback device, ifindex 1
        for level in ("medium", "none"):
            dp.set_monitor_aggregation(level)
            # with events, keep each burst well inside the ring and drain it between bursts
            repeat = runs if level == "medium" else 2000
            with dp.open_monitor(pages=256) as reader:
                figures = []
                for fd in dp.program_fds:
                    run(fd, 1)  # creates the conntrack entry
                    samples = []
                    for _ in range(7):
                        samples.append(run(fd, repeat))
                        while reader.read(0).samples:
                            pass
                    figures.append(statistics.median(samples))
                lost = reader.lost
            label = "no event (aggregation medium)" if level == "medium" else "trace event per packet (none)"
            print(
                f"  {label:<34} from_container {figures[0]:>5.0f} ns   to_container {figures[1]:>5.0f} ns"
                f"   (lost {lost})"
            )


STAGES = ("read", "pipeline", "metrics", "cost", "rr", "policy")
DEFAULT_RATES = "50000,100000,150000,200000,250000,300000"


def bench_read_rates(seconds: float) -> None:
    gen = Generator()
    print(
        f"perf buffer read rates ({EVENTS_PER_CALL} events of 184 bytes per program run, 256 pages/CPU, "
        f"{seconds:.0f}s each; generator in its own process)"
    )
    print(f"  {'reader':<44} {'events/s':>12} {'offered/s':>12} {'lost':>6} {'per reader CPU-s':>17}")
    runs = [
        (
            "MonitorReader raw (ceiling), wakeup 32",
            lambda: bench_mmap_reader(gen, seconds, decode=False),
        ),
        (
            "MonitorReader + header decode, wakeup 32",
            lambda: bench_mmap_reader(gen, seconds, decode=True),
        ),
        (
            "MonitorReader ordered (default) + decode",
            lambda: bench_mmap_reader(gen, seconds, decode=True, ordered=True),
        ),
        ("bcc callback + decode, wakeup 32", lambda: bench_bcc_callback(gen, seconds, 32)),
        ("bcc callback + decode, wakeup 1 (default)", lambda: bench_bcc_callback(gen, seconds, 1)),
    ]
    for name, fn in runs:
        rate, received, lost, per_cpu = fn()
        total = received + lost
        loss = f"{100 * lost / total:.0f}%" if total else "-"
        offered = gen.offered / seconds
        print(f"  {name:<44} {rate:>12,.0f} {offered:>12,.0f} {loss:>6} {per_cpu:>17,.0f}")
    gen.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--rates", default=DEFAULT_RATES, help="offered events/s of the pipeline stage, comma-separated"
    )
    ap.add_argument(
        "--only", default=",".join(STAGES), help=f"stages to run, comma-separated: {','.join(STAGES)}"
    )
    args = ap.parse_args()
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error(f"--rates must be numbers separated by commas, not {args.rates!r}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        print(f"bench_datapath: skipped: {exc}")
        return

    if "read" in stages:
        bench_read_rates(args.seconds)
    if "pipeline" in stages:
        from pipeline_bench import bench_pipeline  # perf buffer -> parser -> observer ring

        bench_pipeline(args.seconds, rates)
    elif "metrics" in stages:  # only the pipeline's metrics off/on table (pipeline includes it)
        from pipeline_bench import bench_pipeline

        bench_pipeline(args.seconds, rates, metrics_only=True)
    if "cost" in stages:
        bench_program_cost()
    if "rr" in stages:
        bench_rr(args.seconds, args.rounds)
    if "policy" in stages:
        from bench_policy_datapath import run as bench_policy_map  # empty vs 10k-entry policy map

        bench_policy_map(args.seconds, args.rounds)


if __name__ == "__main__":
    main()
