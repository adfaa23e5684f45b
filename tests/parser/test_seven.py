"""seven.py rules one by one (as Cilium's pkg/hubble/parser/seven applies them), and Hypothesis on malformed records."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser.seven import (
    REDACTED,
    RedactOptions,
    access_log_sample,
    go_quote,
    trace_id_from_traceparent,
    url_text,
)

NOW = 1_709_251_200_000_000_000  # 2024-03-01T00:00:00Z
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def resolver() -> StaticResolver:
    r = StaticResolver()
    r.add_endpoint(
        EndpointInfo(
            id=11,
            identity=2001,
            namespace="payments",
            pod_name="frontend-7d9f",
            labels=("k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"),
            workloads=(("frontend", "Deployment"),),
            ips=("10.0.0.11",),
        )
    )
    r.add_endpoint(
        EndpointInfo(
            id=12,
            identity=2002,
            namespace="payments",
            pod_name="api-5c4b",
            labels=("k8s:app=api", "k8s:io.kubernetes.pod.namespace=payments"),
            workloads=(("api", "Deployment"),),
            ips=("10.0.0.12",),
        )
    )
    return r


def http_request(**changes: Any) -> dict:
    record = {
        "Type": "Request",
        "Timestamp": "2024-03-01T00:00:00.100000000Z",
        "ObservationPoint": "Ingress",
        "SourceEndpoint": {"ID": 11, "IPv4": "10.0.0.11", "Port": 40000, "Identity": 2001},
        "DestinationEndpoint": {"ID": 12, "IPv4": "10.0.0.12", "Port": 8080, "Identity": 2002},
        "NodeAddressInfo": {"IPv4": "192.168.0.1", "IPv6": ""},  # known to Cilium, not used by Hubble
        "IPVersion": 0,
        "Verdict": "Forwarded",
        "TransportProtocol": 6,
        "SourceAddress": "10.0.0.11:40000",
        "DestinationAddress": "10.0.0.12:8080",
        "HTTP": {
            "Code": 0,
            "Method": "GET",
            "URL": {"Scheme": "http", "Host": "api:8080", "Path": "/api/v1/orders"},
            "Protocol": "HTTP/1.1",
            "Headers": {"X-Request-Id": ["rid-1"], "User-Agent": ["curl/8"]},
        },
    }
    record.update(changes)
    return record


def http_response(request: dict, code: int, timestamp: str, **changes: Any) -> dict:
    record = copy.deepcopy(request)
    record.update(
        Type="Response",
        Timestamp=timestamp,
        SourceEndpoint=request["DestinationEndpoint"],
        DestinationEndpoint=request["SourceEndpoint"],
        SourceAddress=request["DestinationAddress"],
        DestinationAddress=request["SourceAddress"],
    )
    record["HTTP"] = dict(request["HTTP"], Code=code, Headers={"X-Request-Id": ["rid-1"]})
    record.update(changes)
    return record


def decode(records: list[dict], parser: Parser | None = None) -> list[dict]:
    parser = parser or Parser(resolver(), "node-1")
    flows = parser.seven.decode_batch(records, NOW)
    assert parser.parse_errors == 0, dict(parser.error_counts)
    return flows


def test_http_request_and_response_pair() -> None:
    request = http_request(
        HTTP=dict(http_request()["HTTP"], Headers={"X-Request-Id": ["rid-1"], "Traceparent": [TRACEPARENT]})
    )
    response = http_response(request, 200, "2024-03-01T00:00:00.142500000Z")
    req, resp = decode([request, response])
    assert req["Type"] == "L7" and req["event_type"] == {"type": 129}
    assert req["verdict"] == "FORWARDED" and req["traffic_direction"] == "INGRESS"
    assert req["is_reply"] is False and "reply" not in req
    assert req["l7"] == {
        "type": "REQUEST",
        "http": {
            "method": "GET",
            "url": "http://api:8080/api/v1/orders",
            "protocol": "HTTP/1.1",
            "headers": [
                {"key": "Traceparent", "value": TRACEPARENT},
                {"key": "X-Request-Id", "value": "rid-1"},
            ],
        },
    }
    assert req["source"] == {
        "ID": 11,
        "identity": 2001,
        "namespace": "payments",
        "labels": ["k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"],
        "pod_name": "frontend-7d9f",
        "workloads": [{"name": "frontend", "kind": "Deployment"}],
    }
    assert req["destination"]["pod_name"] == "api-5c4b"
    assert req["Summary"] == "HTTP/1.1 GET http://api:8080/api/v1/orders"
    assert req["trace_context"] == {"parent": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}
    # the response goes from the server to the client, carries the latency and the trace context
    assert resp["source"]["pod_name"] == "api-5c4b" and resp["destination"]["pod_name"] == "frontend-7d9f"
    assert resp["IP"] == {"source": "10.0.0.12", "destination": "10.0.0.11", "ipVersion": "IPv4"}
    assert resp["l4"] == {"TCP": {"source_port": 8080, "destination_port": 40000}}
    assert resp["reply"] is True and resp["is_reply"] is True
    assert resp["l7"]["type"] == "RESPONSE" and resp["l7"]["latency_ns"] == "42500000"
    assert list(resp["l7"]) == ["type", "latency_ns", "http"]
    assert resp["l7"]["http"]["code"] == 200
    assert resp["Summary"] == "HTTP/1.1 200 42ms (GET http://api:8080/api/v1/orders)"
    assert resp["trace_context"] == req["trace_context"]
    assert list(resp) == [
        "time",
        "uuid",
        "emitter",
        "verdict",
        "IP",
        "l4",
        "source",
        "destination",
        "Type",
        "node_name",
        "l7",
        "reply",
        "event_type",
        "traffic_direction",
        "is_reply",
        "trace_context",
        "Summary",
    ]
    assert req["time"] == "2024-03-01T00:00:00Z"  # the receive time, like the L3/L4 flows


def test_latency_needs_a_matching_earlier_request() -> None:
    request = http_request()
    parser = Parser(resolver())
    (alone,) = decode([http_response(request, 200, "2024-03-01T00:00:01Z")], parser)
    assert "latency_ns" not in alone["l7"] and alone["Summary"].startswith("HTTP/1.1 200 0ms (")
    early = http_response(request, 200, "2024-03-01T00:00:00.000000001Z")
    _, negative = decode([request, early], parser)
    assert "latency_ns" not in negative["l7"]  # a response before its request: 0, like Hubble
    response = http_response(request, 204, "2024-03-01T00:00:01Z")
    _, first, again = decode([request, response, response], parser)
    assert first["l7"]["latency_ns"] == "900000000"
    assert "latency_ns" not in again["l7"]  # the request entry is used once


def test_records_correlated_on_arrival_decode_alike_in_any_order() -> None:
    """The node's ring correlates records when they arrive and decodes them when read."""
    request = http_request(
        HTTP=dict(http_request()["HTTP"], Headers={"X-Request-Id": ["rid-1"], "Traceparent": [TRACEPARENT]})
    )
    records = [
        request,
        http_response(request, 204, "2024-03-01T00:00:01Z"),
        http_response(request, 200, "2024-03-01T00:00:02Z"),
    ]
    eager = decode(records)
    seven = Parser(resolver(), "node-1").seven
    correlations = [seven.correlate(r) for r in records]
    lazy = [
        seven.decode_record(r, eager[i]["time"], eager[i]["uuid"], correlations[i])
        for i, r in reversed(list(enumerate(records)))
    ]
    assert lazy[::-1] == eager
    assert eager[1]["l7"]["latency_ns"] == "900000000" and "latency_ns" not in eager[2]["l7"]
    assert seven.correlate({"Type": "Request"}) is None and seven.correlate([]) is None


