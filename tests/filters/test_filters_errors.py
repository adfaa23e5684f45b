"""Errors found while building filters carry upstream's exact one-line message."""

from __future__ import annotations

from typing import Any

import pytest

from hubblepy.filters import RESERVED_IDENTITIES, FilterError, compile_flow_filters, parse_identity

NAME_PART_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


@pytest.mark.parametrize(
    ("ff", "message"),
    [
        (
            {"destination_ip": ["10.8.0.0/40"]},
            'invalid IP prefix "10.8.0.0/40" in filter: netip.ParsePrefix("10.8.0.0/40"): prefix length out of range',
        ),
        (
            {"destination_ip": ["300.1.1.1"]},
            'invalid IP address "300.1.1.1" in filter: ParseAddr("300.1.1.1"): IPv4 field has value >255',
        ),
        (
            {"source_ip": ["10.1.1"]},
            'invalid IP address "10.1.1" in filter: ParseAddr("10.1.1"): IPv4 address too short',
        ),
        (
            {"source_ip": ["fd00::1::2"]},
            'invalid IP address "fd00::1::2" in filter: ParseAddr("fd00::1::2"): multiple :: in address (at ":2")',
        ),
        (
            {"source_ip_xlated": ["1.2.3.4/x"]},
            'invalid IP prefix "1.2.3.4/x" in filter: netip.ParsePrefix("1.2.3.4/x"): bad bits after slash: "x"',
        ),
        (
            {"source_port": ["70000"]},
            'invalid source port filter: invalid port "70000": strconv.ParseUint: parsing "70000": value out of range',
        ),
        (
            {"destination_port": ["abc"]},
            'invalid destination port filter: invalid port "abc": strconv.ParseUint: parsing "abc": invalid syntax',
        ),
        ({"protocol": ["tcpx"]}, 'invalid protocol filter: unknown protocol: "tcpx"'),
        ({"http_status_code": ["5xx"]}, 'invalid http status code filter: invalid status code prefix: "5xx"'),
        ({"http_status_code": ["600"]}, 'invalid http status code filter: invalid status code prefix: "600"'),
        ({"http_path": ["("]}, "invalid http path filter: (: error parsing regexp: missing closing ): `(`"),
        ({"http_url": ["[a"]}, "invalid http url filter: [a: error parsing regexp: missing closing ]: `[a`"),
        (
            {"dns_query": ["a**"]},
            "invalid DNS query filter: failed to compile regexp: error parsing regexp: "
            "invalid nested repetition operator: `**`",
        ),
        (
            {"http_status_code": ["500"], "event_type": [{"type": 1}]},
            "filtering by http status code requires the event type filter to only match 'l7' events",
        ),
        (
            {"http_method": ["GET"], "event_type": [{"type": 4}]},
            "filtering by http method requires the event type filter to only match 'l7' events",
        ),
        (
            {"http_path": ["/"], "event_type": [{"type": 4}]},
            "filtering by http path requires the event type filter to only match 'l7' events",
        ),
        (
            {"http_url": ["/"], "event_type": [{"type": 4}]},
            "filtering by http url requires the event type filter to only match 'l7' events",
        ),
        (
            {"http_header": [{"key": "a", "value": "b"}], "event_type": [{"type": 4}]},
            "filtering by http headers requires the event type filter to only match 'l7' events",
        ),
        ({"source_pod": [""]}, "invalid filter, name must not be empty"),
        ({"source_service": [""]}, "invalid source service filter: invalid filter, name must not be empty"),
        (
            {"destination_service": [""]},
            "invalid destination service filter: invalid filter, name must not be empty",
        ),
        ({"source_cluster_name": [""]}, "invalid filter, name must not be empty"),
        ({"source_fqdn": ["a b"]}, "' ': invalid rune in pattern"),
        ({"destination_fqdn": ["a:b"]}, "':': invalid rune in pattern"),
        ({"destination_fqdn": ["  "]}, "empty pattern"),
        ({"destination_fqdn": ["a.."]}, "multiple trailing dots in pattern"),
        ({"node_name": ["x/y/z"]}, "too many slashes in pattern"),
        ({"node_name": [""]}, "empty pattern"),
        (
            {"destination_label": ["fqdn:*.x.com"]},
            'invalid destination label filter: unable to parse requirement: <nil>: Invalid value: "fqdn.*.x.com": '
            + NAME_PART_RULE,
        ),
        (
            {"source_label": ["bad_=x"]},
            'invalid source label filter: unable to parse requirement: <nil>: Invalid value: "any.bad_": '
            + NAME_PART_RULE,
        ),
        (
            {"source_label": ["a in (x"]},
            "invalid source label filter: unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            {"source_label": ["a=b c"]},
            "invalid source label filter: found 'c', expected: ',' or 'end of string'",
        ),
        ({"source_label": ["a,"]}, "invalid source label filter: found '', expected: identifier after ','"),
        (
            {"source_label": ["app=a_"]},
            'invalid source label filter: unable to parse requirement: values[0][any.app]: Invalid value: "a_": '
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
            "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            {"source_label": ["n>x"]},
            'invalid source label filter: unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ],
)
def test_build_errors(ff: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_flow_filters([ff], [])
    assert str(info.value) == message


def test_errors_in_deny_filters_too() -> None:
    with pytest.raises(FilterError, match="unknown protocol"):
        compile_flow_filters([], [{"protocol": ["nope"]}])


def test_first_field_in_upstream_order_is_reported() -> None:
    # upstream builds protocol before ports
    with pytest.raises(FilterError, match="^invalid protocol filter"):
        compile_flow_filters([{"source_port": ["x"], "protocol": ["x"]}], [])


def test_http_filters_allowed_with_l7_event_type() -> None:
    compile_flow_filters([{"http_method": ["GET"], "event_type": [{"type": 4}, {"type": 129}]}], [])


@pytest.mark.parametrize(
    "pattern", [r"(a)\1", "(?=x)", "(?!x)", "(?<=x)y", "(?<!x)y", "a*+", "(?>a)", r"\pL"]
)
def test_regex_features_re2_lacks_are_rejected(pattern: str) -> None:
    with pytest.raises(FilterError, match="^invalid http url filter: .*error parsing regexp"):
        compile_flow_filters([{"http_url": [pattern]}], [])


def test_unknown_fields_and_bad_shapes() -> None:
    with pytest.raises(FilterError, match="unknown field 'bogus'"):
        compile_flow_filters([{"bogus": [1]}], [])
    with pytest.raises(FilterError, match="must be a list"):
        compile_flow_filters([{"verdict": "DROPPED"}], [])
    with pytest.raises(FilterError, match="invalid verdict value"):
        compile_flow_filters([{"verdict": ["dropped"]}], [])
    for bad in ({"event_type": ["drop"]}, {"tcp_flags": [1]}, {"interface": [{"index": "x"}]}):
        with pytest.raises(FilterError, match="^invalid FlowFilter"):
            compile_flow_filters([bad], [])
    with pytest.raises(FilterError, match="^invalid source_identity value: -1.5$"):
        compile_flow_filters([{"source_identity": [-1.5]}], [])


def test_parse_identity() -> None:
    assert parse_identity("world-ipv6") == 10
    assert parse_identity("kube-apiserver") == 7
    assert parse_identity("overlay-to-encrypt") == 11
    assert RESERVED_IDENTITIES["host"] == 1
    for text, value in [
        ("2", 2),
        ("0x2", 2),
        ("0o2", 2),
        ("0b10", 2),
        ("02", 2),
        ("010", 8),
        ("1_000", 1000),
    ]:
        assert parse_identity(text) == value
    assert parse_identity("4294967295") == 2**32 - 1
    for bad in ["unknown", "nobody", "4294967296", "-1", "+1", " 1", "0x", "1__0", "World"]:
        with pytest.raises(FilterError) as info:
            parse_identity(bad)
        assert str(info.value) == (
            "invalid security identity, expected one of [host world unmanaged health init remote-node "
            "kube-apiserver ingress world-ipv4 world-ipv6 11] or a numeric value"
        )
