"""Three worked examples (drop, trace, policy verdict samples), byte for byte, and with packets."""

from __future__ import annotations

import re

import orjson

from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser import encode as enc

NOW_NS = 1709251018592508929
NOW_TEXT = "2024-02-29T23:56:58.592508929Z"

TRACE_V2 = bytes.fromhex(
    "04 05 d2 04 ef be ad de 62 00 00 00 62 00 02 00 39 30 00 00 02 00 00 00 00 00 00 00 07 00 00 00"
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
)
DROP_V3 = bytes.fromhex(
    "01 85 d2 04 ef be ad de 62 00 00 00 62 00 03 00 39 30 00 00 02 00 00 00 00 00 00 00 d2 04 02 00"
    "07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
)
POLICY_VERDICT = bytes.fromhex(
    "05 00 d2 04 ef be ad de 4a 00 00 00 4a 00 01 00 02 00 00 00 7b ff ff ff 50 00 06 12 00 00 00 00"
    "00 00 00 00 00 00 00 00"
)
POD_LABELS = (
    "k8s:app=frontend",
    "k8s:io.cilium.k8s.policy.cluster=default",
    "k8s:io.kubernetes.pod.namespace=payments",
)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def make_parser() -> Parser:
    resolver = StaticResolver()
    resolver.add_endpoint(
        EndpointInfo(
            id=1234,
            identity=12345,
            namespace="payments",
            pod_name="frontend-1",
            labels=POD_LABELS,
            workloads=(("frontend", "Deployment"),),
            ips=("10.244.1.10",),
        )
    )
    resolver.set_interface(7, "lxc1234")
    return Parser(resolver, "node-a", emitter_version="1.19.4")


def with_packet(header: bytes, packet: bytes) -> bytes:
    """Replace the lengths of a worked-example header with those of ``packet`` and append it."""
    head = bytearray(header)
    head[8:12] = len(packet).to_bytes(4, "little")
    head[12:14] = len(packet).to_bytes(2, "little")
    return bytes(head) + packet


def test_trace_v2_example_header_only() -> None:
    parser = make_parser()
    flow = parser.decode(3, TRACE_V2, NOW_NS)
    assert flow is not None
    assert UUID_RE.match(flow.pop("uuid"))
    # len_cap says 98 bytes but none are attached: no ethernet/IP/l4/Summary; identities still resolve.
    assert flow == {
        "time": NOW_TEXT,
        "emitter": {"name": "Hubble", "version": "1.19.4"},
        "verdict": "FORWARDED",
        "source": {
            "identity": 12345,
            "cluster_name": "default",
            "labels": list(POD_LABELS),
        },
        "destination": {"identity": 2, "labels": ["reserved:world"]},
        "Type": "L3_L4",
        "node_name": "node-a",
        "event_type": {"type": 4, "sub_type": 5},
        "traffic_direction": "INGRESS",
        "trace_observation_point": "FROM_ENDPOINT",
        "trace_reason": "NEW",
        "is_reply": False,
        "interface": {"index": 7, "name": "lxc1234"},
    }
    assert parser.parse_errors == 0


def test_trace_v2_example_with_packet_resolves_local_endpoint() -> None:
    parser = make_parser()
    packet = enc.ethernet(enc.ipv4("10.244.1.10", "1.1.1.1", 6, enc.tcp(40000, 443, enc.TCP_SYN)))
    flow = parser.decode(0, with_packet(TRACE_V2, packet), NOW_NS)
    assert flow is not None
    assert flow["IP"] == {"source": "10.244.1.10", "destination": "1.1.1.1", "ipVersion": "IPv4"}
    assert flow["l4"] == {"TCP": {"source_port": 40000, "destination_port": 443, "flags": {"SYN": True}}}
    assert flow["source"]["ID"] == 1234
    assert flow["source"]["pod_name"] == "frontend-1"
    assert flow["source"]["workloads"] == [{"name": "frontend", "kind": "Deployment"}]
    # source 1234 == source endpoint ID and not a reply: egress.
    assert flow["traffic_direction"] == "EGRESS"
    assert flow["Summary"] == "TCP Flags: SYN"
    assert list(flow)[:8] == ["time", "uuid", "emitter", "verdict", "ethernet", "IP", "l4", "source"]


def test_drop_v3_example() -> None:
    parser = make_parser()
    flow = parser.decode(0, DROP_V3, NOW_NS)
    assert flow is not None
    del flow["uuid"]
    assert flow == {
        "time": NOW_TEXT,
        "emitter": {"name": "Hubble", "version": "1.19.4"},
        "verdict": "DROPPED",
        "drop_reason": 133,
        "source": {"identity": 12345, "cluster_name": "default", "labels": list(POD_LABELS)},
        "destination": {"identity": 2, "labels": ["reserved:world"]},
        "Type": "L3_L4",
        "node_name": "node-a",
        "event_type": {"type": 1, "sub_type": 133},
        "traffic_direction": "INGRESS",
        "file": {"name": "bpf_lxc.c", "line": 1234},
        "drop_reason_desc": "POLICY_DENIED",
    }


def test_drop_v3_example_with_packet_is_egress_without_interface() -> None:
    parser = make_parser()
    packet = enc.ethernet(enc.ipv4("10.244.1.10", "1.1.1.1", 17, enc.udp(5353, 53)))
    flow = parser.decode(0, with_packet(DROP_V3, packet), NOW_NS)
    assert flow is not None
    assert flow["traffic_direction"] == "EGRESS"
    assert "interface" not in flow  # Hubble does not set the interface of drops
    assert "is_reply" not in flow  # unknown for drops
    assert flow["Summary"] == "UDP"


def test_policy_verdict_example() -> None:
    parser = make_parser()
    flow = parser.decode(0, POLICY_VERDICT, NOW_NS)
    assert flow is not None
    del flow["uuid"]
    assert flow == {
        "time": NOW_TEXT,
        "emitter": {"name": "Hubble", "version": "1.19.4"},
        "verdict": "DROPPED",
        "drop_reason": 133,
        "source": {},
        "destination": {"identity": 2, "labels": ["reserved:world"]},
        "Type": "L3_L4",
        "node_name": "node-a",
        "event_type": {"type": 5},
        "traffic_direction": "EGRESS",
        "policy_match_type": 2,
        "drop_reason_desc": "POLICY_DENIED",
    }


def test_policy_verdict_example_with_packet() -> None:
    parser = make_parser()
    packet = enc.ethernet(enc.ipv4("10.244.1.10", "93.184.216.34", 6, enc.tcp(41000, 80, enc.TCP_SYN)))
    flow = parser.decode(0, with_packet(POLICY_VERDICT, packet), NOW_NS)
    assert flow is not None
    assert flow["source"]["ID"] == 1234
    assert flow["source"]["identity"] == 12345  # datapath identity 0 -> the endpoint's own
    assert flow["destination"] == {"identity": 2, "labels": ["reserved:world"]}
    assert flow["Summary"] == "TCP Flags: SYN"
    assert "is_reply" not in flow  # denied verdicts leave is_reply unknown


def test_examples_serialise_like_hubble_json() -> None:
    parser = make_parser()
    flows = parser.decode_batch([(0, TRACE_V2), (1, DROP_V3), (0, POLICY_VERDICT)], NOW_NS)
    assert len(flows) == 3
    assert len({f["uuid"] for f in flows}) == 3
    line = orjson.dumps(flows[0]).decode()
    assert line.startswith('{"time":"2024-02-29T23:56:58.592508929Z","uuid":"')
    assert '"emitter":{"name":"Hubble","version":"1.19.4"},"verdict":"FORWARDED","source"' in line
