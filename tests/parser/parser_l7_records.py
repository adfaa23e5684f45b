"""Rebuild the proxy access-log records behind the upstream fixture's L7 flows (tests/fixtures/flows.jsonl).

For each L7 fixture flow (event type 129) ``records_for`` gives the records a proxy would have
written for it, Cilium ``accesslog.LogRecord`` keys plus our ``hubblepy`` extension, and
``expected_flow`` the flow Hubble's seven parser gives for them. The two differ from the fixture
only where the synthetic fixture holds what Hubble's rules cannot produce (``corrections``):

* ``latency_ns`` exists only for HTTP, computed from the request with the same ``X-Request-Id``:
  a DNS or Kafka flow's latency is dropped, and an HTTP response whose latency has no
  ``X-Request-Id`` header gets one (the records then start with the request that primes the
  latency and trace-context cache, as the proxy's own request record would).

Those fields are not printed by the compact, dict and table formats, so the rebuilt flows print the
upstream bytes there; in JSON, flows without corrections print the upstream bytes too.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote, urlsplit

from hubblepy.codec.timestamps import format_ns
from hubblepy.parser.seven import DNS_TYPE_NAMES, parse_rfc3339_ns

DNS_TYPE_NUMBERS = {name: num for num, name in DNS_TYPE_NAMES.items()}
L7_TYPES = {"REQUEST": "Request", "RESPONSE": "Response", "SAMPLE": "Sample"}
VERDICTS = {"FORWARDED": "Forwarded", "DROPPED": "Denied", "ERROR": "Error", "REDIRECTED": "Redirected"}
DIRECTIONS = {"INGRESS": "Ingress", "EGRESS": "Egress"}
TRANSPORTS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def go_url(text: str) -> dict[str, Any]:
    """The Go ``url.URL`` JSON object Go's url.Parse would give for ``text``."""
    parts = urlsplit(text)
    path = unquote(parts.path)
    return {
        "Scheme": parts.scheme,
        "Opaque": "",
        "User": None,
        "Host": parts.netloc,
        "Path": path,
        "RawPath": parts.path if parts.path != path else "",
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": parts.query,
        "Fragment": parts.fragment,
        "RawFragment": "",
    }


def _endpoint(flow: dict, side: str, address: str, port: int) -> dict:
    ep = flow.get(side, {})
    v6 = flow.get("IP", {}).get("ipVersion") == "IPv6"
    return {
        "ID": ep.get("ID", 0),
        "IPv4": "" if v6 else address,
        "IPv6": address if v6 else "",
        "Port": port,
        "Identity": ep.get("identity", 0),
        "Labels": list(ep.get("labels", ())),
    }


def _http(http: dict, headers: list[dict]) -> dict:
    grouped: dict[str, list[str]] = {}
    for h in headers:
        grouped.setdefault(h.get("key", ""), []).append(h.get("value", ""))
    return {
        "Code": http.get("code", 0),
        "Method": http.get("method", ""),
        "URL": go_url(http["url"]) if "url" in http else None,
        "Protocol": http.get("protocol", ""),
        "Headers": grouped,
    }


def _dns(dns: dict) -> dict:
    return {
        "Query": dns.get("query", ""),
        "IPs": dns.get("ips"),
        "TTL": dns.get("ttl", 0),
        "CNAMEs": dns.get("cnames"),
        "ObservationSource": dns.get("observation_source", ""),
        "RCode": dns.get("rcode", 0),
        "QTypes": [DNS_TYPE_NUMBERS[t] for t in dns.get("qtypes", ())],
        "AnswerTypes": [DNS_TYPE_NUMBERS[t] for t in dns.get("rrtypes", ())],
    }


def _kafka(kafka: dict) -> dict:
    return {
        "ErrorCode": kafka.get("error_code", 0),
        "APIVersion": kafka.get("api_version", 0),
        "APIKey": kafka.get("api_key", ""),
        "CorrelationID": kafka.get("correlation_id", 0),
        "Topic": {"Topic": kafka.get("topic", "")},
    }


