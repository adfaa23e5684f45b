"""`hubble agent --replay FILE --metrics ...`: served counts equal counts made with `observe --input-file`."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from agentproc import Agent, free_port, scrape
from hubbletest import FIXTURES, REPO_ROOT, run_hubble

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"
L7_PROTOCOLS = {"HTTP", "DNS"}


def observe_count(path: Path, *filters: str) -> int:
    result = run_hubble(["observe", "--input-file", str(path), "-o", "json", *filters])
    assert result.returncode == 0, result.stderr.decode()
    return sum(1 for line in result.stdout.splitlines() if "flow" in json.loads(line))


def protocol_filters(protocol: str, typed: bool = False) -> list[str]:
    """observe filters selecting upstream's FlowProtocol value (one deny filter: --not fields AND).

    ``typed``: the caller adds its own --type filter (values of one field are OR-ed)."""
    l4_types = (
        []
        if typed
        else ["--type", "drop", "--type", "trace", "--type", "policy-verdict", "--type", "capture"]
    )
    if protocol == "Unknown flow":  # an event type without an L4/L7 protocol (e.g. trace-sock)
        return []
    if protocol == "Unknown L7":
        return ["--type", "l7", "--not", "--protocol", "http", "--not", "--protocol", "dns"]
    if protocol == "Unknown L4":
        known = ("tcp", "udp", "icmpv4", "icmpv6", "sctp")
        return [*l4_types, *[a for p in known for a in ("--not", "--protocol", p)]]
    if protocol in L7_PROTOCOLS:
        return ["--type", "l7", "--protocol", protocol.lower()]
    return [*l4_types, "--protocol", protocol.lower()]


def flows_in(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip() and "flow" in json.loads(line))


def replay_files() -> list[Path]:
    files = [SAMPLE]
    upstream = FIXTURES / "flows.jsonl"
    if upstream.exists():
        files.append(upstream)
    return files


@pytest.mark.parametrize("path", replay_files(), ids=lambda p: p.name)
def test_replayed_counts_match_observe_input_file(path: Path) -> None:
    agent = Agent(  # port 0: the kernel's free port (a port checked free could be taken meanwhile)
        "--node-name",
        "metrics-node",
        "--replay",
        str(path),
        "--replay-verbatim",
        "--rate",
        "0",
        "--metrics-server",
        "127.0.0.1:0",
        "--metrics",
        "drop,flow,policy",
        ready_line="metrics on",
    )
    try:
        ready = [line for line in agent.lines if "metrics on 127.0.0.1:" in line]
        assert ready, agent.lines
        port = int(ready[0].rsplit(":", 1)[1])
        total = flows_in(path)
        deadline = time.monotonic() + 60
        while True:
            samples = scrape(port)
            seen = samples["hubble_seen_flows_total"][0][1]
            if seen >= total or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen == total
    finally:
        agent.stop()

    checks: list[tuple[object, list[str], float]] = []  # (what, observe filters, served count)
    flows = samples["hubble_flows_processed_total"]
    assert sum(v for _, v in flows) == total
    for labels, v in flows:
        args = ["--verdict", labels["verdict"], *protocol_filters(labels["protocol"], typed=True)]
        kind = labels["type"]
        if kind == "Trace":
            args += ["--type", f"trace:{labels['subtype']}"]
        elif kind in ("Drop", "PolicyVerdict", "L7", "Capture"):
            args += ["--type", {"PolicyVerdict": "policy-verdict"}.get(kind, kind.lower())]
        else:  # "Unknown": the subtype is the event type number
            args += ["--type", labels["subtype"]]
        checks.append((labels, args, v))

    drops = samples["hubble_drop_total"]
    checks.append(("all drops", ["--verdict", "DROPPED"], sum(v for _, v in drops)))
    for labels, v in drops:
        args = [
            "--verdict",
            "DROPPED",
            "--drop-reason-desc",
            labels["reason"],
            *protocol_filters(labels["protocol"]),
        ]
        checks.append((labels, args, v))

    verdicts: dict[tuple[str, str, bool], float] = defaultdict(float)
    for labels, v in samples["hubble_policy_verdicts_total"]:
        verdicts[(labels["direction"], labels["action"], labels["match"].startswith("l7/"))] += v
    assert verdicts
    for (direction, action, l7), v in verdicts.items():
        args = ["--traffic-direction", direction, "--verdict", action.upper()]
        args += ["--type", "l7"] if l7 else ["--type", "policy-verdict", "--not", "--from-identity", "1"]
        checks.append(((direction, action, l7), args, v))

    with ThreadPoolExecutor(2) as pool:  # one `hubble observe --input-file` process per check
        counted = list(pool.map(lambda check: observe_count(path, *check[1]), checks))
    for (what, _, served), observed in zip(checks, counted, strict=True):
        assert observed == served, what


def test_unknown_metric_is_a_start_up_error() -> None:
    result = run_hubble(["agent", "--listen-address", "127.0.0.1:0", "--metrics", "drop,flows"], timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "hubble agent: unknown metric 'flows' (metrics: dns, drop, flow, flows-to-world, http, httpV2, icmp, "
        "policy, port-distribution, tcp)"
    ]
    result = run_hubble(
        ["agent", "--listen-address", "127.0.0.1:0", "--metrics", "drop:destinationContext=pods"], timeout=60
    )
    assert result.returncode == 1
    assert "unknown destinationContext 'pods'" in result.stderr.decode()


def test_empty_metrics_server_disables_the_endpoint() -> None:
    agent = Agent("--node-name", "n", "--metrics", "drop", "--metrics-server", "")
    try:
        time.sleep(0.3)
        assert not any("metrics on" in line for line in agent.lines)
        assert agent.popen.poll() is None
    finally:
        agent.stop()
    assert agent.popen.returncode == 0


def test_node_health_metrics_are_served() -> None:
    port = free_port()
    agent = Agent(
        "--node-name",
        "n",
        "--metrics",
        "flow",
        "--metrics-server",
        f"127.0.0.1:{port}",
        ready_line="metrics on",
    )
    try:
        samples = scrape(port)
    finally:
        agent.stop()
    lost = {labels["source"]: v for labels, v in samples["hubble_lost_events_total"]}
    assert lost == {"perf_event_ring_buffer": 0, "observer_events_queue": 0, "hubble_ring_buffer": 0}
    assert samples["hubble_ring_capacity"] == [({}, 4095.0)]
    assert samples["hubble_ring_flows"] == [({}, 0.0)]
    assert samples["hubble_ring_overwritten_total"] == [({}, 0.0)]
    assert re.match(r"hubble agent: node n listening on 127\.0\.0\.1:\d+", agent.lines[0])