def test_request_cache_is_bounded() -> None:
    parser = Parser(resolver())
    parser.seven = type(parser.seven)(parser, request_cache_size=3)
    requests = []
    for i in range(5):
        r = http_request()
        r["HTTP"] = dict(r["HTTP"], Headers={"X-Request-Id": [f"id-{i}"]})
        requests.append(r)
    decode(requests, parser)
    assert len(parser.seven._correlator._requests) == 3
    late = http_response(requests[0], 200, "2024-03-01T00:00:02Z")
    late["HTTP"]["Headers"] = {"X-Request-Id": ["id-0"]}
    (flow,) = decode([late], parser)
    assert "latency_ns" not in flow["l7"]  # evicted: the oldest entry went first
    kept = http_response(requests[4], 200, "2024-03-01T00:00:02Z")
    kept["HTTP"]["Headers"] = {"X-Request-Id": ["id-4"]}
    (flow,) = decode([kept], parser)
    assert flow["l7"]["latency_ns"] == "1900000000"


def test_denied_request_with_policy_attribution() -> None:
    policy = {
        "name": "api-http-l7",
        "namespace": "payments",
        "labels": ["k8s:io.cilium.k8s.policy.name=api-http-l7"],
        "kind": "CiliumNetworkPolicy",
        "revision": 7,
    }
    ext = {
        "proxy_port": 15001,
        "denied_by": [policy],
        "policy_log": ["deny: no L7 rule allows POST /api/v1/orders"],
    }
    request = http_request(Verdict="Denied", hubblepy=ext)
    request["HTTP"] = dict(request["HTTP"], Method="POST")
    (flow,) = decode([request])
    assert flow["verdict"] == "DROPPED" and "drop_reason" not in flow
    assert flow["proxy_port"] == 15001
    assert flow["ingress_denied_by"] == [
        {
            "name": "api-http-l7",
            "namespace": "payments",
            "labels": ["k8s:io.cilium.k8s.policy.name=api-http-l7"],
            "revision": "7",
            "kind": "CiliumNetworkPolicy",
        }
    ]
    assert flow["policy_log"] == ["deny: no L7 rule allows POST /api/v1/orders"]
    assert "ingress_allowed_by" not in flow
    assert flow["Summary"] == "HTTP/1.1 POST http://api:8080/api/v1/orders"
    egress = http_request(
        ObservationPoint="Egress",
        hubblepy={"allowed_by": [dict(policy, revision="0")], "denied_by": [policy]},
    )
    (flow,) = decode([egress])
    assert flow["traffic_direction"] == "EGRESS"
    assert flow["egress_allowed_by"][0]["name"] == "api-http-l7" and "egress_denied_by" not in flow
    assert "revision" not in flow["egress_allowed_by"][0]  # 0 is the default: omitted