def _needs_request_id(flow: dict) -> bool:
    l7 = flow["l7"]
    if "http" not in l7 or l7.get("type") != "RESPONSE":
        return False
    has_id = any(h.get("key", "").lower() == "x-request-id" for h in l7["http"].get("headers", ()))
    return ("latency_ns" in l7 or "trace_context" in flow) and not has_id


def expected_flow(flow: dict) -> dict:
    """The fixture flow as Hubble's rules produce it from the rebuilt records (see module docstring)."""
    f = copy.deepcopy(flow)
    l7 = f["l7"]
    if "http" not in l7:
        l7.pop("latency_ns", None)
    elif _needs_request_id(flow):
        headers = l7["http"].get("headers", []) + [{"key": "X-Request-Id", "value": flow["uuid"]}]
        l7["http"]["headers"] = sorted(headers, key=lambda h: h.get("key", ""))
    return f


def corrections(flow: dict) -> bool:
    """Whether ``expected_flow`` differs from the fixture flow."""
    return expected_flow(flow) != flow


def records_for(flow: dict) -> list[dict]:
    """The access-log records for one L7 fixture flow; the last one gives the flow."""
    expected = expected_flow(flow)
    l7 = expected["l7"]
    ip = flow.get("IP", {})
    l4_name, ports = next(iter(flow.get("l4", {}).items()), ("", {}))
    record: dict[str, Any] = {
        "Type": L7_TYPES.get(l7.get("type", ""), ""),
        "Timestamp": flow["time"],
        "ObservationPoint": DIRECTIONS.get(flow.get("traffic_direction", ""), ""),
        "SourceEndpoint": _endpoint(flow, "source", ip.get("source", ""), ports.get("source_port", 0)),
        "DestinationEndpoint": _endpoint(
            flow, "destination", ip.get("destination", ""), ports.get("destination_port", 0)
        ),
        "IPVersion": {"IPv4": 0, "IPv6": 1}.get(ip.get("ipVersion", ""), 2),
        "Verdict": VERDICTS.get(flow.get("verdict", ""), ""),
        "TransportProtocol": TRANSPORTS.get(l4_name, 0),
    }
    if "http" in l7:
        record["HTTP"] = _http(l7["http"], l7["http"].get("headers", []))
    elif "dns" in l7:
        record["DNS"] = _dns(l7["dns"])
    elif "kafka" in l7:
        record["Kafka"] = _kafka(l7["kafka"])
    ext: dict[str, Any] = {}
    if flow.get("proxy_port"):
        ext["proxy_port"] = flow["proxy_port"]
    for key, name in (
        ("ingress_allowed_by", "allowed_by"),
        ("egress_allowed_by", "allowed_by"),
        ("ingress_denied_by", "denied_by"),
        ("egress_denied_by", "denied_by"),
    ):
        if key in flow:
            ext[name] = flow[key]
    if flow.get("policy_log"):
        ext["policy_log"] = flow["policy_log"]
    if ext:
        record["hubblepy"] = ext
    records = [record]
    request_id = next(
        (
            h["value"]
            for h in l7.get("http", {}).get("headers", ())
            if h.get("key", "").lower() == "x-request-id"
        ),
        "",
    )
    if l7.get("type") == "RESPONSE" and request_id:
        # the request that primes the latency and trace-context cache (its flow is not compared)
        sent = parse_rfc3339_ns(flow["time"]) - int(l7.get("latency_ns", "0"))
        primer_headers = {"X-Request-Id": [request_id]}
        trace_id = flow.get("trace_context", {}).get("parent", {}).get("trace_id")
        if trace_id:
            primer_headers["Traceparent"] = [f"00-{trace_id}-00f067aa0ba902b7-01"]
        primer = dict(record, Type="Request", Timestamp=format_ns(sent))
        primer["HTTP"] = dict(record["HTTP"], Code=0, Headers=primer_headers)
        records.insert(0, primer)
    return records
