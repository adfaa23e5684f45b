"""Real eBPF: events from the project's tc programs, read from the perf ring, decoded into flows.

Two pods on the namespace testbed, the datapath attached to their veths, and real TCP traffic
between them. Every sample the ring hands over must decode without a parse error, and the flows
must carry the addresses, ports, flags, endpoints and verdicts of that traffic. Skipped (with the
reason) where root, bcc or kernel headers are missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from testbed import Testbed

from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment
from hubblepy.parser import EndpointInfo, Parser, StaticResolver

pytestmark = pytest.mark.root
IDENTITY_BASE = 2000


class Live:
    def __init__(self, tb: Testbed, dp: Datapath) -> None:
        self.tb, self.dp = tb, dp
        self.client, self.server = tb.pods
        self.reader = dp.open_monitor(pages=64)
        self.resolver = StaticResolver()
        for i, pod in enumerate(tb.pods, 1):
            labels = (f"k8s:app={pod.name}", "k8s:io.kubernetes.pod.namespace=live")
            self.resolver.set_identity(IDENTITY_BASE + i, labels)
            self.resolver.set_interface(pod.host_ifindex, pod.host_ifname)
            self.resolver.add_endpoint(
                EndpointInfo(
                    id=i,
                    identity=IDENTITY_BASE + i,
                    namespace="live",
                    pod_name=pod.name,
                    labels=labels,
                    ips=(pod.ip,),
                )
            )
        self.parser = Parser(self.resolver, "live-node")

    def flows(self, until, wait: float = 3.0) -> list[dict]:
        """Flows between the two pods decoded so far; reads until ``until(flows)`` or ``wait`` passes."""
        ips = {self.client.ip, self.server.ip}
        out: list[dict] = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            batch = self.reader.read(0.05)
            for flow in self.parser.decode_batch(batch.samples, time.time_ns()):
                ip = flow.get("IP", {})
                if ip.get("source") in ips and ip.get("destination") in ips:
                    out.append(flow)
            if until(out):
                break
        return out


@pytest.fixture
def live() -> Iterator[Live]:
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    tb = Testbed(2, prefix="hpp")
    dp = None
    env = None
    try:
        tb.up()
        dp = Datapath()
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, IDENTITY_BASE + i)
            dp.set_ipcache(f"{pod.ip}/32", IDENTITY_BASE + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        env = Live(tb, dp)
        yield env
    finally:
        if env is not None:
            env.reader.close()
        if dp is not None:
            dp.close()
        tb.down()


def test_allowed_connection_decodes_to_forwarded_flows(live: Live) -> None:
    live.tb.echo_server(live.server, 8080)
    sock = live.tb.connect(live.client, live.server, 8080)
    assert sock is not None
    sock.close()

    def has_syn_and_reply(flows: list[dict]) -> bool:
        summaries = {f.get("Summary") for f in flows}
        return "TCP Flags: SYN" in summaries and "TCP Flags: SYN, ACK" in summaries

    flows = live.flows(has_syn_and_reply)
    assert live.parser.parse_errors == 0, dict(live.parser.error_counts)
    syn = next(f for f in flows if f.get("Summary") == "TCP Flags: SYN" and f["event_type"]["type"] == 4)
    assert syn["verdict"] == "FORWARDED"
    assert syn["IP"] == {"source": live.client.ip, "destination": live.server.ip, "ipVersion": "IPv4"}
    assert syn["l4"]["TCP"]["destination_port"] == 8080
    assert syn["l4"]["TCP"]["flags"] == {"SYN": True}
    assert syn["source"]["pod_name"] == live.client.name and syn["source"]["ID"] == 1
    assert syn["destination"]["pod_name"] == live.server.name and syn["destination"]["ID"] == 2
    assert syn["source"]["identity"] == IDENTITY_BASE + 1
    assert syn["is_reply"] is False
    assert syn["interface"]["name"] in (live.client.host_ifname, live.server.host_ifname)
    assert syn["node_name"] == "live-node"
    synack = next(
        f for f in flows if f.get("Summary") == "TCP Flags: SYN, ACK" and f["event_type"]["type"] == 4
    )
    assert synack["IP"]["source"] == live.server.ip
    assert synack["is_reply"] is True


def test_denied_connection_decodes_to_policy_drop(live: Live) -> None:
    live.dp.set_enforcement(2, ingress=True)  # default deny on the server's ingress
    live.tb.echo_server(live.server, 8080)
    assert live.tb.connect(live.client, live.server, 8080, timeout=0.5) is None

    def has_drop_and_verdict(flows: list[dict]) -> bool:
        kinds = {f["event_type"]["type"] for f in flows}
        return {1, 5} <= kinds

    flows = live.flows(has_drop_and_verdict)
    assert live.parser.parse_errors == 0, dict(live.parser.error_counts)
    drop = next(f for f in flows if f["event_type"]["type"] == 1)
    assert (drop["verdict"], drop["drop_reason_desc"], drop["Summary"]) == (
        "DROPPED",
        "POLICY_DENIED",
        "TCP Flags: SYN",
    )
    assert drop["traffic_direction"] == "INGRESS"
    assert drop["destination"]["pod_name"] == live.server.name
    assert drop["file"]["name"]
    verdict = next(f for f in flows if f["event_type"]["type"] == 5)
    assert (verdict["verdict"], verdict["traffic_direction"]) == ("DROPPED", "INGRESS")
    assert verdict["source"]["identity"] == IDENTITY_BASE + 1
    assert verdict["destination"]["ID"] == 2