def test_default_redaction_hides_credential_headers_and_url_password() -> None:
    request = http_request()
    request["HTTP"] = dict(
        request["HTTP"],
        URL={
            "Scheme": "http",
            "User": "alice:s3cret",
            "Host": "api:8080",
            "Path": "/x",
            "RawQuery": "token=1",
        },
        Headers={
            "Authorization": ["Bearer abc"],
            "Cookie": ["a=1", "b=2"],
            "Proxy-Authorization": ["Basic x"],
            "Accept": ["*/*"],
        },
    )
    response = http_response(request, 200, "2024-03-01T00:00:01Z")
    response["HTTP"]["Headers"] = {"Set-Cookie": ["sid=1"], "Content-Type": ["text/plain"]}
    req, resp = decode([request, response])
    assert req["l7"]["http"]["headers"] == [
        {"key": "Accept", "value": "*/*"},
        {"key": "Authorization", "value": REDACTED},
        {"key": "Cookie", "value": REDACTED},
        {"key": "Cookie", "value": REDACTED},
        {"key": "Proxy-Authorization", "value": REDACTED},
    ]
    assert req["l7"]["http"]["url"] == f"http://alice:{REDACTED}@api:8080/x?token=1"
    assert req["Summary"] == f"HTTP/1.1 GET http://alice:{REDACTED}@api:8080/x?token=1"
    assert resp["l7"]["http"]["headers"] == [
        {"key": "Content-Type", "value": "text/plain"},
        {"key": "Set-Cookie", "value": REDACTED},
    ]
    plain = Parser(resolver(), redact=RedactOptions.disabled())
    (flow,) = plain.seven.decode_batch([request], NOW)
    assert {"key": "Authorization", "value": "Bearer abc"} in flow["l7"]["http"]["headers"]
    assert flow["l7"]["http"]["url"] == "http://alice:s3cret@api:8080/x?token=1"


def test_latency_and_trace_context_survive_redaction_of_every_header() -> None:
    parser = Parser(resolver(), redact=RedactOptions(http_headers_deny=frozenset()))
    request = http_request()
    request["HTTP"] = dict(request["HTTP"], Headers={"X-Request-Id": ["rid-1"], "Traceparent": [TRACEPARENT]})
    req, resp = decode([request, http_response(request, 200, "2024-03-01T00:00:00.300Z")], parser)
    assert {h["value"] for h in req["l7"]["http"]["headers"]} == {REDACTED}
    assert resp["l7"]["latency_ns"] == "200000000" and "trace_context" in resp


