"""The byte prefilter must never reject a line that the full predicate accepts.

Checked exhaustively over flows.jsonl for many filters, and with hypothesis over mutated fixture
flows written in non-canonical but valid protojson (lowerCamel keys, numeric enums, ``\\u`` and
``\\/`` escapes, spaces), with random FlowFilters built from values found in the fixtures.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubblepy.filters import FilterError, compile_byte_prefilter, compile_flow_filters
from hubblepy.filters.enums import DROP_REASON, IP_VERSION, TRAFFIC_DIRECTION, VERDICT

FIXED_FILTERS: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
    ([{"verdict": ["DROPPED"]}], []),
    ([{"verdict": ["FORWARDED", "AUDIT"]}], [{"source_pod": ["default/"]}]),
    ([{"source_pod": ["cde/"]}, {"destination_pod": ["cde/"]}], []),
    ([{"destination_pod": ["/coredns"]}], []),
    ([{"source_pod": ["frontend"]}, {"destination_pod": ["frontend"]}], []),
    ([{"protocol": ["kafka"]}], []),
    ([{"protocol": ["icmp"]}], []),
    ([{"protocol": ["tcp"], "verdict": ["DROPPED"]}], []),
    ([{"node_name": ["prod-us/"], "event_type": [{"type": 1}]}], []),
    ([{"node_name": ["lab-worker2"]}], []),
    ([{"destination_fqdn": ["api.*"]}, {"source_fqdn": ["api.*"]}], []),
    ([{"source_fqdn": ["HOOKS.Slack.com."]}], []),
    ([{"drop_reason_desc": ["POLICY_DENY", "POLICY_DENIED"]}], []),
    ([{"tcp_flags": [{"ACK": True, "PSH": True}]}], []),
    ([{"traffic_direction": ["INGRESS"], "event_type": [{"type": 5}]}], []),
    ([{"verdict": ["AUDIT"]}, {"source_pod": ["cde/"], "verdict": ["DROPPED"]}], []),
    ([{"destination_service": ["payments/payments-api"], "event_type": [{"type": 129}]}], []),
    ([{"ip_version": ["IPv6"], "verdict": ["FORWARDED"]}], []),
    ([{"source_ip": ["10.244.2.18"]}], []),
    ([{"http_method": ["post"]}], []),
    ([{"dns_query": ["stripe"]}], []),
    ([{"source_cluster_name": ["default"]}], []),
    ([{"trace_id": ["8d3c1f0a9b7e4d2c6a5f0e1d2c3b4a59"]}], []),
]


@pytest.mark.parametrize(("allow", "deny"), FIXED_FILTERS)
def test_prefilter_keeps_every_accepted_fixture_line(
    allow: list[dict[str, Any]],
    deny: list[dict[str, Any]],
    flow_lines: list[bytes],
    flow_records: list[dict[str, Any]],
) -> None:
    predicate = compile_flow_filters(allow, deny)
    prefilter = compile_byte_prefilter(allow, deny)
    assert prefilter is not None
    for line, record in zip(flow_lines, flow_records, strict=True):
        if predicate(record):
            assert prefilter(line), line


def test_prefilter_rejects_lines_that_cannot_match(flow_lines: list[bytes]) -> None:
    prefilter = compile_byte_prefilter([{"verdict": ["DROPPED"]}], [])
    assert prefilter is not None
    kept = sum(map(prefilter, flow_lines))
    assert kept < 60  # 28 DROPPED flows plus lines the prefilter cannot judge
    assert not prefilter(b'{"flow":{"verdict":"FORWARDED"}}')
    assert prefilter(b'{"flow":{"verdict":2}}')  # a numeric enum cannot be judged by name
    assert prefilter(b'{"flow":{"verdict":"\\u0044ROPPED"}}')  # escapes are never judged


def test_enum_key_occurring_twice_is_not_judged() -> None:
    prefilter = compile_byte_prefilter([{"ip_version": ["IPv6"]}], [])
    assert prefilter is not None
    assert not prefilter(b'{"flow":{"IP":{"ipVersion":"IPv4"}}}')
    # the flow's IP block uses a number, the tunnel's a name: the name must not decide
    line = b'{"flow":{"IP":{"ipVersion":2},"tunnel":{"IP":{"ipVersion":"IPv4"}}}}'
    assert compile_flow_filters([{"ip_version": ["IPv6"]}], [])({"flow": {"IP": {"ipVersion": "IPv6"}}})
    assert prefilter(line)
    verdicts = compile_byte_prefilter([{"verdict": ["DROPPED"]}], [])
    assert verdicts is not None
    ext = b'"extensions":{"@type":"type.googleapis.com/x.Y","verdict":"AUDIT"}'
    assert verdicts(b'{"flow":{"verdict":2,' + ext + b"}}")
    assert verdicts(b'{"flow":{' + ext + b',"verdict":2}}')
    assert not verdicts(b'{"flow":{"verdict":"AUDIT"}}')
    assert verdicts(b'{"flow":{"verdict":"DROPPED"}}')


@pytest.mark.parametrize(
    "allow",
    [
        [],
        [{}],
        [{"encrypted": [False]}],  # lets records without a flow through
        [{"source_label": ["app=x"]}],  # no byte clause for labels
        [{"verdict": ["VERDICT_UNKNOWN"]}],  # the default value is omitted from JSON
        [{"verdict": ["DROPPED"]}, {"source_identity": [2]}],  # one filter without clauses
        [{"destination_ip": ["10.8.1.0/24"]}],  # CIDRs have no byte form
    ],
)
def test_no_prefilter_when_nothing_can_be_proved(allow: list[dict[str, Any]]) -> None:
    assert compile_byte_prefilter(allow, []) is None


# --- hypothesis: random filters over mutated, re-encoded flows ------------------------------------------------


def _fixture_values(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    values: dict[str, set[Any]] = {
        k: set() for k in ("ns", "pod", "svc", "ip", "node", "name", "uuid", "trace", "cluster", "label")
    }
    for record in records:
        flow = record["flow"]
        values["uuid"].add(flow["uuid"])
        values["node"].add(flow.get("node_name", "x"))
        for side in ("source", "destination"):
            endpoint = flow.get(side, {})
            values["ns"].add(endpoint.get("namespace", "kube-system"))
            values["pod"].add(endpoint.get("pod_name", "pod")[:6])
            values["cluster"].add(endpoint.get("cluster_name", "default"))
            values["label"].update(endpoint.get("labels", []))
            values["ip"].add(flow.get("IP", {}).get(side, "10.0.0.1"))
            service = flow.get(f"{side}_service", {})
            values["svc"].add(service.get("namespace", "default") + "/" + service.get("name", "x")[:4])
            values["name"].update(flow.get(f"{side}_names", []))
        values["trace"].add(flow.get("trace_context", {}).get("parent", {}).get("trace_id", "abc"))
    return {k: sorted(v) for k, v in values.items()}


def _glob(name: str, rnd: random.Random) -> str:
    parts = name.split(".")
    i = rnd.randrange(len(parts))
    parts[i] = "*"
    return ".".join(parts)


def _random_field(rnd: random.Random, pool: dict[str, list[Any]]) -> tuple[str, list[Any]]:
    pick = rnd.choice
    kind = rnd.randrange(20)
    side = pick(["source", "destination"])
    if kind == 0:
        return "verdict", rnd.sample(sorted(VERDICT)[1:], rnd.randint(1, 2))
    if kind == 1:
        return "drop_reason_desc", [pick(["POLICY_DENIED", "POLICY_DENY", "CT_MAP_INSERTION_FAILED"])]
    if kind == 2:
        return "traffic_direction", [pick(["INGRESS", "EGRESS"])]
    if kind == 3:
        return "ip_version", [pick(["IPv4", "IPv6"])]
    if kind == 4:
        return "protocol", [pick(["tcp", "udp", "icmp", "icmpv6", "dns", "http", "kafka", "sctp"])]
    if kind == 5:
        return f"{side}_pod", [
            pick(
                [
                    pick(pool["ns"]) + "/",
                    pick(pool["ns"]) + "/" + pick(pool["pod"]),
                    "/" + pick(pool["pod"]),
                    pick(pool["pod"]),
                ]
            )
        ]
    if kind == 6:
        return f"{side}_service", [pick(pool["svc"])]
    if kind == 7:
        ip = pick(pool["ip"])
        return f"{side}_ip", [ip if ":" in ip or rnd.random() < 0.5 else ip.rsplit(".", 1)[0] + ".0/24"]
    if kind == 8:
        node = pick(pool["node"])
        cluster, _, name = node.rpartition("/")
        return "node_name", [pick([name, node, (cluster or "default") + "/", name.split(".")[0] + "*"])]
    if kind == 9 and pool["name"]:
        name = pick(pool["name"])
        return f"{side}_fqdn", [pick([name, name.upper() + ".", _glob(name, rnd)])]
    if kind == 10:
        return "uuid", [pick(pool["uuid"])]
    if kind == 11:
        return "trace_id", [pick(pool["trace"])]
    if kind == 12:
        return f"{side}_cluster_name", [pick(pool["cluster"])]
    if kind == 13:
        flags = rnd.sample(["SYN", "ACK", "FIN", "RST", "PSH"], rnd.randint(1, 2))
        return "tcp_flags", [dict.fromkeys(flags, True)]
    if kind == 14:
        return "event_type", [{"type": pick([1, 4, 5, 129])}]
    if kind == 15:
        return "http_method", [pick(["get", "POST"])]
    if kind == 16:
        return "dns_query", [pick(["svc", "stripe", r"\.com\.$"])]
    if kind == 17:
        label = pick(pool["label"]).split(":", 1)[-1]
        return f"{side}_label", [label if "=" in label else "!" + label.split("=")[0]]
    if kind == 18:
        return "reply", [rnd.random() < 0.5]
    return f"{side}_port", [pick(["53", "443", "8080", "9092"])]


def _random_filters(rnd: random.Random, pool: dict[str, list[Any]]) -> list[dict[str, Any]]:
    filters = []
    for _ in range(rnd.randint(1, 2)):
        ff: dict[str, Any] = {}
        for _ in range(rnd.randint(1, 3)):
            key, values = _random_field(rnd, pool)
            ff[key] = values
        filters.append(ff)
    return filters


def _mutate(flow: dict[str, Any], rnd: random.Random, pool: dict[str, list[Any]]) -> dict[str, Any]:
    flow = orjson.loads(orjson.dumps(flow))
    if rnd.random() < 0.3:
        flow["verdict"] = rnd.choice(sorted(VERDICT)[1:])
    if rnd.random() < 0.2:
        flow.pop("is_reply", None)
    if rnd.random() < 0.3 and "source" in flow:
        flow["source"]["namespace"] = rnd.choice(pool["ns"])
    if rnd.random() < 0.2:
        flow["node_name"] = rnd.choice(pool["node"])
    if rnd.random() < 0.1:
        flow.pop("IP", None)
    return flow


_ENUM_TABLES = {
    "verdict": VERDICT,
    "drop_reason_desc": DROP_REASON,
    "traffic_direction": TRAFFIC_DIRECTION,
    "ipVersion": IP_VERSION,
}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _encode(value: Any, rnd: random.Random, style: dict[str, bool], key: str = "") -> str:
    colon, comma = (": ", ", ") if style["spaces"] else (":", ",")
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            name = _camel(k) if style["camel"] else k
            items.append(json.dumps(name) + colon + _encode(v, rnd, style, k))
        return "{" + comma.join(items) + "}"
    if isinstance(value, list):
        return "[" + comma.join(_encode(v, rnd, style, key) for v in value) + "]"
    if isinstance(value, str):
        if style["numeric_enums"] and key in _ENUM_TABLES and value in _ENUM_TABLES[key]:
            return str(_ENUM_TABLES[key][value])
        if style["escapes"] and rnd.random() < 0.3:
            return '"' + "".join("\\/" if c == "/" else f"\\u{ord(c):04x}" for c in value) + '"'
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


@pytest.fixture(scope="module")
def value_pool(flow_records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return _fixture_values(flow_records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    style=st.fixed_dictionaries(
        {
            "camel": st.booleans(),
            "numeric_enums": st.booleans(),
            "escapes": st.booleans(),
            "spaces": st.booleans(),
        }
    ),
)
def test_prefilter_is_sound_on_random_filters_and_encodings(
    seed: int, style: dict[str, bool], flow_records: list[dict[str, Any]], value_pool: dict[str, list[Any]]
) -> None:
    rnd = random.Random(seed)
    allow = _random_filters(rnd, value_pool)
    deny = _random_filters(rnd, value_pool) if rnd.random() < 0.3 else []
    try:
        predicate = compile_flow_filters(allow, deny)
    except FilterError:
        with pytest.raises(FilterError):
            compile_byte_prefilter(allow, [])
            compile_byte_prefilter(deny, [])
        return
    prefilter = compile_byte_prefilter(allow, deny)
    if prefilter is None:
        return
    for record in rnd.sample(flow_records, 40):
        mutated = {
            "flow": _mutate(record["flow"], rnd, value_pool),
            **{k: v for k, v in record.items() if k != "flow"},
        }
        line = _encode(mutated, rnd, style).encode()
        if predicate(mutated):
            assert prefilter(line), (allow, line)
