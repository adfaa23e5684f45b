"""Access-log rows read from the node's ring are built from their template key's flow
(``SevenParser.decode_row``), their GetFlows bytes from its shape (``l7wire``): the flows, the
GetFlows protobuf stream and the JSON lines are byte for byte those of the full decode
(``whole_record`` then ``decode_record``, then the usual encoders), for thousands of rows of many
templates and header sets (X-Request-Id holes, traceparent, redacted headers), requests and
responses with and without latency and trace IDs, denied requests, rows whose time the fast path
does not vouch for, templates redefined under the same number, and resolver changes between
batches (snapshots)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from hubblepy.api.observer import observer_pb2
from hubblepy.observer import service
from hubblepy.observer.core import Observer
from hubblepy.observer.service import ResponseEncoder, stream_ring
from hubblepy.parser import EndpointInfo, Parser, StaticResolver
from hubblepy.parser.seven import _ROW_NS_LIMIT
from hubblepy.proxy.accesslog import LazyRecord, RecordAssembler

NOW = 1_767_225_600_000_000_000
FRONTEND, API, OUTSIDE = "10.0.0.1", "10.0.0.2", "10.0.9.9"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

HEADER_SETS: list[dict[str, list[str]]] = [
    {"Host": ["api"], "X-Request-Id": [""]},  # the proxy's usual set: one hole
    {},
    {
        "Authorization": ["Bearer secret"],
        "Traceparent": [TRACEPARENT],
        "User-Agent": ["curl/8"],
        "X-Request-Id": [""],
    },
    {"X-Request-Id": ["a", "b"], "Accept": ["*/*"]},  # two values: no hole
    {"x-request-id": ["lower"], "Accept": ["*/*", "text/html"]},
    {"Cookie": [""], "Zeta": ["z"], "Alpha": ["a"], "Set-Cookie": ["k=v"]},
    {"Traceparent": ["not-a-traceparent"], "Content-Type": ["text/plain"]},
]


def _resolver() -> StaticResolver:
    r = StaticResolver()
    r.add_endpoint(
        EndpointInfo(
            id=11,
            identity=1001,
            namespace="payments",
            pod_name="frontend",
            labels=("k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"),
            workloads=(("frontend", "Deployment"),),
            ips=(FRONTEND,),
        )
    )
    r.add_endpoint(
        EndpointInfo(
            id=12,
            identity=1002,
            namespace="payments",
            pod_name="api",
            labels=("k8s:app=api", "k8s:io.kubernetes.pod.namespace=payments"),
            ips=(API,),
        )
    )
    r.set_identity(1001, ["k8s:app=frontend", "k8s:io.kubernetes.pod.namespace=payments"])
    r.set_identity(1002, ["k8s:app=api", "k8s:io.kubernetes.pod.namespace=payments"])
    r.set_dns_names(0, API, ["api.payments.svc"])
    r.set_service(API, 8080, "api", "payments")
    return r


def _change(r: StaticResolver, step: int) -> None:
    """One change of the node's state between batches (every flow of a later batch may differ)."""
    if step % 3 == 0:
        r.set_ipcache(OUTSIDE, 2 + step, "outside", f"pod-{step}")
    elif step % 3 == 1:
        r.add_endpoint(
            EndpointInfo(id=12, identity=1002, namespace="payments", pod_name=f"api-{step}", ips=(API,))
        )
    else:
        r.set_dns_names(0, FRONTEND, [f"frontend-{step}.payments.svc"])