def test_redaction_options_like_hubble() -> None:
    allow = RedactOptions(
        http_headers_allow=frozenset({"Accept"}), http_headers_deny=frozenset(), http_url_query=True
    )
    assert allow.header_value("accept", "v") == "v"
    assert allow.header_value("X-Other", "v") == REDACTED
    every = RedactOptions(http_headers_deny=frozenset())
    assert every.header_value("Accept", "v") == REDACTED  # enabled with no list: every value
    deny = RedactOptions(http_headers_deny=frozenset({"X-Secret"}))
    assert deny.header_value("x-secret", "v") == REDACTED and deny.header_value("Accept", "v") == "v"
    with pytest.raises(ValueError, match="only one"):
        RedactOptions(http_headers_allow=frozenset({"a"}), http_headers_deny=frozenset({"b"}))
    url = {"Scheme": "https", "Host": "h", "Path": "/p", "RawQuery": "q=1", "Fragment": "f"}
    assert url_text(url, allow) == "https://h/p"
    assert url_text("https://h/p?q=1#f", allow) == "https://h/p"
    kafka_redact = RedactOptions(kafka_api_key=True)
    parser = Parser(resolver(), redact=kafka_redact)
    record = http_request(Kafka={"APIKey": "produce", "CorrelationID": 9, "Topic": {"Topic": "t"}})
    del record["HTTP"]
    (flow,) = parser.seven.decode_batch([record], NOW)
    assert flow["l7"]["kafka"]["api_key"] == REDACTED
    assert flow["Summary"] == f"Kafka request {REDACTED} correlation id 9 topic 't'"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ({"Scheme": "http", "Host": "h:80", "Path": "/a b/ü"}, "http://h:80/a%20b/%C3%BC"),
        ({"Scheme": "http", "Host": "h", "Path": "/a/b c", "RawPath": "/a/b%20c"}, "http://h/a/b%20c"),
        ({"Scheme": "http", "Host": "h", "Path": "/a!b", "RawPath": "/a!b"}, "http://h/a!b"),
        ({"Scheme": "http", "Host": "h", "Path": "/a?b"}, "http://h/a%3Fb"),
        ({"Scheme": "http", "Host": "h", "Path": "", "ForceQuery": True}, "http://h?"),
        ({"Scheme": "http", "Host": "h", "Path": "x"}, "http://h/x"),
        ({"Scheme": "mailto", "Opaque": "a@b"}, "mailto:a@b"),
        ({"Path": "/only"}, "/only"),
        ({"Path": "a:b"}, "./a:b"),
        ({"Scheme": "http", "Host": "h", "Path": "/", "Fragment": "x y"}, "http://h/#x%20y"),
        (None, ""),
        ("http://h/p?q", "http://h/p?q"),
    ],
)
def test_url_text_is_go_url_string(url: Any, text: str) -> None:
    assert url_text(url, RedactOptions.disabled()) == text


def test_dns_request_and_responses() -> None:
    base = {
        "Type": "Request",
        "Timestamp": "2024-03-01T00:00:00Z",
        "ObservationPoint": "Egress",
        "SourceEndpoint": {"ID": 11, "IPv4": "10.0.0.11", "Port": 5353, "Identity": 2001},
        "DestinationEndpoint": {"IPv4": "10.96.0.10", "Port": 53, "Identity": 2},
        "IPVersion": 0,
        "Verdict": "Forwarded",
        "TransportProtocol": 17,
        "DNS": {"Query": "api.stripe.com.", "ObservationSource": "proxy", "QTypes": [1, 28, 999]},
    }
    answer = dict(
        base,
        Type="Response",
        SourceEndpoint=base["DestinationEndpoint"],
        DestinationEndpoint=base["SourceEndpoint"],
        DNS=dict(
            base["DNS"], IPs=["10.1.0.5", "10.1.0.6"], TTL=30, CNAMEs=["edge.stripe.com."], AnswerTypes=[5, 1]
        ),
    )
    refused = dict(answer, Verdict="Denied", DNS=dict(base["DNS"], RCode=5, QTypes=[1]))
    req, resp, ref = decode([base, answer, refused])
    assert req["l7"] == {
        "type": "REQUEST",
        "dns": {
            "query": "api.stripe.com.",
            "observation_source": "proxy",
            "qtypes": ["A", "AAAA", "Unknown"],
        },
    }
    assert req["Summary"] == "DNS Query api.stripe.com. A,AAAA,Unknown"
    assert req["destination"] == {"identity": 2, "labels": ["reserved:world"]}  # identity labels
    assert resp["l7"]["dns"] == {
        "query": "api.stripe.com.",
        "ips": ["10.1.0.5", "10.1.0.6"],
        "ttl": 30,
        "cnames": ["edge.stripe.com."],
        "observation_source": "proxy",
        "qtypes": ["A", "AAAA", "Unknown"],
        "rrtypes": ["CNAME", "A"],
    }
    assert resp["Summary"] == (
        'DNS Answer "10.1.0.5,10.1.0.6" CNAMEs: "edge.stripe.com." TTL: 30 (Proxy api.stripe.com. A,AAAA,Unknown)'
    )
    assert ref["verdict"] == "DROPPED" and ref["l7"]["dns"]["rcode"] == 5
    assert ref["Summary"] == "DNS Answer RCode: Query Refused TTL: 0 (Proxy api.stripe.com. A)"
    assert "latency_ns" not in resp["l7"]


