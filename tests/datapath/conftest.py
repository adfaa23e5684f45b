"""Fixtures for real-eBPF datapath tests: a namespace testbed with the programs attached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from testbed import Pod, Testbed

from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment
from hubblepy.datapath.layout import Event, decode_event
from hubblepy.monitor import MonitorReader

from .packets import parse

IDENTITY_BASE = 1000


def require_datapath() -> None:
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class Env:
    tb: Testbed
    dp: Datapath
    reader: MonitorReader
    p1: Pod
    p2: Pod
    p3: Pod

    def identity(self, pod: Pod) -> int:
        return IDENTITY_BASE + self.tb.pods.index(pod) + 1

    def ep_id(self, pod: Pod) -> int:
        return self.tb.pods.index(pod) + 1

    def events(self, until: Callable[[list[Event]], bool] | None = None, wait: float = 2.0) -> list[Event]:
        """Decoded events read so far; keeps reading until ``until(events)`` holds or ``wait`` passes.

        Only events about packets between the test pods are kept: the namespaces' own multicast
        chatter (IGMP reports from 0.0.0.0 and the like) is not what the tests look at.
        """
        ips = {p.ip for p in self.tb.pods} | {p.ip6 for p in self.tb.pods if p.ip6}
        out: list[Event] = []
        deadline = time.monotonic() + wait
        while True:
            batch = self.reader.read(0.05)
            for _, raw in batch.samples:
                e = decode_event(raw)
                pkt = parse(e.packet) if e is not None else None
                if pkt is not None and pkt.src in ips and pkt.dst in ips:
                    out.append(e)
            if until is not None and until(out):
                return out
            if time.monotonic() > deadline:
                return out


@pytest.fixture(params=[False], ids=["ipv4"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    require_datapath()
    tb = Testbed(3, ipv6=request.param)
    dp = reader = None
    try:
        tb.up()
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, IDENTITY_BASE + i)
            dp.set_ipcache(f"{pod.ip}/32", IDENTITY_BASE + i)
            if pod.ip6:
                dp.set_ipcache(f"{pod.ip6}/128", IDENTITY_BASE + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        reader = dp.open_monitor(pages=64)
        yield Env(tb, dp, reader, *tb.pods)
    finally:
        if reader is not None:
            reader.close()
        if dp is not None:
            dp.close()
        tb.down()
