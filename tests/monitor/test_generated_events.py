"""Datapath events emitted in the kernel (BPF_PROG_TEST_RUN) through a real perf buffer into the
observer ring with the agent's lazy reader settings; a ``--verdict DROPPED`` reader decodes only
the drops."""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.lab.source import DatapathFlowSource
from hubblepy.monitor import MonitorReader
from hubblepy.monitor.generator import EVENTS_PER_RUN, MixProgram, run_program
from hubblepy.observer.core import Observer
from hubblepy.observer.service import compile_request_column_filter, compile_request_filters, select_entries
from hubblepy.parser import EndpointInfo, Parser, StaticResolver

RUNS = 64  # 1024 events, about 200 KiB of samples: they fit the 128-page rings below unread


def test_lazy_wakeup_count_is_the_agents_unless_the_ring_is_small() -> None:
    big = DatapathFlowSource.LAZY_RING_PAGES
    assert DatapathFlowSource.lazy_wakeup_events(big) == DatapathFlowSource.LAZY_WAKEUP_EVENTS
    # a small ring wakes the reader while at most a quarter of it holds 256-byte samples
    assert DatapathFlowSource.lazy_wakeup_events(8) == 8 * mmap.PAGESIZE // 1024
    assert DatapathFlowSource.lazy_wakeup_events(1) == max(1, mmap.PAGESIZE // 1024)


class _OpensOnce:
    """The part of a Datapath that DatapathFlowSource uses: open_monitor() on the program's map."""

    def __init__(self, map_fd: int) -> None:
        self.map_fd = map_fd
        self.options: dict[str, Any] = {}
        self.reader: MonitorReader | None = None
        self.opened = threading.Event()

    def open_monitor(self, **options: Any) -> MonitorReader:
        self.options = options
        self.reader = MonitorReader(self.map_fd, **options)
        self.opened.set()
        return self.reader


def _resolver() -> StaticResolver:
    resolver = StaticResolver()
    for name, ep_id, identity, ip in (("frontend", 11, 1001, "10.200.0.1"), ("api", 12, 1002, "10.200.0.2")):
        resolver.add_endpoint(
            EndpointInfo(
                id=ep_id,
                identity=identity,
                namespace="payments",
                pod_name=name,
                labels=(f"k8s:app={name}", "k8s:io.kubernetes.pod.namespace=payments"),
                ips=(ip,),
            )
        )
    return resolver


@pytest.fixture
def program() -> Iterator[MixProgram]:
    try:
        prog = MixProgram()
    except Exception as exc:  # no bcc, no BPF: the kernel or the environment cannot run this
        pytest.skip(f"cannot load the generator program: {exc}")
    with prog:
        yield prog


@pytest.mark.root
def test_kernel_generated_events_reach_the_ring_whole_and_drops_decode_alone(program: MixProgram) -> None:
    datapath = _OpensOnce(program.map_fd)
    observer = Observer("node-1")
    source = DatapathFlowSource(datapath, Parser(_resolver(), "node-1"), read_timeout=0.02, pages=128)
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(observer, stop), daemon=True)
    thread.start()
    try:
        assert datapath.opened.wait(10), "the source did not open its reader"
        assert datapath.options == {"pages": 128, "wakeup_events": DatapathFlowSource.lazy_wakeup_events(128)}
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(saved)})  # one CPU's ring: the ring's order is the runs' order
        try:
            run_program(program.prog_fd, RUNS)  # every ring is open: no sample goes unrecorded
        finally:
            os.sched_setaffinity(0, saved)
        deadline = time.monotonic() + 30
        while observer.seen_flows < RUNS * EVENTS_PER_RUN and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    reader = datapath.reader
    assert reader is not None
    assert (reader.received, reader.lost, source.lost) == (RUNS * EVENTS_PER_RUN, 0, 0)
    assert observer.seen_flows == source.published == RUNS * EVENTS_PER_RUN
    ring = observer.flows
    # before a reader asks, only the first sample of each new namespace key was decoded (for the
    # node's namespace list): all of them in the first program run, none after
    decoded_before = {hit[0] for hit in ring._cache if hit is not None}
    assert decoded_before and max(decoded_before) < EVENTS_PER_RUN

    request = observer_pb2.GetFlowsRequest(first=True)
    request.whitelist.add().verdict.append(2)  # DROPPED
    columns = compile_request_column_filter(request)
    assert columns is not None
    items = list(
        select_entries(ring, request, lambda: True, compile_request_filters(request), None, False, columns)
    )
    drops = [item for item in items if not isinstance(item, int) and item is not None]
    assert len(drops) == len(items) == RUNS * 4
    assert {
        (f["verdict"], f["drop_reason_desc"], f["source"]["pod_name"]) for f in (e.flow for e in drops)
    } == {("DROPPED", "POLICY_DENIED", "frontend")}
    assert {e.flow["l4"]["TCP"]["destination_port"] for e in drops} == {8080}
    # the column filter kept every other event undecoded: what was decoded since is the drops
    decoded = {hit[0]: hit[1] for hit in ring._cache if hit is not None}
    drop_seqs = {seq for seq, entry in decoded.items() if entry is not None and entry in drops}
    assert len(drop_seqs) == RUNS * 4
    assert set(decoded) - decoded_before == drop_seqs - decoded_before

    everything = observer_pb2.GetFlowsRequest(first=True)
    flows = [item.flow for item in select_entries(ring, everything, lambda: True) if item is not None]
    verdicts = [f["verdict"] for f in flows]
    assert len(flows) == RUNS * EVENTS_PER_RUN
    assert verdicts.count("DROPPED") == RUNS * 4
    assert verdicts.count("FORWARDED") == RUNS * 12
    assert len({f["uuid"] for f in flows}) == len(flows)