def test_dns_names_from_the_fqdn_resolver() -> None:
    r = resolver()
    r.set_dns_names(11, "93.184.216.34", ["example.com"])
    record = http_request(
        DestinationEndpoint={"IPv4": "93.184.216.34", "Port": 443, "Identity": 16777217},
        ObservationPoint="Egress",
    )
    (flow,) = decode([record], Parser(r))
    assert flow["destination_names"] == ["example.com"]
    keys = list(flow)
    assert keys.index("destination_names") < keys.index("l7") < keys.index("event_type")


def test_endpoint_gaps_filled_from_the_node_state() -> None:
    record = http_request(
        SourceEndpoint={"IPv4": "10.0.0.11", "Port": 40000},
        DestinationEndpoint={},
        DestinationAddress="10.0.0.12:8080",
    )
    (flow,) = decode([record])
    assert flow["source"]["ID"] == 11 and flow["source"]["identity"] == 2001
    assert flow["source"]["labels"] == ["k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"]
    assert flow["destination"]["pod_name"] == "api-5c4b"  # from DestinationAddress
    assert flow["l4"] == {"TCP": {"source_port": 40000, "destination_port": 8080}}


def test_generic_l7_kafka_and_sample_records() -> None:
    generic = http_request(L7={"Proto": "r2d2", "Fields": {"cmd": "READ", "file": "/x"}}, Type="Sample")
    del generic["HTTP"]
    kafka_resp = http_request(
        Type="Response",
        Kafka={
            "ErrorCode": 3,
            "APIVersion": 2,
            "APIKey": "fetch",
            "CorrelationID": 7,
            "Topic": {"Topic": "orders"},
        },
    )
    del kafka_resp["HTTP"]
    g, k = decode([generic, kafka_resp])
    assert g["l7"] == {"type": "SAMPLE"} and g["Summary"] == "r2d2 Fields: map[cmd:READ file:/x]"
    assert k["l7"]["kafka"] == {
        "error_code": 3,
        "api_version": 2,
        "api_key": "fetch",
        "correlation_id": 7,
        "topic": "orders",
    }
    assert k["Summary"] == "Kafka response fetch correlation id 7 topic 'orders' return code 3"


def test_type_129_samples_through_the_parser_dispatch() -> None:
    parser = Parser(resolver(), "node-1")
    request = http_request()
    flows = parser.decode_batch([(0, access_log_sample(request)), (1, b"\x81{not json"), (0, b"\x81[]")], NOW)
    assert len(flows) == 1 and flows[0]["Type"] == "L7"
    assert parser.parse_errors == 2 and parser.error_counts["malformed_access_log_record"] == 1
    assert parser.error_counts["invalid_type"] == 1  # a JSON array is not a record
    one = parser.decode(0, access_log_sample(request), NOW)
    assert one is not None and one["l7"]["type"] == "REQUEST"


@pytest.mark.parametrize(
    ("value", "trace_id"),
    [
        (TRACEPARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", ""),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""),
        ("garbage", ""),
    ],
)
def test_traceparent(value: str, trace_id: str) -> None:
    assert trace_id_from_traceparent(value) == trace_id


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\there\x01\u200b") == '"tab\\there\\x01\\u200b"'
    assert go_quote("ünï") == '"ünï"'


# --- Hypothesis: malformed records are counted and skipped, never raised ----------------------------
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
KEYS = list(http_request()) + ["DNS", "Kafka", "L7", "hubblepy", "Type", "Timestamp"]


def _accounted(parser: Parser, records: list[Any]) -> list[dict]:
    before = (parser.parse_errors, parser.skipped)
    flows = parser.seven.decode_batch(records, NOW)
    assert len(flows) + parser.parse_errors - before[0] + parser.skipped - before[1] == len(records)
    assert parser.error_counts["internal_error"] == 0, parser.last_error
    for flow in flows:
        orjson.dumps(flow)
        assert flow["Type"] == "L7" and flow["event_type"] == {"type": 129}
    return flows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSON | st.dictionaries(st.sampled_from(KEYS), JSON, max_size=8), max_size=6))
