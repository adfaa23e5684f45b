"""Filter flags to FlowFilter dicts: value parsing and the allow/deny trackers (upstream hubble 1.19)."""

from __future__ import annotations

import pytest

from hubblepy.cli.filter_flags import (
    FLOW_FILTER_FIELDS,
    FilterBuilder,
    FilterFlagError,
    go_parse_uint,
    parse_event_type,
    parse_identity,
    parse_tcp_flags,
    parse_workload,
)


def build(*pairs: tuple[str, str]) -> FilterBuilder:
    builder = FilterBuilder()
    for name, value in pairs:
        builder.set(name, value)
    return builder


def test_declaration_order_comes_from_the_proto() -> None:
    assert FLOW_FILTER_FIELDS[:4] == ("uuid", "source_ip", "source_ip_xlated", "source_pod")
    assert FLOW_FILTER_FIELDS[-3:] == ("ip_trace_id", "encrypted", "experimental")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("trace", {"type": 4}),
        ("trace:to-endpoint", {"type": 4, "match_sub_type": True}),
        ("trace:from-network", {"type": 4, "match_sub_type": True, "sub_type": 10}),
        ("4:9", {"type": 4, "match_sub_type": True, "sub_type": 9}),
        ("drop:133", {"type": 1, "match_sub_type": True, "sub_type": 133}),
        ("policy-verdict", {"type": 5}),
        ("l7", {"type": 129}),
        ("agent:ipcache-deleted", {"type": 130, "match_sub_type": True, "sub_type": 10}),
        ("0", {}),
        ("2147483648", {"type": -2147483648}),
    ],
)
def test_event_types(value: str, expected: dict) -> None:
    assert parse_event_type(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "Trace",
            "unable to parse type 'Trace', not a known type name and unable to parse as numeric value: "
            'strconv.ParseUint: parsing "Trace": invalid syntax',
        ),
        (
            "4294967296",
            "unable to parse type '4294967296', not a known type name and unable to parse as numeric "
            'value: strconv.ParseUint: parsing "4294967296": value out of range',
        ),
        (
            "drop:policy",
            "unable to parse event sub-type 'policy', not a known sub-type name and unable to parse as "
            'numeric value: strconv.ParseUint: parsing "policy": invalid syntax',
        ),
    ],
)
def test_event_type_errors(value: str, message: str) -> None:
    with pytest.raises(FilterFlagError) as info:
        parse_event_type(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("world", 2),
        ("overlay-to-encrypt", 11),
        ("0", 0),
        ("0x2", 2),
        ("0o2", 2),
        ("0b10", 2),
        ("02", 2),
        ("1_000", 1000),
        ("4294967295", 4294967295),
    ],
)
def test_identities(value: str, number: int) -> None:
    assert parse_identity(value) == number


@pytest.mark.parametrize("value", ["unknown", "World", "4294967296", "-1", "_1", "1__0", "08", ""])
def test_bad_identities(value: str) -> None:
    with pytest.raises(FilterFlagError):
        parse_identity(value)


def test_go_parse_uint_messages() -> None:
    assert go_parse_uint("0x10", 0, 64) == 16
    assert go_parse_uint("010", 0, 64) == 8
    assert go_parse_uint("010", 10, 64) == 10
    with pytest.raises(ValueError, match=r'^strconv.ParseUint: parsing "\+1": invalid syntax$'):
        go_parse_uint("+1", 0, 64)
    with pytest.raises(ValueError, match=r'^strconv.ParseUint: parsing "65536": value out of range$'):
        go_parse_uint("65536", 0, 16)


def test_tcp_flags_and_workloads() -> None:
    assert parse_tcp_flags("ack,SYN,Fin") == {"FIN": True, "SYN": True, "ACK": True}
    with pytest.raises(FilterFlagError, match="^unknown tcp flag: $"):
        parse_tcp_flags("syn,")
    assert parse_workload("api") == {"name": "api"}
    assert parse_workload("Deployment/api") == {"name": "api", "kind": "Deployment"}
    assert parse_workload("Deployment/") == {"kind": "Deployment"}
    assert parse_workload("") == {}


def test_trackers_are_separate() -> None:
    builder = build(("verdict", "DROPPED"), ("not", "true"), ("verdict", "AUDIT"), ("protocol", "tcp"))
    assert builder.allow_filters() == [{"verdict": ["DROPPED"], "protocol": ["tcp"]}]
    assert builder.deny_filters() == [{"verdict": ["AUDIT"]}]
    assert not builder.trailing_not
    builder.set("not", "true")
    assert builder.trailing_not


def test_namespace_flags_alone_still_make_filters() -> None:
    assert build(("to-namespace", "kube-system")).allow_filters() == [{"destination_pod": ["kube-system/"]}]
    assert build().allow_filters() == []


def test_inconsistent_pod_and_service_namespaces() -> None:
    with pytest.raises(FilterFlagError) as info:
        build(("from-pod", "a/x"), ("from-service", "b/y"))
    assert str(info.value) == 'namespace of service "b/y" conflict with pod "a"'
    assert build(("from-pod", "a/x"), ("from-service", "a/y")).allow_filters() == [
        {"source_pod": ["a/x"], "source_service": ["a/y"]}
    ]


def test_all_namespaces_conflicts_with_a_named_namespace() -> None:
    with pytest.raises(FilterFlagError) as info:
        build(("all-namespaces", "true"), ("pod", "shop/x"))
    assert str(info.value) == 'namespace conflict: "" does not contain "shop/x"'
