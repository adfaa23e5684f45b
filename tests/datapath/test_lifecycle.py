"""Datapath lifecycle: monitor aggregation, detach on close, crash recovery, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testbed import Testbed, echo_once

from hubblepy.datapath import Datapath
from hubblepy.datapath.layout import CT_ESTABLISHED, CT_REPLY, TraceEvent

from .conftest import Env, require_datapath
from .packets import TCP_FIN, TCP_RST, TCP_SYN, parse

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def _exchange(env: Env, rounds: int) -> None:
    env.tb.echo_server(env.p2, 8080)
    conn = env.tb.connect(env.p1, env.p2, 8080)
    assert conn is not None
    for i in range(rounds):
        assert echo_once(conn, b"message %d" % i)
    conn.close()


def _data_traces(events: list) -> list[TraceEvent]:
    """Trace events of packets that carry payload and no SYN/FIN/RST."""
    out = []
    for e in events:
        if isinstance(e, TraceEvent) and e.reason in (CT_ESTABLISHED, CT_REPLY):
            pkt = parse(e.packet)
            if (
                pkt is not None
                and 8080 in (pkt.sport, pkt.dport)
                and pkt.payload_len > 0
                and not pkt.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)
            ):
                out.append(e)
    return out


def test_medium_aggregation_traces_only_new_connections_and_flag_changes(env: Env) -> None:
    assert env.dp.monitor_aggregation == "medium"
    _exchange(env, 10)
    events = env.events(wait=0.5)
    assert _data_traces(events) == []
    flags_seen = {
        parse(e.packet).tcp_flags & (TCP_SYN | TCP_FIN) for e in events if isinstance(e, TraceEvent)
    }
    assert {TCP_SYN, TCP_FIN} <= {f for f in flags_seen if f}


def test_no_aggregation_traces_every_packet(env: Env) -> None:
    env.dp.set_monitor_aggregation("none")
    _exchange(env, 10)
    events = env.events(until=lambda ev: len(_data_traces(ev)) >= 40, wait=3)
    # 10 requests + 10 responses, each seen on the sender's and the receiver's veth
    assert len(_data_traces(events)) >= 40


def test_bad_aggregation_level_is_one_clear_error(env: Env) -> None:
    with pytest.raises(ValueError, match="monitor aggregation must be one of none, medium"):
        env.dp.set_monitor_aggregation("maximum")


def test_close_leaves_no_qdisc_or_filter() -> None:
    require_datapath()
    with Testbed(2) as tb:
        dp = Datapath()
        for pod in tb.pods:
            dp.attach(pod.host_ifname, netns=tb.node)
        assert all("clsact" in tb.tc_show(p) and "hubblepy:" in tb.tc_show(p) for p in tb.pods)
        dp.close()
        dp.close()  # twice is fine
        for pod in tb.pods:
            shown = tb.tc_show(pod)
            assert "clsact" not in shown and "bpf" not in shown
    assert not tb.exists()


def test_cleanup_stale_removes_filters_left_by_a_killed_process() -> None:
    require_datapath()
    with Testbed(1) as tb:
        pod = tb.pods[0]
        script = textwrap.dedent(
            f"""
            import os, sys
            from hubblepy.datapath import Datapath
            dp = Datapath()
            dp.attach({pod.host_ifname!r}, netns={tb.node!r})
            print("attached", flush=True)
            sys.stdin.read()
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "attached"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "hubblepy:" in tb.tc_show(pod)  # the filters outlived their process

        assert Datapath.cleanup_stale(tb.tag, netns=tb.node) == [pod.host_ifname]
        assert "clsact" not in tb.tc_show(pod)
        assert Datapath.cleanup_stale(tb.tag, netns=tb.node) == []


def test_without_root_datapath_says_so_in_one_line() -> None:
    require_datapath()
    code = (
        "from hubblepy.datapath import Datapath, DatapathUnavailable\n"
        "try:\n    Datapath()\nexcept DatapathUnavailable as e:\n    print(e)\n"
    )
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.stderr == ""
    assert res.stdout.splitlines() == ["eBPF datapath needs root (CAP_BPF and CAP_NET_ADMIN): run as root"]
