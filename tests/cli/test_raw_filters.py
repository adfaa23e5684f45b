"""Raw --allowlist/--denylist values: Go JSON stream splitting, protojson errors, YAML printing."""

from __future__ import annotations

import pytest

from hubblepy.cli.raw_filters import (
    RawFilterError,
    decode_flow_filters,
    go_json,
    render_raw_filters,
    split_json_values,
    yaml_quote,
)


@pytest.mark.parametrize(
    ("raw", "filters"),
    [
        ("", []),
        ("  \n", []),
        ("{}", [{}]),
        ('{"source_pod":["cde/"],"verdict":["DROPPED"]}', [{"source_pod": ["cde/"], "verdict": ["DROPPED"]}]),
        ('{"verdict":["DROPPED"],"reply":[false]}', [{"verdict": ["DROPPED"], "reply": [False]}]),
        (
            '{"uuid":["a"]}{"uuid":["b"]} {"uuid":["c"]}\n',
            [{"uuid": ["a"]}, {"uuid": ["b"]}, {"uuid": ["c"]}],
        ),
        (
            '{"destinationPort":["53"],"sourceIdentity":["5",1e1],"ipTraceId":[7],"eventType":[{"type":"4","matchSubType":true}]}',
            [
                {
                    "event_type": [{"type": 4, "match_sub_type": True}],
                    "destination_port": ["53"],
                    "source_identity": [5, 10],
                    "ip_trace_id": ["7"],
                }
            ],
        ),
        ('{"verdict":[2, 42]}', [{"verdict": ["DROPPED", 42]}]),
        ('{"uuid":null}', [{}]),
    ],
)
def test_decode(raw: str, filters: list[dict]) -> None:
    assert decode_flow_filters(raw) == filters


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"bogus":1}', 'proto: (line 1:2): unknown field "bogus"'),
        ("{", "unexpected EOF"),
        ('{"uuid":["a"]', "unexpected EOF"),
        ("[1]", "proto: syntax error (line 1:1): unexpected token ["),
        ("null", "proto: syntax error (line 1:1): unexpected token null"),
        ('"str"', 'proto: syntax error (line 1:1): unexpected token "str"'),
        ("x", "invalid character 'x' looking for beginning of value"),
        ("{}x", "invalid character 'x' looking for beginning of value"),
        ('{"a" 1}', "invalid character '1' after object key"),
        ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
        ('{"a":[1 2]}', "invalid character '2' after array element"),
        ('{"a":-x}', "invalid character 'x' in numeric literal"),
        ('{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
        ('{"verdict":["dropped"]}', 'proto: (line 1:13): invalid value for enum field verdict: "dropped"'),
        ('{"uuid":"x"}', 'proto: syntax error (line 1:9): unexpected token "x"'),
        ('{"uuid":[],"uuid":[]}', 'proto: (line 1:12): duplicate field "uuid"'),
        ('{}{"bogus":1}', 'proto: (line 1:2): unknown field "bogus"'),
        ('{\n  "bogus": 1}', 'proto: (line 2:3): unknown field "bogus"'),
    ],
)
def test_decode_errors(raw: str, reason: str) -> None:
    with pytest.raises(RawFilterError) as info:
        decode_flow_filters(raw)
    assert str(info.value) == f"failed to decode '{raw}': {reason}"


def test_split_json_values() -> None:
    assert split_json_values(' {"a":[1,{"b":"}"}]} 12 "x"true') == [
        b'{"a":[1,{"b":"}"}]}',
        b"12",
        b'"x"',
        b"true",
    ]


def test_go_json_escapes_like_go() -> None:
    assert (
        go_json({"http_path": ["<a&b>\u2028é\x7f\x1b"]})
        == '{"http_path":["\\u003ca\\u0026b\\u003e\\u2028é\x7f\\u001b"]}'
    )


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ('{"uuid":["a"]}', '\'{"uuid":["a"]}\''),
        ('{"uuid":["it\'s"]}', "'{\"uuid\":[\"it''s\"]}'"),
        ('{"uuid":["é"]}', '\'{"uuid":["é"]}\''),
        ('{"uuid":["\x7f"]}', '"{\\"uuid\\":[\\"\\x7F\\"]}"'),
        ('{"uuid":["\U0001f600"]}', '"{\\"uuid\\":[\\"\\U0001F600\\"]}"'),
    ],
)
def test_yaml_quoting(text: str, quoted: str) -> None:
    assert yaml_quote(text) == quoted


def test_render() -> None:
    assert render_raw_filters([], []) == "{}\n"
    assert (
        render_raw_filters([], [{"verdict": ["DROPPED"]}]) == 'denylist:\n    - \'{"verdict":["DROPPED"]}\'\n'
    )
    assert render_raw_filters([{}, {"uuid": ["x"]}], [{}]) == (
        "allowlist:\n    - '{}'\n    - '{\"uuid\":[\"x\"]}'\ndenylist:\n    - '{}'\n"
    )
