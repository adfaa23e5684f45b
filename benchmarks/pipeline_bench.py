"""Pipeline stage of bench_datapath: perf buffer -> observer ring, timed as one unit.

The generator is a tc program that the kernel runs with BPF_PROG_TEST_RUN in a separate process:
each run emits the datapath's three event records in Cilium's layouts through the perf event array,
each with 128 packet bytes of a TCP SYN: 8 trace (half from-endpoint, half to-endpoint), 4 policy
drops and 4 allowed ingress policy verdicts. The generator paces itself in 1 ms steps and asks the
kernel for a whole step's runs in one bpf() call (``repeat``), so the offered rate is bounded by the
kernel's cost per perf sample, not by Python. The measured process runs the agent's own flow source
(hubblepy.lab.source.DatapathFlowSource: MonitorReader -> raw samples and their header columns into
the Observer's ring, decoded when read) with a StaticResolver that knows the pods.

Stepped offered rates, one table per reader setting: the agent's defaults, 4096 pages per CPU, and
the eager path of before issue 14 (decoded on the way in). Then a ``GetFlows --follow --verdict
DROPPED`` reader on the node's ring beside the pipeline (its drops/s and whether the writer lapped
it), and the metrics table (families off / lab / all / all with contexts at each rate).

With two CPUs or more the pipeline and the generator are pinned to different CPUs, so "CPU" is the
share of one core the pipeline process used (user + system time) while the generator ran. Both
processes run at niceness ``nice`` (default -10), each in its own session: with scheduler
autogroups the machine's other sessions would otherwise get as much of each CPU as the benchmark.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from hubblepy.api.observer import observer_pb2
from hubblepy.lab.source import DatapathFlowSource
from hubblepy.metrics import ALL_FAMILIES, build_node_metrics
from hubblepy.metrics.lab import DEFAULT_LAB_METRICS
from hubblepy.monitor import MonitorReader
from hubblepy.monitor.generator import (
    BPF_PROG_TEST_RUN,
    EVENTS_PER_RUN,
    POLICY_COOKIE,
    MixProgram,
    frame_attr,
)
from hubblepy.monitor.options import DEFAULT_NUM_PAGES, ring_bytes_per_cpu
from hubblepy.monitor.perf import NR_BPF
from hubblepy.observer.core import Observer
from hubblepy.observer.ring import DEFAULT_CAPACITY, MAX_CAPACITY
from hubblepy.observer.service import (
    ResponseEncoder,
    compile_request_column_filter,
    compile_request_exact_filter,
    compile_request_filters,
    flow_templates,
    select_entries,
)
from hubblepy.observer.transport import Frames
from hubblepy.parser import EndpointInfo, Parser, PolicyMatch, StaticResolver

DRAIN_GRACE_S = 0.3  # the source keeps reading this long after the generator stops


STEP_S = 0.001  # the generator's pacing step: one bpf() call per step emits the step's quota
MAX_STEP_BURST = 4  # a late step makes up at most this many steps' quota (the rest is skipped)


def _generate_paced(
    prog_fd: int, seconds: float, rate: float, nice: int, ready: Any, go: Any, runs_out: Any, cpu_out: Any
) -> None:
    """Load generator process: the program runs in the kernel at ``rate`` events/s, in steps.

    Every STEP_S the generator asks BPF_PROG_TEST_RUN for the runs its schedule owes so far in ONE
    call (``repeat`` = that many runs): the kernel then emits the step's events back to back, with
    no return to user space between runs, so what limits the offered rate is the kernel's cost per
    perf sample, not Python. A generator that was descheduled makes up at most MAX_STEP_BURST steps
    of its schedule in one call (the rest is dropped and shows as a lower offered rate), so bursts
    stay bounded by what the perf rings hold.
    """
    if nice:
        os.setsid()  # its own session: its own scheduler autogroup, apart from the pipeline's
        set_priority(nice)
    libc = ctypes.CDLL(None, use_errno=True)
    attr = frame_attr(prog_fd)
    attr_ref, attr_size = ctypes.byref(attr), ctypes.sizeof(attr)
    runs_per_s = rate / EVENTS_PER_RUN
    max_due = max(1, int(runs_per_s * STEP_S * MAX_STEP_BURST))
    syscall, monotonic, sleep = libc.syscall, time.monotonic, time.sleep
    ready.set()
    go.wait()
    cpu0 = time.process_time()
    start = monotonic()
    end = start + seconds
    scheduled = 0  # runs the schedule has asked for so far, minus skipped ones
    done = 0
    while (now := monotonic()) < end:
        due = int((now - start) * runs_per_s) - scheduled
        if due > max_due:
            scheduled += due - max_due
            due = max_due
        if due > 0:
            attr.repeat = due
            if syscall(NR_BPF, BPF_PROG_TEST_RUN, attr_ref, attr_size) != 0:
                raise OSError(ctypes.get_errno(), "BPF_PROG_TEST_RUN failed")
            scheduled += due
            done += due
        now = monotonic()
        pause = STEP_S - (now - start) % STEP_S  # to the next step's start
        if now + pause < end:
            sleep(pause)
    runs_out.value = done
    cpu_out.value = (time.process_time() - cpu0) / (monotonic() - start)


def set_priority(nice: int) -> int:
    """Give this process (and its session's autogroup) niceness ``nice``; returns the previous one.

    With CONFIG_SCHED_AUTOGROUP the scheduler shares a CPU between sessions first, so a process's
    own niceness only matters inside its session: the autogroup's niceness is what counts against
    the machine's other work.
    """
    previous = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        with open("/proc/self/autogroup") as fh:  # "/autogroup-123 nice 0"
            previous = int(fh.read().split()[-1])
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(nice))
    except (OSError, ValueError):
        pass  # no autogroups: the process's niceness is all there is
    return previous


def payments_resolver() -> StaticResolver:
    """frontend, api and postgres in namespace payments, their veths, and the api-allow policy."""
    resolver = StaticResolver()
    pods = (("frontend", 11, 1001, "10.200.0.1", 101), ("api", 12, 1002, "10.200.0.2", 102))
    pods += (("postgres", 13, 1003, "10.200.0.3", 103),)
    for name, ep_id, identity, ip, ifindex in pods:
        resolver.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=f"{name}-7d4b9c6f5-x2k8p",
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                workloads=((name, "Deployment"),),
                ips=(ip,),
            )
        )
        resolver.set_interface(ifindex, f"lxc{name}")
    policy = {
        "name": "api-allow",
        "namespace": "payments",
        "labels": ["k8s:policy=api-allow"],
        "revision": "1",
    }
    resolver.set_policy(POLICY_COOKIE, PolicyMatch(policies=(policy,)))
    return resolver


class _OpenedReader:
    """What DatapathFlowSource needs from a Datapath: open_monitor() on the generator's events map.

    The reader is opened up front, before the generator starts, so no event is emitted while the
    perf event array has no ring for a CPU (the kernel drops those without counting them as lost).
    """

    def __init__(self, map_fd: int, **reader_options: Any) -> None:
        self.reader = MonitorReader(map_fd, **reader_options)

    def open_monitor(self, **_agent_options: Any) -> MonitorReader:
        # The reader was opened with this row's options; the agent's own choice is ignored here.
        return self.reader


@dataclass
class PipelineResult:
    offered: float  # events/s the generator emitted
    received: float  # events/s read from the perf buffer
    flows: float  # flows/s published into the observer ring
    lost: int  # perf lost samples
    unread: int  # emitted but neither read nor reported lost when the source stopped
    parse_errors: int
    cpu_s: float  # pipeline process CPU time (user + system), drain after the generator included
    core_share: float  # CPU seconds per wall second while the generator ran
    sample_flow: dict | None
    metrics_cpu_s: float = 0.0  # CPU time spent counting (FlowMetrics.on_range)
    memory_per_slot: float = 0.0  # bytes per ring slot: columns + the raw bytes the slots keep alive
    drops_written: int = 0  # DROPPED flows that went into the ring (follower runs)
    follower_got: int = 0  # DROPPED flows a `--follow --verdict DROPPED` reader received
    follower_lost: int = 0  # entries the follower missed (sent to it as LostEvents)
    read_flows_per_cpu_s: float = 0.0  # an unfiltered reader decoding the full ring after the run
    read_json_per_cpu_s: float = 0.0  # ... and encoding each flow as its JSON line
    read_wire_per_cpu_s: float = 0.0  # ... or as its GetFlowsResponse protobuf bytes (upstream clients)
    generator_share: float = 0.0  # the generator's share of its core (CPU seconds per wall second)


class MixGenerator:
    """Compiles and loads the mixed-event tc program; run() drives it from its own process."""

    def __init__(self, nice: int = 0) -> None:
        self.nice = nice  # the generator's niceness (the pipeline's is its caller's business)
        self.program = MixProgram()
        self.prog_fd = self.program.prog_fd
        self.map_fd = self.program.map_fd
        cpus = sorted(os.sched_getaffinity(0))
        # with two CPUs or more: pipeline on the first, generator on the last, nothing shared
        self.pipeline_cpu = cpus[0] if len(cpus) > 1 else None
        self.generator_cpu = cpus[-1] if len(cpus) > 1 else None

    def run_pipeline(
        self,
        rate: float,
        seconds: float,
        metrics: str = "",
        lazy: bool = True,
        follower: bool = False,
        read_after: bool = False,
        capacity: int = DEFAULT_CAPACITY,
        **reader_options: Any,
    ) -> PipelineResult:
        """One run at ``rate`` offered events/s; ``reader_options`` go to MonitorReader (default: the agent's).

        ``metrics``: a ``--metrics`` value counted on the observer's flow batches, as the agent does.
        ``lazy``: raw samples into the ring, decoded when read (the agent's source); else decoded
        on the way in. ``follower``: a ``GetFlows --follow --verdict DROPPED`` reader runs in the
        same process meanwhile (the node's request path: column prefilter, decode, full filter).
        ``read_after``: time an unfiltered reader of the whole ring after the run. ``capacity``: the
        observer ring's slots (the node's ``--event-buffer-capacity``)."""
        ctx = mp.get_context("fork")
        ready, go, runs, gen_cpu = ctx.Event(), ctx.Event(), ctx.Value("q", 0), ctx.Value("d", 0.0)
        proc = ctx.Process(
            target=_generate_paced, args=(self.prog_fd, seconds, rate, self.nice, ready, go, runs, gen_cpu)
        )
        parser = Parser(payments_resolver(), "bench-node")
        observer = Observer("bench-node", capacity)
        flow_metrics = None
        if metrics:
            _, flow_metrics = build_node_metrics(observer, metrics, parser=parser)
        stop = threading.Event()

        during: list[float] = []  # (CPU, wall) seconds from go until the generator ended

        def stop_after_generator() -> None:
            proc.join()
            during.extend((time.process_time() - cpu0, time.monotonic() - wall0))
            time.sleep(DRAIN_GRACE_S)
            stop.set()

        proc.start()
        if self.generator_cpu is not None:
            os.sched_setaffinity(proc.pid, {self.generator_cpu})
        ready.wait()
        datapath = _OpenedReader(self.map_fd, **reader_options)  # after the fork: the child holds no ring
        source = DatapathFlowSource(datapath, parser, lazy=lazy)
        got = [0, 0]  # DROPPED flows the follower received, entries it lost
        follow_thread = None
        if follower:
            observer.use_parser(
                parser
            )  # as on a node whose source runs: the follower's request finds templates
            follow_thread = threading.Thread(target=_follow_drops, args=(observer, stop, got), daemon=True)
            follow_thread.start()
            time.sleep(0.05)  # let it take its place at the ring's end before the first event
        cpu0, wall0 = time.process_time(), time.monotonic()
        threading.Thread(target=stop_after_generator, daemon=True).start()
        go.set()
        source.run(observer, stop)  # read -> ring loop (decoding first unless lazy), then reader close
        if follow_thread is not None:
            follow_thread.join()
        cpu = time.process_time() - cpu0
        proc.join()
        reader = datapath.reader
        emitted = runs.value * EVENTS_PER_RUN
        ring = observer.flows
        drops_written = 0
        if follower and ring.next_seq:
            drops_written = _drops_written(observer, parser)
        read_rate = json_rate = wire_rate = 0.0
        if read_after and len(ring):
            read_rate, json_rate, wire_rate = _read_whole_ring(ring)
        last = None
        seq = ring.next_seq - 1
        while seq >= ring.oldest_seq and last is None:  # the newest flow (not a LostEvent)
            entry = ring.read(seq)[0]
            last = entry if entry is not None and entry.flow is not None else None
            seq -= 1
        memory = ring.memory_per_slot()
        observer.close()
        return PipelineResult(
            offered=emitted / seconds,
            received=reader.received / seconds,
            flows=observer.seen_flows / seconds,
            lost=reader.lost,
            unread=max(0, emitted - reader.received - reader.lost),
            parse_errors=parser.parse_errors,
            cpu_s=cpu,
            core_share=during[0] / during[1] if during and during[1] else 0.0,
            sample_flow=last.flow if last is not None else None,
            metrics_cpu_s=flow_metrics.count_cpu_s if flow_metrics is not None else 0.0,
            memory_per_slot=memory,
            drops_written=drops_written,
            follower_got=got[0],
            follower_lost=got[1],
            read_flows_per_cpu_s=read_rate,
            read_json_per_cpu_s=json_rate,
            read_wire_per_cpu_s=wire_rate,
            generator_share=gen_cpu.value,
        )

    def close(self) -> None:
        self.program.close()


def _follow_drops(observer: Observer, stop: threading.Event, got: list[int]) -> None:
    """``hubble observe --follow --verdict DROPPED`` as the node serves it on its h2 transport,
    counting what arrives: drops whose columns prove the match come as framed responses made from
    templates (counted as the scan reports them, ``Frames.messages``, and one handoff in CHECK_EVERY
    also by their gRPC prefixes, which must agree: the transport parses none), the others are
    decoded, tested and encoded.

    (Its modules are imported with this one: an import in the thread would hold the GIL for the
    first run's first ~100 ms, as a node's start does, not its steady state.)"""
    request = observer_pb2.GetFlowsRequest(follow=True)
    request.whitelist.add().verdict.append(2)  # DROPPED
    predicate = compile_request_filters(request)
    columns = compile_request_column_filter(request)
    exact = compile_request_exact_filter(request)
    frames = flow_templates(observer, predicate, columns, exact)
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    ring = observer.flows
    checked = 0
    for item in select_entries(ring, request, lambda: True, predicate, stop, False, columns, frames, exact):
        if type(item) is Frames:
            # the number of responses the scan says it framed; every CHECK_EVERY-th handoff is also
            # counted by its gRPC prefixes, and must agree (the transport itself never parses them)
            n = item.messages
            checked += 1
            if not n or checked % CHECK_EVERY == 1:
                counted = _count_frames(item)
                if n and n != counted:
                    raise AssertionError(f"Frames.messages {n} but {counted} messages framed")
                n = counted
            got[0] += n
        elif isinstance(item, int):
            got[1] += item
        elif item is not None and item.flow is not None:
            encoder.encode(item)  # what the node sends for it
            got[0] += 1


CHECK_EVERY = 16  # template handoffs per one whose messages the follower counts itself


def _count_frames(frames: bytes) -> int:
    """Messages in a run of gRPC-framed messages (5-byte prefix: flag, big-endian length)."""
    n = pos = 0
    end = len(frames)
    while pos < end:
        pos += 5 + int.from_bytes(frames[pos + 1 : pos + 5], "big")
        n += 1
    return n


def _drops_written(observer: Observer, parser: Parser) -> int:
    """How many DROPPED flows went into the ring: the mix has 4 in every 16 events."""
    del parser
    return observer.seen_flows * 4 // EVENTS_PER_RUN


def _read_whole_ring(ring: Any) -> tuple[float, float, float]:
    """Flows per CPU-second for the ring: decoded; decoded and JSON-encoded; decoded and encoded as
    GetFlowsResponse protobuf bytes (what the node sends an upstream client, on first read)."""
    from hubblepy.codec import encode

    seqs = list(range(ring.oldest_seq, ring.next_seq))
    cache = list(ring._cache)
    ring._cache[:] = [None] * len(ring._cache)  # decode everything again (the follower cached some)
    t0 = time.thread_time()
    got, _ = ring.read_many(seqs)
    decode_s = time.thread_time() - t0
    t0 = time.thread_time()
    for _, entry in got:
        encode(entry.response)
    encode_s = time.thread_time() - t0
    wire = ResponseEncoder(observer_pb2.GetFlowsResponse)
    t0 = time.thread_time()
    for _, entry in got:
        wire.encode(entry)
    wire_s = time.thread_time() - t0
    ring._cache[:] = cache
    n = len(got)

    def rate(seconds: float) -> float:
        return n / seconds if seconds else 0.0

    return rate(decode_s), rate(decode_s + encode_s), rate(decode_s + wire_s)


GC_THRESHOLD_TRIED = (50_000, 20, 100)  # fewer young-generation collections than CPython's (700, 10, 10)
NODE_GC_THRESHOLD = GC_THRESHOLD_TRIED  # hubblepy.lab.node.tune_gc_for_flows
AGENT_PAGES = DEFAULT_NUM_PAGES  # the node's --monitor-num-pages default


def reader_options(pages: int) -> dict[str, Any]:
    """The node's reader settings with ``pages`` per CPU (the wakeup count follows the size)."""
    return {"pages": pages, "wakeup_events": DatapathFlowSource.lazy_wakeup_events(pages)}


AGENT_READER = reader_options(AGENT_PAGES)
LAZY_READER = AGENT_READER  # the follower rows


def _pages_text(pages: int) -> str:
    size = ring_bytes_per_cpu(pages) - ring_bytes_per_cpu(0)
    return f"{pages} pages/CPU ({size / (1 << 20):g} MiB per CPU)"


def reader_settings(pages_list: list[int]) -> list[tuple[str, dict[str, Any], tuple[int, int, int] | None]]:
    """One lazy row per perf ring size (the node's default marked), then the eager path of before."""
    rows: list[tuple[str, dict[str, Any], tuple[int, int, int] | None]] = []
    for pages in pages_list:
        options = reader_options(pages)
        which = "the node's default, " if pages == AGENT_PAGES else ""
        rows.append(
            (
                f"raw samples into the ring, decoded when read (DatapathFlowSource), --monitor-num-pages {pages}: "
                f"{which}{_pages_text(pages)}, wakeup every {options['wakeup_events']} samples",
                {"lazy": True, **options},
                None,
            )
        )
    rows.append(
        (
            f"decoded on the way in (Parser.decode_batch, before issue 14), 256 pages/CPU, gc.set_threshold"
            f"{GC_THRESHOLD_TRIED}",
            {"lazy": False, "pages": 256},
            GC_THRESHOLD_TRIED,
        )
    )
    return rows


DEFAULT_PAGES_ROWS = (1024, AGENT_PAGES)
TABLES = ("pipeline", "follower", "metrics")
EAGER_MAX_RATE = 400_000  # the eager row stops here: it loses samples far below
DEFAULT_NICE = -10


def bench_pipeline(
    seconds: float,
    rates: list[float],
    metrics_only: bool = False,
    nice: int = DEFAULT_NICE,
    pages: list[int] | None = None,
    tables: tuple[str, ...] = TABLES,
) -> None:
    """Prints one row per reader setting and offered rate, and the highest offered rate with 0 loss;
    then the follower table (``--follow --verdict DROPPED`` beside the pipeline) and the metrics table.
    ``pages``: the perf ring sizes of the lazy rows (default: 1024 and the node's default);
    ``tables``: which of ``pipeline``, ``follower``, ``metrics`` to run."""
    if metrics_only:
        tables = ("metrics",)
    gen = MixGenerator(nice)
    saved_affinity = os.sched_getaffinity(0)
    saved_gc = gc.get_threshold()
    saved_nice = set_priority(nice) if nice else None
    if gen.pipeline_cpu is not None:
        os.sched_setaffinity(0, {gen.pipeline_cpu})
    pinning = (
        f"pipeline pinned to CPU {gen.pipeline_cpu}, generator to CPU {gen.generator_cpu}"
        if gen.pipeline_cpu is not None
        else "one CPU: pipeline and generator share it"
    )
    print(
        "\npipeline: perf buffer -> Observer ring, one process (DatapathFlowSource with a StaticResolver);\n"
        f"  trace/drop/policy-verdict 8:4:4 with 128 packet bytes, emitted in the kernel by BPF_PROG_TEST_RUN "
        f"(one call per {STEP_S * 1000:.0f} ms step), {seconds:.0f}s per rate;\n  {pinning}, both at nice {nice}; "
        f"load average before: {_load()}\n"
        "  offered: events/s the generator emitted; ingested: flows/s written into the ring; lost: perf\n"
        "  lost samples; unread: emitted but neither read nor reported lost; CPU: the pipeline's share of one core"
    )
    sample = None
    try:
        settings = reader_settings(list(pages or DEFAULT_PAGES_ROWS)) if "pipeline" in tables else []
        for title, options, gc_threshold in settings:
            print(f"  {title}")
            gc.set_threshold(*(gc_threshold or saved_gc))
            print(
                f"    {'offered/s':>10} {'ingested/s':>11} {'lost':>8} {'unread':>7} "
                f"{'CPU':>5} {'events per pipeline CPU-s':>26} {'bytes/slot':>10} {'generator CPU':>13}"
            )
            best: PipelineResult | None = None
            for rate in rates:
                if not options.get("lazy") and rate > EAGER_MAX_RATE:
                    continue
                r = gen.run_pipeline(rate, seconds, **options)
                sample = r.sample_flow or sample
                per_cpu = r.received * seconds / r.cpu_s if r.cpu_s else 0.0  # received is per second
                errors = f"  ({r.parse_errors} parse errors)" if r.parse_errors else ""
                print(
                    f"    {r.offered:>10,.0f} {r.flows:>11,.0f} {r.lost:>8,} {r.unread:>7,} "
                    f"{100 * r.core_share:>4.0f}% {per_cpu:>26,.0f} {r.memory_per_slot:>10,.0f}"
                    f" {100 * r.generator_share:>12.0f}%{errors}"
                )
                if r.lost == 0 and r.unread == 0 and (best is None or r.offered > best.offered):
                    best = r
            if best is None:
                print("    highest offered rate with 0 loss: none of the rates tried")
            else:
                print(
                    f"    highest offered rate with 0 loss: {best.offered:,.0f} events/s "
                    f"({best.flows:,.0f} flows/s into the ring, {100 * best.core_share:.0f}% of one core)"
                )
        if "follower" in tables:
            bench_follower(gen, seconds, rates)
            gc.set_threshold(*saved_gc)
        if "metrics" in tables:
            bench_metrics(gen, seconds, rates)  # metrics count raw batches: every rate, like the lazy rows
    finally:
        gen.close()
        os.sched_setaffinity(0, saved_affinity)
        gc.set_threshold(*saved_gc)
        if saved_nice is not None:
            set_priority(saved_nice)
    print(f"  load average after: {_load()}")
    if sample is not None:
        src, dst = sample.get("source", {}), sample.get("destination", {})
        print(
            f"  a flow from the ring: {src.get('namespace')}/{src.get('pod_name')} -> {dst.get('namespace')}/"
            f"{dst.get('pod_name')} {sample.get('verdict')} {sample.get('Summary', '')}"
        )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def bench_follower(gen: MixGenerator, seconds: float, rates: list[float]) -> None:
    """The lazy pipeline with a `--follow --verdict DROPPED` reader in the same process, per rate;
    and an unfiltered reader of the whole ring after each run (decode side)."""
    gc.set_threshold(*NODE_GC_THRESHOLD)
    print(
        f"  raw samples into a {MAX_CAPACITY}-slot ring ({_pages_text(LAZY_READER['pages'])}, wakeup "
        f"{LAZY_READER['wakeup_events']}) with a `GetFlows --follow --verdict DROPPED` reader\n"
        "  in the same process, as the node serves it on its h2 transport (column prefilter on batches; drops"
        " whose columns prove the match\n  as framed responses from wire templates, the other candidates decoded,"
        " tested and encoded), node gc threshold;\n  follower drops/s: DROPPED flows it received per second"
        " (all of them: 'drops in ring' / seconds); lapped: entries the writer\n  overwrote before the follower"
        " read them (sent to it as LostEvents); then an unfiltered reader decodes the whole ring\n  (flows per"
        " reader CPU-second, to response dicts, to JSON lines and to protobuf bytes)"
    )
    print(
        f"    {'offered/s':>10} {'ingested/s':>11} {'lost':>8} {'CPU':>5} {'drops in ring':>13} "
        f"{'follower drops/s':>16} {'lapped':>10} {'unfiltered read/CPU-s':>22} {'+JSON/CPU-s':>12}"
        f" {'+protobuf/CPU-s':>16}"
    )
    best: PipelineResult | None = None
    for rate in rates:
        r = gen.run_pipeline(
            rate, seconds, follower=True, read_after=True, capacity=MAX_CAPACITY, **LAZY_READER
        )
        lapped = f"{r.follower_lost:,}" if r.follower_lost else "no"
        print(
            f"    {r.offered:>10,.0f} {r.flows:>11,.0f} {r.lost:>8,} {100 * r.core_share:>4.0f}% "
            f"{r.drops_written:>13,} {r.follower_got / seconds:>16,.0f} {lapped:>10} "
            f"{r.read_flows_per_cpu_s:>22,.0f} {r.read_json_per_cpu_s:>12,.0f} {r.read_wire_per_cpu_s:>16,.0f}"
        )
        kept_up = r.lost == 0 and r.unread == 0 and r.follower_lost == 0 and r.follower_got == r.drops_written
        if kept_up and (best is None or r.offered > best.offered):
            best = r
    if best is None:
        print(
            "    highest offered rate the follower kept up with (0 loss, not lapped): none of the rates tried"
        )
    else:
        print(
            f"    highest offered rate the follower kept up with (0 loss, not lapped): {best.offered:,.0f} events/s "
            f"({best.follower_got / seconds:,.0f} drops/s to the follower)"
        )


CONTEXTS = "sourceContext=namespace;destinationContext=namespace"
METRICS_ROWS = (
    ("off", ""),
    ("lab", DEFAULT_LAB_METRICS),
    ("all", ALL_FAMILIES),
    ("all+ctx", " ".join(f"{name}:{CONTEXTS}" for name in ALL_FAMILIES.split())),
)


def bench_metrics(gen: MixGenerator, seconds: float, rates: list[float]) -> None:
    """Lab agent settings with the metric families off / all on / all on with contexts, per rate."""
    gc.set_threshold(*GC_THRESHOLD_TRIED)
    print(
        "  raw samples into the ring (metrics count each batch by sample key, decoding one sample per new key),\n"
        f"  the agent's reader ({AGENT_READER['pages']} pages/CPU, wakeup {AGENT_READER['wakeup_events']}), "
        "lab gc threshold;\n"
        "  Hubble metrics off, the lab's default "
        f"({DEFAULT_LAB_METRICS}),\n  all families ({ALL_FAMILIES}), and all with {CONTEXTS}"
    )
    print(
        f"    {'metrics':>8} {'offered/s':>10} {'received/s':>11} {'flows/s':>10} {'lost':>7} {'unread':>7} "
        f"{'CPU':>5} {'events per pipeline CPU-s':>26} {'metrics share of CPU':>21} {'metrics ns/flow':>16}"
    )
    best: dict[str, PipelineResult] = {}
    for rate in rates:
        for name, metrics in METRICS_ROWS:
            r = gen.run_pipeline(rate, seconds, metrics=metrics, **AGENT_READER)
            per_cpu = r.received * seconds / r.cpu_s if r.cpu_s else 0.0
            share = 100 * r.metrics_cpu_s / r.cpu_s if r.cpu_s else 0.0
            per_flow = 1e9 * r.metrics_cpu_s / (r.flows * seconds) if r.flows else 0.0
            print(
                f"    {name:>8} {r.offered:>10,.0f} {r.received:>11,.0f} {r.flows:>10,.0f} {r.lost:>7,} "
                f"{r.unread:>7,} {100 * r.core_share:>4.0f}% {per_cpu:>26,.0f} {share:>20.1f}% {per_flow:>16,.0f}"
            )
            if r.lost == 0 and r.unread == 0 and (name not in best or r.offered > best[name].offered):
                best[name] = r
    for name, _ in METRICS_ROWS:
        r = best.get(name)
        text = (
            f"{r.offered:,.0f} events/s ({100 * r.core_share:.0f}% of one core)" if r else "none of the rates"
        )
        print(f"    highest offered rate with 0 loss, metrics {name}: {text}")