def _template(rng: random.Random) -> dict[str, Any]:
    """A record as the proxy defines a template: ``Timestamp`` "" and ``Headers`` {}."""
    kind = rng.choice(["Request", "Response", "Response", "Sample"])
    verdict = rng.choice(["Forwarded", "Forwarded", "Denied", "Error"])
    ingress = rng.random() < 0.5
    client, server = (FRONTEND, rng.choice([API, OUTSIDE])) if ingress else (API, FRONTEND)
    src, dst = (client, server) if kind != "Response" else (server, client)
    port = rng.choice([40000, 40001, 8080])

    def endpoint(ip: str, p: int) -> dict[str, Any]:
        known = {FRONTEND: (11, 1001), API: (12, 1002)}.get(ip, (0, 0))
        ep: dict[str, Any] = {"IPv4": ip, "Port": p}
        if rng.random() < 0.7:
            ep.update({"ID": known[0], "Identity": known[1]})
        if rng.random() < 0.3:
            ep["Labels"] = ["k8s:app=x", "k8s:team=y"]
        return ep

    url: Any = {
        "Scheme": "http",
        "Host": "api:8080",
        "Path": rng.choice(["/", "/pay", "/a b/ü"]),
        "RawQuery": rng.choice(["", "q=1", "card=4111"]),
    }
    if rng.random() < 0.2:
        url["User"] = "user:pass"
    if rng.random() < 0.1:
        url = "http://user:pw@api:8080/plain?x=1"
    policy = {"name": "allow-get", "namespace": "payments", "labels": ["k8s:x=y"], "revision": "7"}
    ext: dict[str, Any] = {"proxy_port": rng.choice([0, 15001])}
    if verdict == "Forwarded":
        ext["allowed_by"] = [policy]
    elif verdict == "Denied":
        ext["denied_by"] = [dict(policy, name="deny-post")]
        ext["policy_log"] = ["denied POST"]
    record: dict[str, Any] = {
        "Type": kind,
        "Timestamp": "",
        "ObservationPoint": "Ingress" if ingress else "Egress",
        "SourceEndpoint": endpoint(src, port if kind != "Response" else 8080),
        "DestinationEndpoint": endpoint(dst, 8080 if kind != "Response" else port),
        "IPVersion": 0,
        "Verdict": verdict,
        "TransportProtocol": 6,
        "HTTP": {
            "Code": rng.choice([0, 200, 403, 503]) if kind != "Request" else 0,
            "Method": rng.choice(["GET", "POST", ""]),
            "URL": url,
            "Protocol": "HTTP/1.1",
            "Headers": {},
        },
        "hubblepy": ext,
    }
    if rng.random() < 0.05:  # an HTTP record with a DNS part: decoded as DNS, never templated
        record["DNS"] = {"Query": "api.payments.svc.", "QTypes": [1]}
    return record


