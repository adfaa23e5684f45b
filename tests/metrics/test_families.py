"""Metric families over crafted canonical flows: upstream's label values, options and contexts."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hubblepy.metrics import FlowMetrics, parse_metrics

FRONTEND = {
    "identity": 24810,
    "namespace": "payments",
    "labels": ["k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"],
    "pod_name": "frontend-7d9c5b8f6-x2k4p",
    "workloads": [{"name": "frontend", "kind": "Deployment"}],
}
API = {
    "identity": 31000,
    "namespace": "payments",
    "labels": ["k8s:app.kubernetes.io/name=api", "k8s:io.kubernetes.pod.namespace=payments"],
    "pod_name": "api-5c6d7-abcde",
}
WORLD = {"identity": 2, "labels": ["reserved:world"]}


def tcp_flow(verdict: str = "FORWARDED", etype: int = 4, sub: int = 0, **extra: Any) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "verdict": verdict,
        "IP": {"source": "10.0.0.1", "destination": "10.0.0.2", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": 8080, "flags": {"SYN": True}}},
        "source": FRONTEND,
        "destination": API,
        "event_type": {"type": etype, "sub_type": sub},
        "is_reply": False,
        "traffic_direction": "INGRESS",
    }
    flow.update(extra)
    return flow


def metrics(text: str, max_series: int = 5000) -> tuple[FlowMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return FlowMetrics(parse_metrics(text), registry, max_series), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_flow_family_types_and_subtypes() -> None:
    m, reg = metrics("flow")
    m.process(
        [
            tcp_flow(sub=0),
            tcp_flow(sub=5),
            tcp_flow(sub=5),
            tcp_flow("DROPPED", etype=1, drop_reason_desc="POLICY_DENIED"),
            tcp_flow("DROPPED", etype=5),
            {"event_type": {"type": 129}, "verdict": "FORWARDED", "l7": {"type": "REQUEST", "dns": {}}},
            {"event_type": {"type": 9}},
        ]
    )
    name = "hubble_flows_processed_total"
    assert value(reg, name, protocol="TCP", type="Trace", subtype="to-endpoint", verdict="FORWARDED") == 1
    assert value(reg, name, protocol="TCP", type="Trace", subtype="from-endpoint", verdict="FORWARDED") == 2
    assert value(reg, name, protocol="TCP", type="Drop", subtype="", verdict="DROPPED") == 1
    assert value(reg, name, protocol="TCP", type="PolicyVerdict", subtype="", verdict="DROPPED") == 1
    assert value(reg, name, protocol="DNS", type="L7", subtype="DNS", verdict="FORWARDED") == 1
    assert (
        value(reg, name, protocol="Unknown flow", type="Unknown", subtype="9", verdict="VERDICT_UNKNOWN") == 1
    )


def test_drop_and_policy_families() -> None:
    m, reg = metrics("drop:sourceContext=namespace policy")
    host = dict(tcp_flow("FORWARDED", etype=5, policy_match_type=2), source={"identity": 1})
    m.process(
        [
            tcp_flow("DROPPED", etype=1, drop_reason_desc="POLICY_DENIED"),
            tcp_flow("DROPPED", etype=5),
            tcp_flow("FORWARDED", etype=5, policy_match_type=2, traffic_direction="EGRESS"),
            tcp_flow("AUDIT", etype=5),
            host,
            {
                "event_type": {"type": 129},
                "verdict": "DROPPED",
                "traffic_direction": "INGRESS",
                "l7": {"http": {}},
            },
        ]
    )
    assert value(reg, "hubble_drop_total", source="payments", reason="POLICY_DENIED", protocol="TCP") == 1
    assert (
        value(reg, "hubble_drop_total", source="payments", reason="DROP_REASON_UNKNOWN", protocol="TCP") == 1
    )
    assert value(reg, "hubble_drop_total", source="", reason="DROP_REASON_UNKNOWN", protocol="HTTP") == 1
    pv = "hubble_policy_verdicts_total"
    assert value(reg, pv, direction="ingress", match="none", action="dropped") == 1
    assert value(reg, pv, direction="egress", match="l3-l4", action="forwarded") == 1
    assert value(reg, pv, direction="ingress", match="none", action="audit") == 1
    assert value(reg, pv, direction="ingress", match="l3-l4", action="forwarded") is None  # host source
    assert value(reg, pv, direction="ingress", match="l7/http", action="dropped") == 1


def test_tcp_port_distribution_icmp() -> None:
    m, reg = metrics("tcp port-distribution icmp")
    synack = tcp_flow(is_reply=True)
    synack["l4"] = {"TCP": {"destination_port": 40000, "flags": {"SYN": True, "ACK": True}}}
    fin_rst = tcp_flow()
    fin_rst["l4"] = {"TCP": {"destination_port": 8080, "flags": {"FIN": True, "RST": True}}}
    unknown_reply = tcp_flow()
    del unknown_reply["is_reply"]
    icmp = {
        "verdict": "FORWARDED",
        "is_reply": False,
        "l4": {"ICMPv4": {"type": 3, "code": 3}},
        "IP": {"ipVersion": "IPv4"},
    }
    echo6 = {"verdict": "DROPPED", "l4": {"ICMPv6": {"type": 128}}}
    m.process([tcp_flow(), synack, fin_rst, unknown_reply, tcp_flow("DROPPED"), icmp, echo6])
    assert value(reg, "hubble_tcp_flags_total", flag="SYN", family="IPv4") == 2
    assert value(reg, "hubble_tcp_flags_total", flag="SYN-ACK", family="IPv4") == 1
    assert value(reg, "hubble_tcp_flags_total", flag="FIN", family="IPv4") == 1
    assert value(reg, "hubble_tcp_flags_total", flag="RST", family="IPv4") == 1
    assert value(reg, "hubble_port_distribution_total", protocol="TCP", port="8080") == 2
    assert value(reg, "hubble_port_distribution_total", protocol="TCP", port="40000") is None  # reply
    assert value(reg, "hubble_port_distribution_total", protocol="ICMPv4", port="0") == 1
    assert value(reg, "hubble_icmp_total", family="IPv4", type="DestinationUnreachable(Port)") == 1
    assert value(reg, "hubble_icmp_total", family="IPv4", type="EchoRequest") == 1  # upstream's family for v6


def test_flows_to_world_options() -> None:
    m, reg = metrics("flows-to-world:port;syn-only")
    out = tcp_flow(destination=WORLD)
    reply = tcp_flow(destination=WORLD, is_reply=True)
    denied = tcp_flow("DROPPED", etype=1, destination=WORLD, drop_reason_desc="POLICY_DENIED")
    other_drop = tcp_flow("DROPPED", etype=1, destination=WORLD, drop_reason_desc="CT_MAP_INSERTION_FAILED")
    m.process([out, reply, denied, other_drop, tcp_flow()])
    name = "hubble_flows_to_world_total"
    assert value(reg, name, protocol="TCP", verdict="FORWARDED", port="8080") == 1
    assert value(reg, name, protocol="TCP", verdict="DROPPED", port="8080") == 1


def test_dns_family() -> None:
    m, reg = metrics("dns:query;ignoreAAAA")
    query = {"l7": {"type": "REQUEST", "dns": {"query": "api.", "qtypes": ["A"]}}, "is_reply": False}
    answer = {
        "l7": {
            "type": "RESPONSE",
            "dns": {"query": "api.", "qtypes": ["A"], "ips": ["1.2.3.4"], "rrtypes": ["A"]},
        },
        "is_reply": True,
    }
    nx = {"l7": {"dns": {"query": "nope.", "qtypes": ["A"], "rcode": 3}}, "is_reply": True}
    aaaa = {"l7": {"dns": {"query": "api.", "qtypes": ["AAAA"]}}, "is_reply": False}
    denied = {"verdict": "DROPPED", "l7": {"dns": {"query": "x.", "qtypes": ["A"]}}}
    m.process([query, answer, nx, aaaa, denied])
    q = "hubble_dns_queries_total"
    assert value(reg, q, rcode="", qtypes="A", ips_returned="0", query="api.") == 1
    assert value(reg, q, rcode="Policy denied", qtypes="A", ips_returned="0", query="x.") == 1
    r = "hubble_dns_responses_total"
    assert value(reg, r, rcode="No Error", qtypes="A", ips_returned="1", query="api.") == 1
    assert value(reg, r, rcode="Non-Existent Domain", qtypes="A", ips_returned="0", query="nope.") == 1
    assert value(reg, "hubble_dns_response_types_total", type="A", qtypes="A", query="api.") == 1


def test_http_v2_counts_responses_from_the_request_side() -> None:
    m, reg = metrics("httpV2:exemplars=true;sourceContext=pod-name;destinationContext=workload-name|app")
    response = {
        "source": API,
        "destination": FRONTEND,
        "traffic_direction": "EGRESS",
        "l7": {
            "type": "RESPONSE",
            "latency_ns": "250000000",
            "http": {"code": 503, "method": "GET", "protocol": "HTTP/1.1"},
        },
        "trace_context": {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
    }
    request = dict(response, l7={"type": "REQUEST", "http": {"method": "GET"}})
    m.process([response, request])
    # upstream computes each context on the response's own endpoints, then swaps the two values
    labels = {"source": "frontend", "destination": "api-5c6d7-abcde", "method": "GET"}
    requests = "hubble_http_requests_total"
    assert value(reg, requests, **labels, protocol="HTTP/1.1", status="503", reporter="client") == 1
    dur = "hubble_http_request_duration_seconds_bucket"
    assert value(reg, dur, **labels, reporter="client", le="0.25") == 1
    assert value(reg, dur, **labels, reporter="client", le="0.1") == 0
    text = generate_latest(reg).decode()
    assert "hubble_http_responses_total" not in text


def test_http_v1_counts_requests_and_responses() -> None:
    m, reg = metrics("http")
    req = {
        "traffic_direction": "INGRESS",
        "l7": {"type": "REQUEST", "http": {"method": "POST", "protocol": "HTTP/2"}},
    }
    resp = {
        "traffic_direction": "INGRESS",
        "l7": {"type": "RESPONSE", "http": {"method": "POST", "code": 200}},
    }
    m.process([req, resp])
    assert value(reg, "hubble_http_requests_total", method="POST", protocol="HTTP/2", reporter="server") == 1
    assert (
        value(reg, "hubble_http_responses_total", method="POST", protocol="", status="200", reporter="server")
        == 1
    )


def test_contexts_fallbacks_directions_and_labels() -> None:
    m, reg = metrics(
        "flow:sourceContext=dns|ip;destinationIngressContext=workload;destinationEgressContext=reserved-identity;"
        "labelsContext=source_app,destination_app,traffic_direction,source_workload_kind"
    )
    ingress = tcp_flow(source_names=["frontend.example."])
    egress = tcp_flow(traffic_direction="EGRESS", destination=WORLD)
    m.process([ingress, egress])
    base = {"protocol": "TCP", "type": "Trace", "subtype": "to-endpoint", "verdict": "FORWARDED"}
    common = {"source_app": "frontend", "source_workload_kind": "Deployment"}
    assert (
        value(
            reg,
            "hubble_flows_processed_total",
            **base,
            **common,
            destination_app="api",
            traffic_direction="ingress",
            source="frontend.example.",
            destination="",
        )
        == 1
    )  # api has no workload: the ingress destination context is empty
    assert (
        value(
            reg,
            "hubble_flows_processed_total",
            **base,
            **common,
            destination_app="",
            traffic_direction="egress",
            source="10.0.0.1",
            destination="reserved:world",
        )
        == 1
    )


def test_cardinality_guard_folds_new_series_into_overflow() -> None:
    m, reg = metrics("drop:sourceContext=ip", max_series=2)
    flows = []
    for i in range(5):
        flow = tcp_flow("DROPPED", etype=1, drop_reason_desc="POLICY_DENIED")
        flow["IP"] = {"source": f"10.0.0.{i}", "destination": "10.0.0.99"}
        flows.append(flow)
    m.process(flows)
    m.process(flows)
    name = "hubble_drop_total"
    assert value(reg, name, source="10.0.0.0", reason="POLICY_DENIED", protocol="TCP") == 2
    assert value(reg, name, source="10.0.0.1", reason="POLICY_DENIED", protocol="TCP") == 2
    assert value(reg, name, source="10.0.0.2", reason="POLICY_DENIED", protocol="TCP") is None
    assert value(reg, name, source="overflow", reason="POLICY_DENIED", protocol="TCP") == 6
    assert value(reg, "hubble_metrics_series_overflow_total", metric="drop") == 6


def _naive(m: FlowMetrics, flows: list[dict[str, Any]]) -> None:
    """Every flow through every family one by one: what the grouped batch counting must equal."""
    from collections import Counter, defaultdict

    for handler in m.handlers:
        acc: dict[Any, Counter] = defaultdict(Counter)
        for f in flows:
            handler.count(f, 1, acc)
        for series, counts in acc.items():
            series.add(counts)


def test_grouped_batches_count_exactly_like_flow_by_flow() -> None:
    import json

    from hubbletest import FIXTURES, REPO_ROOT

    paths = [
        REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl",
        FIXTURES / "flows.jsonl",
    ]
    flows = []
    for path in paths:
        if path.exists():
            flows += [r["flow"] for r in map(json.loads, path.read_text().splitlines()) if "flow" in r]
    ctx = "sourceContext=pod|ip;destinationContext=workload|dns;labelsContext=source_ip,destination_app,traffic_direction"
    specs = [
        "dns:query drop flow tcp port-distribution icmp http policy flows-to-world:port;any-drop",
        " ".join(
            f"{name}:{ctx}"
            for name in (
                "dns",
                "drop",
                "flow",
                "tcp",
                "port-distribution",
                "icmp",
                "httpV2",
                "policy",
                "flows-to-world",
            )
        ),
    ]
    for text in specs:
        grouped, reg1 = metrics(text)
        naive, reg2 = metrics(text)
        many = flows * 3
        for start in range(0, len(many), 97):
            grouped.process(many[start : start + 97])
            _naive(naive, many[start : start + 97])
        # same series and values (the order series were first seen in may differ)
        assert sorted(generate_latest(reg1).splitlines()) == sorted(generate_latest(reg2).splitlines())
        assert b"hubble_flows_processed_total" in generate_latest(reg1) or "flow" not in text


def test_http_v2_exemplars_in_openmetrics() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    m, reg = metrics("httpV2:exemplars=true")
    m.process(
        [
            {
                "traffic_direction": "INGRESS",
                "l7": {"type": "RESPONSE", "latency_ns": "1000", "http": {"code": 200, "method": "GET"}},
                "trace_context": {"parent": {"trace_id": "abc123"}},
            }
        ]
    )
    text = openmetrics(reg).decode()
    line = next(x for x in text.splitlines() if x.startswith("hubble_http_requests_total{"))
    assert line.endswith('# {traceID="abc123"} 1.0') or '# {traceID="abc123"} 1.0' in line, line
