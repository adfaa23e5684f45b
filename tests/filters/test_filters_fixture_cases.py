"""Upstream filter cases: our predicate must select exactly the flows upstream printed.

Each filter case of expected/cases.jsonl is hand-translated into FlowFilters with the rules of
upstream's filter flags (either-side flags give a source and a destination filter, ``--not`` goes to
the deny list, raw ``--allowlist`` filters are separate entries). The predicate runs over
flows.jsonl; the selected flows' StampMilli timestamps (or uuids, for JSON output) must equal,
in order, the ones in upstream's stdout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from hubblepy.filters import compile_flow_filters


def _both(**fields: Any) -> list[dict[str, Any]]:
    """An either-side flag: one filter per side, with the shared fields copied into both."""
    (flag, value), *_ = ((k, v) for k, v in fields.items() if k.startswith("_"))
    rest = {k: v for k, v in fields.items() if not k.startswith("_")}
    return [{f"source{flag}": value, **rest}, {f"destination{flag}": value, **rest}]


TRACE, DROP, POLICY_VERDICT, L7 = 4, 1, 5, 129

# case name -> (allow, deny, selection) where selection is ("first"|"last", n) or None
TRANSLATED: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[str, int] | None]] = {
    "compact-all-default": ([], [], None),
    "compact-node-name-prod-us": ([{"node_name": ["prod-us/*"]}], [], None),
    "dict-first-8": ([], [], ("first", 8)),
    "dict-policy-verdict-names-node": ([{"event_type": [{"type": POLICY_VERDICT}]}], [], ("last", 5)),
    "table-dropped": ([{"verdict": ["DROPPED"]}], [], None),
    "table-no-match-empty": ([{"verdict": ["TRANSLATED"], "protocol": ["udp"]}], [], None),
    "json-all-roundtrip": ([], [], None),
    "jsonpb-kafka": ([{"protocol": ["kafka"]}], [], None),
    "json-time-format-ignored": ([], [], ("last", 2)),
    "time-format-stampmilli": (
        [
            {
                "uuid": [
                    "b17fb96e-13bf-45c6-95dd-69ebf3a0194e",
                    "b00d3565-69b5-445b-b0f7-fb0b603e6ed4",
                    "e96f4145-fb1b-41d3-af8d-52acd3141d1f",
                    "84ee98be-152f-4e4e-bf29-f32113472617",
                    "13220d25-7d71-494d-8347-15e29e6ac85e",
                    "0d544642-09bb-4793-b2ea-92b218d83852",
                    "ed709177-6c38-48ab-b901-2139231c2da0",
                ]
            }
        ],
        [],
        None,
    ),
    "color-always-first-12": ([], [], ("first", 12)),
    "color-always-rare-verdicts": ([], [{"verdict": ["FORWARDED", "DROPPED", "REDIRECTED"]}], None),
    "color-always-auth-policy-names": (
        [{"event_type": [{"type": POLICY_VERDICT}], "source_pod": ["cde/"]}],
        [],
        None,
    ),
    "color-always-dict-dropped": ([{"verdict": ["DROPPED"]}], [], ("first", 3)),
    "color-always-table-has-no-colour": ([], [], ("first", 3)),
    "numeric-cde": (_both(_pod=["cde/"]), [], ("first", 10)),
    "ip-translation-false-to-network": (
        [{"event_type": [{"type": TRACE, "match_sub_type": True, "sub_type": 11}]}],
        [],
        None,
    ),
    "policy-names-compact": ([{"event_type": [{"type": POLICY_VERDICT}]}], [], None),
    "verdict-dropped": ([{"verdict": ["DROPPED"]}], [], None),
    "not-two-flags-and": ([], _both(_pod=["payments/"], verdict=["FORWARDED"]), ("first", 40)),
    "namespace-cde": (_both(_pod=["cde/"]), [], None),
    "from-ns-to-ns": ([{"source_pod": ["payments/"], "destination_pod": ["kube-system/"]}], [], None),
    "pod-no-namespace-means-default": (_both(_pod=["frontend"]), [], None),
    "to-pod-any-namespace": ([{"destination_pod": ["/coredns"]}], [], None),
    "from-ns-prepended-to-from-pod": ([{"source_pod": ["payments/payments-worker"]}], [], None),
    "all-namespaces-drop": (_both(_pod=["/"], event_type=[{"type": DROP}]), [], None),
    "to-ip-cidr": ([{"destination_ip": ["10.8.1.0/24"]}], [], None),
    "ipv6-forwarded": ([{"ip_version": ["IPv6"], "verdict": ["FORWARDED"]}], [], None),
    "to-label-set-selector": (
        [
            {
                "destination_label": ["app in (payments-api, payments-db)"],
                "event_type": [{"type": TRACE, "match_sub_type": True}],
            }
        ],
        [],
        None,
    ),
    "from-label-neq": (
        [{"source_label": ["tier=backend,app!=fraud-check"], "protocol": ["kafka"]}],
        [],
        None,
    ),
    "protocol-icmp": ([{"protocol": ["icmp"]}], [], None),
    "port-9092": (_both(_port=["9092"]), [], None),
    "http-method-post": ([{"http_method": ["post"]}], [], None),
    "http-status-50-plus": ([{"http_status_code": ["50+"]}], [], None),
    "http-path-regex": ([{"http_path": ["^/v1/(charges|refunds)"]}], [], None),
    "type-trace-subtypes-name-and-number": (
        [
            {
                "event_type": [
                    {"type": TRACE, "match_sub_type": True, "sub_type": 4},
                    {"type": TRACE, "match_sub_type": True, "sub_type": 9},
                ]
            }
        ],
        [],
        None,
    ),
    "fqdn-glob-crosses-dots": (_both(_fqdn=["api.*"]), [], None),
    "from-fqdn-case-and-dot": ([{"source_fqdn": ["HOOKS.Slack.com."]}], [], None),
    "to-identity-reserved-names": ([{"destination_identity": [10, 7]}], [], None),
    "node-name-glob": ([{"node_name": ["lab-worker*"], "verdict": ["DROPPED"]}], [], None),
    "node-name-cluster-only": ([{"node_name": ["prod-us/"], "event_type": [{"type": DROP}]}], [], None),
    "drop-reason-two": ([{"drop_reason_desc": ["POLICY_DENY", "POLICY_DENIED"]}], [], None),
    "tcp-flags-all-of": ([{"tcp_flags": [{"ACK": True, "PSH": True}]}], [], None),
    "traffic-direction-ingress-pv": (
        [{"traffic_direction": ["INGRESS"], "event_type": [{"type": POLICY_VERDICT}]}],
        [],
        None,
    ),
    "allowlist-ored-with-flags": (
        [{"verdict": ["AUDIT"]}, {"source_pod": ["cde/"], "verdict": ["DROPPED"]}],
        [],
        None,
    ),
    "denylist-with-flags": ([{"source_pod": ["default/"]}], [{"destination_port": ["53"]}], None),
    "allowlist-reply-false-dropped": ([{"reply": [False], "verdict": ["DROPPED"]}], [], None),
    "to-service-l7": (
        [{"destination_service": ["payments/payments-api"], "event_type": [{"type": L7}]}],
        [],
        ("last", 6),
    ),
    "first-4": ([], [], ("first", 4)),
    "last-3-dropped": ([{"verdict": ["DROPPED"]}], [], ("last", 3)),
    "all-translated": ([{"verdict": ["TRANSLATED"]}], [], None),
    "follow-last-2": ([], [], ("last", 2)),
}

# Cases that are not about which flows a filter selects.
NOT_FILTER_CASES = {
    # other time formats: the printed timestamps are not StampMilli (same uuid filter as above)
    "table-tab-alias-dns-node-rfc3339micro",
    "time-format-yearmonthday",
    "time-format-yearmonthdayhour",
    "time-format-yearmonthdayhourminute",
    "time-format-rfc3339",
    "time-format-rfc3339milli",
    "time-format-rfc3339micro",
    "time-format-rfc3339nano",
    "time-format-rfc1123z",
    "time-format-unknown-falls-back",
    # time windows belong to the reader, not to FlowFilters
    "since-until-midnight",
    "since-date-only",
    "until-rfc1123z",
}


def _stamp_milli(rfc3339: str) -> str:
    date, _, rest = rfc3339.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    day = datetime.strptime(date, "%Y-%m-%d")
    millis = (fraction + "000")[:3]
    return f"{day.strftime('%b')} {day.day:2d} {clock}.{millis}"


def _printed_keys(case: dict[str, Any]) -> list[str]:
    args = case["args"]
    output = "compact"
    for flag in ("-o", "--output"):
        if flag in args:
            output = args[args.index(flag) + 1]
    lines = case["stdout"].splitlines()
    if output in ("json", "jsonpb"):
        return [orjson.loads(line)["flow"]["uuid"] for line in lines]
    if output == "dict":
        return [line.split(": ", 1)[1] for line in lines if line.startswith("  TIMESTAMP: ")]
    if output in ("table", "tab"):
        return [line[:19] for line in lines[1:]]
    return [line[:19] for line in lines]


def _selected_keys(case: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    args = case["args"]
    output = args[args.index("-o") + 1] if "-o" in args else "compact"
    if output in ("json", "jsonpb"):
        return [r["flow"]["uuid"] for r in records]
    return [_stamp_milli(r["flow"]["time"]) for r in records]


def test_every_case_is_translated_or_excluded(upstream_cases: dict[str, Any]) -> None:
    filter_like = {name for name in upstream_cases if not name.startswith("err-")}
    assert filter_like == set(TRANSLATED) | NOT_FILTER_CASES


@pytest.mark.parametrize("name", sorted(TRANSLATED))
def test_selection_matches_upstream(
    name: str, upstream_cases: dict[str, Any], flow_records: list[dict[str, Any]]
) -> None:
    case = upstream_cases[name]
    allow, deny, selection = TRANSLATED[name]
    predicate = compile_flow_filters(allow, deny)
    selected = [r for r in flow_records if predicate(r)]
    if selection is not None:
        how, count = selection
        selected = selected[:count] if how == "first" else selected[-count:]
    expected = _printed_keys(case)
    assert len(expected) == len(selected)
    assert _selected_keys(case, selected) == expected
