"""The upstream fixture's L7 flows, rebuilt as proxy access-log records and decoded by seven.py.

Every L7 flow of tests/fixtures/flows.jsonl (HTTP, DNS, Kafka) is turned back into the records a
proxy would have written (``parser_l7_records``), with a resolver that knows its endpoints
(``parser_fixture_events.resolver_for``), and decoded both ways the node can feed them: as dicts
(``SevenParser.decode_batch``) and as type-129 samples (``Parser.decode_batch``). The result must be
the fixture flow (key order included, ``uuid`` aside; ``parser_l7_records`` lists where Hubble's
rules cannot give the synthetic fixture's values), its JSON must be the upstream bytes, and
``hubble observe`` over a file where the rebuilt flows replace the fixture's must print the upstream
compact, dict and table bytes of the recorded cases.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from hubbletest import run_hubble
from parser_fixture_events import resolver_for
from parser_l7_records import corrections, expected_flow, records_for

from hubblepy.parser import Parser
from hubblepy.parser.seven import access_log_sample, parse_rfc3339_ns
from hubblepy.printer.jsonout import _encode_locally
from hubblepy.proxy.accesslog import timestamp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LINES = (FIXTURES / "flows.jsonl").read_bytes().splitlines()
CASES = {
    case["name"]: case
    for case in (
        json.loads(line) for line in (FIXTURES / "expected" / "cases.jsonl").read_text().splitlines()
    )
}
L7_INDEXES = [i for i, line in enumerate(LINES) if orjson.loads(line)["flow"]["event_type"]["type"] == 129]

# Recorded cases whose output holds L7 flows (non-JSON: the rebuilt flows print the same bytes).
PRINTED_CASES = [
    "compact-all-default",
    "compact-node-name-prod-us",
    "table-tab-alias-dns-node-rfc3339micro",
    "to-service-l7",
    "http-method-post",
    "http-status-50-plus",
    "http-path-regex",
    "from-label-neq",
    "port-9092",
    "namespace-cde",
    "color-always-rare-verdicts",
    "to-pod-any-namespace",
]


def decode(flow: dict, as_samples: bool | str) -> dict:
    """The flow seven.py gives for the rebuilt records (the last record's flow), uuid as the fixture's."""
    parser = Parser(
        resolver_for(flow),
        flow.get("node_name", ""),
        node_labels=flow.get("node_labels", ()),
        emitter_version=flow["emitter"].get("version", ""),
    )
    records = records_for(flow)
    now = parse_rfc3339_ns(flow["time"])
    if as_samples == "ring":  # into the node's ring undecoded, correlated, decoded when read
        from hubblepy.observer.core import Observer

        observer = Observer(flow.get("node_name", "") or "node")
        observer.use_parser(parser)
        observer.publish_l7(records, now, parser.seven)
        ring = observer.flows
        got = [entry.flow for _, entry in ring.read_many(range(ring.oldest_seq, ring.next_seq))[0]]
    elif as_samples:
        got = parser.decode_batch([(0, access_log_sample(r)) for r in records], now)
    else:
        got = parser.seven.decode_batch(records, now)
    assert parser.parse_errors == 0, (dict(parser.error_counts), parser.last_error)
    assert len(got) == len(records)
    out = got[-1]
    assert len(out["uuid"]) == 36
    out["uuid"] = flow["uuid"]
    return out


def test_fixture_has_http_dns_and_kafka_l7_flows() -> None:
    kinds = {
        next(k for k in orjson.loads(LINES[i])["flow"]["l7"] if k in ("http", "dns", "kafka"))
        for i in L7_INDEXES
    }
    assert kinds == {"http", "dns", "kafka"}
    assert len(L7_INDEXES) == 44  # HTTP 20, DNS 16, Kafka 8 (fixtures README)


@pytest.mark.parametrize("as_samples", [False, True, "ring"], ids=["records", "type-129-samples", "ring"])
def test_rebuilt_records_decode_to_the_fixture_flows(as_samples: bool | str) -> None:
    exact = 0
    for i in L7_INDEXES:
        flow = orjson.loads(LINES[i])["flow"]
        got = decode(flow, as_samples)
        expected = expected_flow(flow)
        assert got == expected, LINES[i].decode()
        assert list(got) == list(expected), "declaration order"
        if not corrections(flow):
            exact += 1
    assert exact == 23  # the other 21 carry a DNS/Kafka latency or an HTTP latency without X-Request-Id


def test_json_bytes_match_upstream_for_uncorrected_flows() -> None:
    checked = 0
    for i in L7_INDEXES:
        record = orjson.loads(LINES[i])
        if corrections(record["flow"]):
            continue
        record["flow"] = decode(record["flow"], as_samples=True)
        assert _encode_locally(record) == LINES[i]
        checked += 1
    assert checked == 23


def rebuilt_file(tmp_path: Path) -> Path:
    lines = list(LINES)
    for i in L7_INDEXES:
        record = orjson.loads(LINES[i])
        record["flow"] = decode(record["flow"], as_samples=True)
        lines[i] = _encode_locally(record)
    path = tmp_path / "flows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rebuilt_file(tmp_path_factory.mktemp("seven"))


@pytest.mark.parametrize("name", PRINTED_CASES)
def test_observe_prints_the_upstream_bytes_for_rebuilt_flows(name: str, rebuilt: Path) -> None:
    case = CASES[name]
    proc = run_hubble(["observe", "--input-file", rebuilt.name, *case["args"]], cwd=rebuilt.parent)
    assert proc.returncode == case["exit_code"], proc.stderr.decode()
    assert proc.stdout.decode() == case["stdout"]
    assert any("-request" in line or "-response" in line for line in case["stdout"].splitlines())


def _shifted(record: dict, n: int, j: int) -> dict:
    """The record as the next exchange on its connection would give it: a later Timestamp, other
    X-Request-Id values (the rest of the record, the template's key, unchanged)."""
    out = copy.deepcopy(record)
    out["Timestamp"] = timestamp(parse_rfc3339_ns(record["Timestamp"]) + n * (j + 1) * 1_234_567)
    headers = (out.get("HTTP") or {}).get("Headers") or {}
    for name, values in headers.items():
        if name.lower() == "x-request-id":
            headers[name] = [f"{v}-{n}" for v in values]
    return out


def test_http_templates_give_the_field_by_field_flows() -> None:
    """Records that repeat all but Timestamp and headers are built from a template: the same flows,
    bytes and key order included, as decoding each one field by field (a parser without templates)."""
    checked = 0
    for i in L7_INDEXES:
        flow = orjson.loads(LINES[i])["flow"]
        records = records_for(flow)
        now = parse_rfc3339_ns(flow["time"])
        parsers = [Parser(resolver_for(flow), flow.get("node_name", "")) for _ in range(2)]
        for n in range(3):
            batch = [_shifted(r, n, j) for j, r in enumerate(records)]
            fast = parsers[0].seven.decode_batch(batch, now)
            slow = [
                parsers[1].seven._decode_record(r, f["time"], f["uuid"])
                for r, f in zip(batch, fast, strict=True)
            ]
            assert [orjson.dumps(f) for f in fast] == [orjson.dumps(f) for f in slow], LINES[i].decode()
        if "http" in flow["l7"]:
            checked += 1
            # made the second time a key is seen, used the third
            assert any(parsers[0].seven._templates.values()), "HTTP records are built from templates"
    assert checked == 20
    assert parsers[0].parse_errors == 0


def test_ring_names_the_namespaces_of_keyed_and_plain_records() -> None:
    """Records published undecoded still name their namespaces (``hubble list namespaces``): one
    record decoded per key, and each record that has no key, wherever they sit in the batch (the
    namespaces are seen when published)."""
    from hubblepy.observer.core import Observer

    payments = orjson.loads(LINES[11])["flow"]  # default -> payments
    cde = orjson.loads(LINES[153])["flow"]  # cde -> cde
    parser = Parser(resolver_for(cde, resolver_for(payments)), "node")
    observer = Observer("node")
    observer.use_parser(parser)
    a, b = records_for(payments)[-1], records_for(cde)[-1]
    observer.publish_l7(
        [a, b, a], parse_rfc3339_ns(payments["time"]), parser.seven, keys=[(1, 1), None, (1, 1)]
    )
    assert [n["namespace"] for n in observer.namespaces()] == ["cde", "default", "payments"]
    observer._namespaces.clear()
    observer.publish_l7(
        [a, a, b], parse_rfc3339_ns(payments["time"]), parser.seven, keys=[(2, 1), (2, 1), None]
    )
    assert [n["namespace"] for n in observer.namespaces()] == ["cde", "default", "payments"]