def test_random_records_never_raise(records: list[Any]) -> None:
    _accounted(Parser(resolver()), records)
    parser = Parser(resolver())
    # stdlib json: the records may hold integers beyond 64 bits, which orjson does not write
    samples = [(0, b"\x81" + json.dumps(r).encode()) for r in records]
    flows = parser.decode_batch(samples, NOW)
    assert len(flows) + parser.parse_errors == len(samples)
    assert parser.error_counts["internal_error"] == 0, parser.last_error


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_records_never_raise(data: st.DataObject) -> None:
    record = http_request()
    record["DNS"] = {"Query": "a.", "QTypes": [1]}
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(KEYS))
        target: Any = record
        if isinstance(record.get(path), dict) and data.draw(st.booleans()):
            target = record[path]
            inner = list(target) or ["x"]
            path = data.draw(st.sampled_from(inner + ["Labels", "URL", "Headers", "IPs", "User"]))
        target[path] = data.draw(JSON)
    flows = _accounted(Parser(resolver()), [record])
    assert len(flows) <= 1


def test_wrongly_typed_fields_are_malformed_records() -> None:
    parser = Parser(resolver())
    bad = [
        http_request(Timestamp="yesterday"),
        http_request(SourceEndpoint=[1]),
        http_request(IPVersion=-1),
        http_request(HTTP={"Headers": {"A": [1]}}),
        http_request(hubblepy={"allowed_by": [{"revision": "x"}]}),
        {"Type": 5},
        "not a record",
    ]
    assert parser.seven.decode_batch(bad, NOW) == []
    assert parser.parse_errors == len(bad)
    assert parser.error_counts["invalid_timestamp"] == 1
    assert parser.error_counts["invalid_type"] == 1
    assert parser.error_counts["malformed_access_log_record"] == 5


def test_endpoint_cache_follows_the_record_labels_and_the_resolver() -> None:
    r = resolver()
    parser = Parser(r)
    first = http_request()
    first["SourceEndpoint"] = dict(first["SourceEndpoint"], Labels=["k8s:app=frontend"])
    second = http_request()
    second["SourceEndpoint"] = dict(second["SourceEndpoint"], Labels=["k8s:app=frontend", "k8s:v=2"])
    a, b = decode([first, second], parser)
    assert a["source"]["labels"] == ["k8s:app=frontend"]
    assert b["source"]["labels"] == ["k8s:app=frontend", "k8s:v=2"]
    r.add_endpoint(
        EndpointInfo(id=12, identity=2002, namespace="payments", pod_name="api-new", ips=("10.0.0.12",))
    )
    (c,) = decode([http_request()], parser)
    assert c["destination"]["pod_name"] == "api-new"  # a resolver change empties the cache


def test_seed_denied_post_prints_like_upstream() -> None:
    """The seed's Verify step: the proxy's 403 for frontend's POST is a DROPPED http-request line."""
    import io

    from hubblepy.printer import Printer, PrintOptions

    request = http_request(Verdict="Denied")
    request["HTTP"] = dict(request["HTTP"], Method="POST")
    response = http_response(request, 403, "2024-03-01T00:00:00.100400000Z", Verdict="Forwarded")
    out = io.BytesIO()
    printer = Printer(PrintOptions(), out, io.BytesIO())
    for flow in decode([request, response]):
        printer.write({"flow": flow, "node_name": "node-1", "time": flow["time"]})
    printer.close()
    assert out.getvalue().decode().splitlines() == [
        "Mar  1 00:00:00.000: payments/frontend-7d9f:40000 (ID:2001) -> payments/api-5c4b:8080 (ID:2002) "
        "http-request DROPPED (HTTP/1.1 POST http://api:8080/api/v1/orders)",
        "Mar  1 00:00:00.000: payments/frontend-7d9f:40000 (ID:2001) <- payments/api-5c4b:8080 (ID:2002) "
        "http-response FORWARDED (HTTP/1.1 403 0ms (POST http://api:8080/api/v1/orders))",
    ]
