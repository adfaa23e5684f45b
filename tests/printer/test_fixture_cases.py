"""Render the upstream fixture cases that need no real filtering and compare byte for byte.

The records are selected here with tiny predicates that mirror the case's flags (the real filters
are tested elsewhere); the point is the printed bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import orjson
import pytest
from hubbletest import FIXTURES

from hubblepy.printer import Printer, PrintOptions


def _load() -> tuple[list[dict], dict[str, dict]]:
    flows = [orjson.loads(line) for line in (FIXTURES / "flows.jsonl").read_bytes().splitlines()]
    cases = {}
    for line in (FIXTURES / "expected" / "cases.jsonl").read_bytes().splitlines():
        case = orjson.loads(line)
        cases[case["name"]] = case
    return flows, cases


FLOWS, CASES = _load()
Select = Callable[[list[dict]], list[dict]]


def _where(predicate: Callable[[dict], bool]) -> Select:
    return lambda records: [r for r in records if predicate(r["flow"])]


def _event_type(flow: dict) -> dict:
    return flow.get("event_type", {})


def _in_namespace(name: str) -> Callable[[dict], bool]:
    return lambda f: name in (f.get("source", {}).get("namespace"), f.get("destination", {}).get("namespace"))


def _verdict(name: str) -> Callable[[dict], bool]:
    return lambda f: f.get("verdict") == name


def _uuids(case: dict) -> Select:
    wanted = {case["args"][i + 1] for i, arg in enumerate(case["args"]) if arg == "--uuid"}
    return _where(lambda f: f["uuid"] in wanted)


def _all(records: list[dict]) -> list[dict]:
    return records


SELECTED: dict[str, tuple[PrintOptions, Select]] = {
    "compact-all-default": (PrintOptions(), _all),
    "first-4": (PrintOptions(), lambda r: r[:4]),
    "follow-last-2": (PrintOptions(), lambda r: r[-2:]),
    "dict-first-8": (PrintOptions(output="dict"), lambda r: r[:8]),
    "json-all-roundtrip": (PrintOptions(output="json"), _all),
    "json-time-format-ignored": (PrintOptions(output="json", time_format="RFC1123Z"), lambda r: r[-2:]),
    "jsonpb-kafka": (PrintOptions(output="json"), _where(lambda f: "kafka" in f.get("l7", {}))),
    "color-always-first-12": (PrintOptions(color=True), lambda r: r[:12]),
    "color-always-table-has-no-colour": (PrintOptions(output="table", color=True), lambda r: r[:3]),
    "color-always-rare-verdicts": (
        PrintOptions(color=True),
        _where(lambda f: f.get("verdict") not in ("FORWARDED", "DROPPED", "REDIRECTED")),
    ),
    "color-always-dict-dropped": (
        PrintOptions(output="dict", color=True),
        lambda r: _where(_verdict("DROPPED"))(r)[:3],
    ),
    "color-always-auth-policy-names": (
        PrintOptions(color=True, print_policy_names=True),
        _where(
            lambda f: (
                _event_type(f).get("type") == 5
                and f.get("source", {}).get("namespace") == "cde"
                and bool(f.get("source", {}).get("pod_name"))
            )
        ),
    ),
    "verdict-dropped": (PrintOptions(), _where(_verdict("DROPPED"))),
    "all-translated": (PrintOptions(), _where(_verdict("TRANSLATED"))),
    "last-3-dropped": (PrintOptions(), lambda r: _where(_verdict("DROPPED"))(r)[-3:]),
    "table-dropped": (PrintOptions(output="table"), _where(_verdict("DROPPED"))),
    "table-no-match-empty": (PrintOptions(output="table"), lambda r: []),
    "table-tab-alias-dns-node-rfc3339micro": (
        PrintOptions(output="table", print_node_name=True, time_format="RFC3339Micro"),
        _where(lambda f: "dns" in f.get("l7", {})),
    ),
    "policy-names-compact": (
        PrintOptions(print_policy_names=True),
        _where(lambda f: _event_type(f).get("type") == 5),
    ),
    "dict-policy-verdict-names-node": (
        PrintOptions(output="dict", print_policy_names=True, print_node_name=True),
        lambda r: _where(lambda f: _event_type(f).get("type") == 5)(r)[-5:],
    ),
    "compact-node-name-prod-us": (
        PrintOptions(print_node_name=True),
        _where(lambda f: f.get("node_name", "").startswith("prod-us/")),
    ),
    "namespace-cde": (PrintOptions(), _where(_in_namespace("cde"))),
    "numeric-cde": (PrintOptions(numeric=True), lambda r: _where(_in_namespace("cde"))(r)[:10]),
    "ip-translation-false-to-network": (
        PrintOptions(numeric=True),
        _where(lambda f: _event_type(f) == {"type": 4, "sub_type": 11}),
    ),
}
for _name, _case in CASES.items():
    if _name.startswith("time-format-"):
        SELECTED[_name] = (PrintOptions(time_format=_case["args"][-1]), _uuids(_case))


@pytest.mark.parametrize("name", sorted(SELECTED))
def test_fixture_case_bytes(name: str, stdout_of) -> None:
    case = CASES[name]
    options, select = SELECTED[name]
    records = select(FLOWS)
    assert records or case["stdout"] == ""
    assert stdout_of(options, records) == case["stdout"]


def test_raw_bytes_are_reused_for_json() -> None:
    raw_lines = (FIXTURES / "flows.jsonl").read_bytes().splitlines()
    out = io.BytesIO()
    printer = Printer(PrintOptions(output="json"), out, io.BytesIO())
    for raw in raw_lines:
        printer.write(orjson.loads(raw), raw)
    printer.close()
    assert out.getvalue() == CASES["json-all-roundtrip"]["stdout"].encode()


def test_legacy_json_prints_the_bare_flow(stdout_of) -> None:
    got = stdout_of(PrintOptions(output="json", legacy_json=True), FLOWS[:5])
    assert [orjson.loads(line) for line in got.splitlines()] == [r["flow"] for r in FLOWS[:5]]
    assert got.startswith('{"time":"2024-02-29T23:56:58.592508929Z","uuid":')


def test_local_json_fallback_matches_upstream() -> None:
    from hubblepy.printer.jsonout import _encode_locally

    encoded = b"".join(_encode_locally(record) + b"\n" for record in FLOWS)
    assert encoded == CASES["json-all-roundtrip"]["stdout"].encode()