def _ns(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.03:  # times the fast path does not vouch for (some do not decode at all)
        return rng.choice([-1, -(10**9) - 7, -(2**63)])
    if roll < 0.05:
        return rng.choice([0, 1, 2**63 - 1, 2**64 - 1])
    return NOW - rng.randrange(10**12)


def _access_log(rng: random.Random, batches: int) -> list[bytes]:
    """Lines of one access-log connection: template and header-set definitions, row batches, and
    now and then a template number defined again with another record."""
    lines = [b'["H",%d,%b]' % (100 + i, orjson.dumps(h)) for i, h in enumerate(HEADER_SETS)]
    templates = 12
    lines += [b'["T",%d,%b]' % (n, orjson.dumps(_template(rng))) for n in range(1, templates + 1)]
    for _ in range(batches):
        if rng.random() < 0.15:
            lines.append(b'["T",%d,%b]' % (rng.randint(1, templates), orjson.dumps(_template(rng))))
        rows = []
        for _ in range(rng.randint(1, 60)):
            latency = rng.choice([0, 0, rng.randrange(1, 5 * 10**9)])
            trace = rng.choice(["", "", "0af7651916cd43dd8448eb211c80319c", "ab" * 16])
            request_id = rng.choice([None, None, "", "req-1", f"r-{rng.randrange(10**6)}"])
            headers = 100 + rng.randrange(len(HEADER_SETS))
            rows.append([rng.randint(1, templates), _ns(rng), latency, trace, headers, request_id])
        lines.append(orjson.dumps(rows))
    return lines


def _observers(resolver: StaticResolver) -> tuple[Observer, Observer]:
    """Two nodes over one resolver whose flows get the same UUIDs."""
    fast, full = Observer("node-1", 65535), Observer("node-1", 65535)
    fast.use_parser(Parser(resolver, "node-1"))
    full.use_parser(Parser(resolver, "node-1"))
    assert fast._decoder is not None and full._decoder is not None
    full._decoder._uuid_keys = fast._decoder._uuid_keys.copy()
    return fast, full


def _fill(seed: int, batches: int = 120) -> tuple[Observer, Observer, int]:
    """The same access log published into both nodes: with template keys (rows read from templates)
    and without (every row decoded in full, as before); the resolver changes between some batches."""
    rng = random.Random(seed)
    resolver = _resolver()
    fast, full = _observers(resolver)
    assembler = RecordAssembler()
    rows = 0
    for i, line in enumerate(_access_log(rng, batches)):
        records, keys, correlations = assembler.assemble(line)
        if not records:
            continue
        rows += len(records)
        assert all(type(r) is LazyRecord for r in records)
        now = NOW + i * 1_000_003
        fast.publish_l7(records, now, fast._decoder.parser.seven, keys, correlations)  # type: ignore[union-attr]
        full.publish_l7(records, now, full._decoder.parser.seven, None, correlations)  # type: ignore[union-attr]
        if rng.random() < 0.2:
            _change(resolver, i)
    assert assembler.bad == 0
    return fast, full, rows


def _get_flows(observer: Observer, json: bool = False) -> bytes:
    """A full unfiltered GetFlows stream as the node serves it (protobuf framed, or JSON lines)."""
    ring = observer.flows
    encoder = ResponseEncoder(observer_pb2.GetFlowsResponse)
    request = observer_pb2.GetFlowsRequest(first=True)
    if json:
        return b"".join(stream_ring(ring, request, lambda: True, encoder.encode_json, "node-1"))
    frames = service.flow_templates(observer, None, None, None)
    responses = stream_ring(
        ring, request, lambda: True, encoder.encode, "node-1", idle_marker=True, frames=frames
    )
    return b"".join(bytes(chunk) for chunk in service.flows_on_wire(responses, True))


def _responses(observer: Observer) -> list[bytes]:
    ring = observer.flows
    return [orjson.dumps(e.response) for _, e in ring.read_many(range(ring.oldest_seq, ring.next_seq))[0]]


def _templated(observer: Observer) -> int:
    """Template keys the node's snapshot parsers keep (rows read from a template's flow)."""
    decoder = observer._decoder
    assert decoder is not None
    return sum(len(parser.seven._rows) for parser in decoder._parsers.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_from_templates_are_the_full_decode_byte_for_byte(seed: int) -> None:
    fast, full, rows = _fill(seed)
    # the first read of each ring is a GetFlows stream (it decodes), then the flows it cached
    fast_stream, full_stream = _get_flows(fast), _get_flows(full)
    assert fast_stream == full_stream and len(fast_stream) > rows * 300
    assert _templated(fast) > 0 and _templated(full) == 0
    # most rows were built from a shape, and so were their GetFlows bytes (l7wire)
    entries = [e for _, e in fast.flows.read_many(range(fast.flows.oldest_seq, fast.flows.next_seq))[0]]
    assert sum(e.shape is not None for e in entries) > 0.7 * rows
    fast_flows, full_flows = _responses(fast), _responses(full)
    assert len(fast_flows) == len(full_flows) and len(fast_flows) > 0.97 * rows
    for got, want in zip(fast_flows, full_flows, strict=True):
        assert got == want
    assert _get_flows(fast, json=True) == _get_flows(full, json=True)
    assert fast.flows.decoder.parser.parse_errors == full.flows.decoder.parser.parse_errors  # type: ignore[union-attr]
    assert dict(fast.flows.decoder.parser.error_counts) == dict(full.flows.decoder.parser.error_counts)  # type: ignore[union-attr]


def test_rows_read_first_as_flows_then_as_json() -> None:
    fast, full, _ = _fill(4, batches=60)
    assert _responses(fast) == _responses(full)
    assert _get_flows(fast, json=True) == _get_flows(full, json=True)
    assert _get_flows(fast) == _get_flows(full)


def test_what_differs_between_rows_of_one_template() -> None:
    """Every per-row field takes its row's value (a field copied from the template's first row
    where it should have been worked out per row fails here)."""
    resolver = _resolver()
    fast, full = _observers(resolver)
    base = _template(random.Random(5))
    base.pop("DNS", None)
    base["Type"], base["Verdict"], base["HTTP"]["Code"] = "Response", "Forwarded", 200
    assembler = RecordAssembler()
    assembler.assemble(b'["T",1,' + orjson.dumps(base) + b"]")
    assembler.assemble(b'["H",2,{"X-Request-Id":[""],"Traceparent":["%b"]}]' % TRACEPARENT.encode())
    assembler.assemble(b'["H",3,{"Accept":["*/*"]}]')
    rows = [
        [1, NOW, 1_500_000, "ab" * 16, 2, "first"],
        [1, NOW + 1, 2_700_000_000, "cd" * 16, 2, "second"],
        [1, NOW + 2, 0, "", 2, ""],
        [1, NOW + 3, 0, "", 3, None],
        [1, NOW + 4, 12, "", 3, "added"],
    ]
    records, keys, correlations = assembler.assemble(orjson.dumps(rows))
    for i, record in enumerate(records):
        fast.publish_l7([record], NOW + i, fast._decoder.parser.seven, [keys[i]], [correlations[i]])  # type: ignore[union-attr]
        full.publish_l7([record], NOW + i, full._decoder.parser.seven, None, [correlations[i]])  # type: ignore[union-attr]
    got, want = _responses(fast), _responses(full)
    assert got == want
    flows = [orjson.loads(g)["flow"] for g in got]
    assert len({f["time"] for f in flows}) == len({f["uuid"] for f in flows}) == 5
    assert [f["l7"].get("latency_ns") for f in flows] == ["1500000", "2700000000", None, None, "12"]
    assert [f["Summary"].split()[2] for f in flows] == ["1ms", "2700ms", "0ms", "0ms", "0ms"]
    assert [f.get("trace_context", {}).get("parent", {}).get("trace_id") for f in flows] == [
        "ab" * 16,
        "cd" * 16,
        None,
        None,
        None,
    ]
    assert [f["l7"]["http"]["headers"] for f in flows] == [
        [{"key": "Traceparent", "value": TRACEPARENT}, {"key": "X-Request-Id", "value": "first"}],
        [{"key": "Traceparent", "value": TRACEPARENT}, {"key": "X-Request-Id", "value": "second"}],
        [{"key": "Traceparent", "value": TRACEPARENT}, {"key": "X-Request-Id"}],
        [{"key": "Accept", "value": "*/*"}],
        [{"key": "Accept", "value": "*/*"}, {"key": "X-Request-Id", "value": "added"}],
    ]
    assert _templated(fast) == 1
    assert _get_flows(fast) == _get_flows(full)


def test_a_template_number_defined_again_gets_a_new_template() -> None:
    resolver = _resolver()
    fast, full = _observers(resolver)
    assembler = RecordAssembler()
    first = _template(random.Random(6))
    first.pop("DNS", None)
    second = dict(first, Verdict="Denied", hubblepy={"denied_by": [{"name": "deny"}]})
    second["HTTP"] = dict(first["HTTP"], Method="DELETE")
    assembler.assemble(b'["H",9,{"X-Request-Id":[""]}]')
    for record in (first, second, first):
        assembler.assemble(b'["T",1,' + orjson.dumps(record) + b"]")
        records, keys, correlations = assembler.assemble(orjson.dumps([[1, NOW, 0, "", 9, "x"]] * 3))
        fast.publish_l7(records, NOW, fast._decoder.parser.seven, keys, correlations)  # type: ignore[union-attr]
        full.publish_l7(records, NOW, full._decoder.parser.seven, None, correlations)  # type: ignore[union-attr]
    got = _responses(fast)
    assert got == _responses(full)
    assert _get_flows(fast) == _get_flows(full)
    methods = [orjson.loads(g)["flow"]["l7"]["http"].get("method") for g in got]
    assert (
        methods
        == [first["HTTP"]["Method"] or None] * 3 + ["DELETE"] * 3 + [first["HTTP"]["Method"] or None] * 3
    )


def test_http_templates_keep_the_field_order_of_a_flow_without_summary() -> None:
    """A record without a Summary (Type Sample) with a trace ID and a policy attribution: the flows
    decode_record builds from its HTTP template put trace_context where the full decode does."""
    base = _template(random.Random(8))
    base.pop("DNS", None)
    base.update(
        Type="Sample", Verdict="Forwarded", ObservationPoint="Ingress", Timestamp="2026-01-01T00:00:00Z"
    )
    base["hubblepy"] = {"allowed_by": [{"name": "allow"}], "policy_log": ["log"]}
    parser = Parser(_resolver(), "node-1")
    want = parser.seven._decode_record(orjson.loads(orjson.dumps(base)), "t", "u", (0, "ab" * 16))
    assert "Summary" not in want and list(want)[-3:] == ["trace_context", "ingress_allowed_by", "policy_log"]
    for _ in range(3):  # the third is built from the template
        got = parser.seven.decode_record(orjson.loads(orjson.dumps(base)), "t", "u", (0, "ab" * 16))
        assert orjson.dumps(got) == orjson.dumps(want)


def test_rows_at_the_ends_of_the_time_range() -> None:
    """Rows whose time the JSON rows cannot carry (made directly): up to the last nanosecond before
    year 10000 from the template, at and after it in full (those do not decode)."""
    resolver = _resolver()
    fast, full = _observers(resolver)
    base = _template(random.Random(7))
    base.pop("DNS", None)
    headers = {"X-Request-Id": [""]}
    times = [NOW, 0, _ROW_NS_LIMIT - 1, _ROW_NS_LIMIT, 10**21, NOW, -5]
    records = [LazyRecord(base, base["HTTP"], ns, headers, "r") for ns in times]
    keys, correlations = [(0, 1)] * len(records), [(5, "")] * len(records)
    fast.publish_l7(records, NOW, fast._decoder.parser.seven, keys, correlations)  # type: ignore[union-attr]
    full.publish_l7(records, NOW, full._decoder.parser.seven, None, correlations)  # type: ignore[union-attr]
    got = _responses(fast)
    assert got == _responses(full) and len(got) == 5
    assert _templated(fast) == 1
    assert _get_flows(fast) == _get_flows(full)
