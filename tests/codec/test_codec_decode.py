"""ResponseDecoder, normalize and parse_message: fixture round trip, spec examples, errors, leniency."""

from __future__ import annotations

import orjson
import pytest

from hubblepy.codec import DecodeError, ResponseDecoder, encode_response, normalize, parse_message


def _fixture_lines(fixtures_dir):
    return (fixtures_dir / "flows.jsonl").read_bytes().splitlines()


def test_every_fixture_line_is_canonical_and_round_trips(fixtures_dir):
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    lines = _fixture_lines(fixtures_dir)
    assert len(lines) == 230
    for line in lines:
        record = decoder.decode(line)
        assert decoder.last_was_canonical, line[:120]
        assert record == orjson.loads(line)
        assert encode_response(record) == line


def test_fixture_lines_with_whitespace_are_normalised_back(fixtures_dir):
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    for line in _fixture_lines(fixtures_dir)[:40]:
        spaced = orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2).replace(b"\n", b" ")
        record = decoder.decode(spaced)
        assert not decoder.last_was_canonical
        assert encode_response(record) == line


SPEC_INPUT = (
    b'{"flow":{"uuid":"d","verdict":"DROPPED","sourceNames":["x.io"],"isReply":true,'
    b'"IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"sourcePort":"80"}},'
    b'"event_type":{"type":"4"}},"time":"2024-07-04T14:00:00.123+02:00"}'
)
SPEC_OUTPUT = (
    b'{"flow":{"uuid":"d","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},'
    b'"l4":{"TCP":{"source_port":80}},"source_names":["x.io"],"event_type":{"type":4},"is_reply":true},'
    b'"time":"2024-07-04T12:00:00.123Z"}'
)


def test_spec_non_canonical_example():
    decoder = ResponseDecoder()
    record = decoder.decode(SPEC_INPUT)
    assert not decoder.last_was_canonical
    assert encode_response(record) == SPEC_OUTPUT
    assert decoder.decode(SPEC_OUTPUT) == record
    assert decoder.last_was_canonical


CANONICAL_SPEC_LINES = [
    b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":2,'
    b'"first":"2024-07-04T12:00:01.500Z","last":"2024-07-04T12:00:01.750Z"},'
    b'"node_name":"lab-worker","time":"2024-07-04T12:00:02Z"}',
    b'{"lost_events":{"source":"OBSERVER_EVENTS_QUEUE","num_events_lost":"3"},"time":"2024-07-04T12:00:02.250Z"}',
    b'{"flow":{"time":"2024-07-04T12:00:11Z","uuid":"p12","verdict":"FORWARDED","IP":{"source":"10.1.0.5",'
    b'"destination":"10.1.0.6","ipVersion":"IPv4"},"source":{"ID":77,"identity":4242,"namespace":"shop",'
    b'"labels":["k8s:app=web"],"pod_name":"we\\u001b[1mb"},"destination":{"ID":78,"identity":4343,'
    b'"namespace":"shop","labels":["k8s:app=db"],"pod_name":"db-0"},"node_name":"lab-worker",'
    b'"event_type":{"type":4},"Summary":"a\\rb\\tc\\u003c\\u0026\\u003e\\u2028"},"node_name":"lab-worker",'
    b'"time":"2024-07-04T12:00:11Z"}',
    b'{"flow":{"time":"2024-05-01T10:00:00.123400Z","uuid":"u-1","verdict":"FORWARDED","IP":{"source":"10.0.0.1",'
    b'"ipVersion":"IPv4"},"l4":{"TCP":{"destination_port":80,"flags":{"SYN":true}}},"Type":"L3_L4",'
    b'"node_name":"n1","event_type":{"type":4},"is_reply":false,"socket_cookie":"12345",'
    b'"Summary":"TCP \\u003cx\\u003e \\u0026 y"},"node_name":"n1","time":"2024-05-01T10:00:00Z"}',
    b"{}",
    b'{"node_name":"x"}',
    b'{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","cpu":0}}',
    b'{"node_status":{"state_change":"NODE_ERROR","node_names":["a","b"],"message":"m"}}',
    b'{"flow":{"verdict":42}}',
]


@pytest.mark.parametrize("line", CANONICAL_SPEC_LINES)
def test_spec_canonical_lines_round_trip(line):
    decoder = ResponseDecoder()
    record = decoder.decode(line)
    assert encode_response(record) == line
    if line != b'{"flow":{"verdict":42}}':  # unknown enum numbers take the slow path
        assert decoder.last_was_canonical


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (  # lost events with numbers, camelCase, an offset, a wrapper holding 0 and nulls
            b'{"lostEvents":{"source":3,"numEventsLost":7,"cpu":0,"first":"2024-07-04T14:00:01.5+02:00",'
            b'"last":null},"nodeName":"lab-worker","time":"2024-07-04T12:00:02.000000Z"}',
            b'{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"7","cpu":0,'
            b'"first":"2024-07-04T12:00:01.500Z"},"node_name":"lab-worker","time":"2024-07-04T12:00:02Z"}',
        ),
        (  # defaults are dropped, present empty messages kept, oneof zero members kept
            b'{"flow":{"uuid":"","verdict":"VERDICT_UNKNOWN","source":{},"Type":0,"node_labels":[],'
            b'"drop_reason":0,"l4":{"TCP":{}},"socket_cookie":"0","is_reply":false}}',
            b'{"flow":{"l4":{"TCP":{}},"source":{},"is_reply":false}}',
        ),
        (  # 64-bit numbers, 32-bit strings, exponent forms, fraction digits
            b'{"flow":{"time":"2024-07-04T12:00:00.1Z","cgroup_id":1e3,"proxy_port":"8080",'
            b'"socket_cookie":"18446744073709551615"}}',
            b'{"flow":{"time":"2024-07-04T12:00:00.100Z","proxy_port":8080,"socket_cookie":"18446744073709551615",'
            b'"cgroup_id":"1000"}}',
        ),
        (  # nanosecond precision, trailing zero groups trimmed
            b'{"time":"2024-07-04T12:00:00.123456000Z"}',
            b'{"time":"2024-07-04T12:00:00.123456Z"}',
        ),
        (  # Any with @type
            b'{"flow":{"extensions":{"@type":"type.googleapis.com/flow.Emitter","version":"1","name":"x"}}}',
            b'{"flow":{"extensions":{"@type":"type.googleapis.com/flow.Emitter","name":"x","version":"1"}}}',
        ),
        (b'{"node_name":"<"}', b'{"node_name":"\\u003c"}'),  # compact but not HTML-escaped
        ('{"node_name":"a\u2028&"}'.encode(), b'{"node_name":"a\\u2028\\u0026"}'),
        (  # escapes written differently
            b'{"flow":{"Summary":"\\u0041\\/\\u00e9<"}}',
            '{"flow":{"Summary":"A/é\\u003c"}}'.encode(),
        ),
    ],
)
def test_non_canonical_lines_are_normalised(line, expected):
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    record = decoder.decode(line)
    assert not decoder.last_was_canonical
    assert encode_response(record) == expected
    assert decoder.decode(expected) == record


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "proto: syntax error (line 1:1): invalid value not"),
        (b"", "proto: syntax error (line 1:1): unexpected token "),
        (b'"str"', 'proto: syntax error (line 1:1): unexpected token "str"'),
        (b"[1,2,3]", "proto: syntax error (line 1:1): unexpected token ["),
        (b'{"flow":{"uuid":1}}', "proto: (line 1:17): invalid value for string field uuid: 1"),
        (b'{"flow":{"source":5}}', "proto: syntax error (line 1:19): unexpected token 5"),
        (b'{"flow":{"uuid":"x","uuid":"y"}}', 'proto: (line 1:21): duplicate field "uuid"'),
        (
            b'{"flow":{"l4":{"TCP":{},"UDP":{}}}}',
            'proto: (line 1:25): error parsing "UDP", oneof flow.Layer4.protocol is already set',
        ),
        (
            b'{"flow":{"time":"2024-02-30T00:00:00Z"}}',
            'proto: (line 1:17): invalid google.protobuf.Timestamp value "2024-02-30T00:00:00Z"',
        ),
        (b'{"flow":{"is_reply":"x"}}', 'proto: (line 1:21): invalid value for bool field value: "x"'),
        (b'{"flow":{"verdict":1.5}}', "proto: (line 1:20): invalid value for enum field verdict: 1.5"),
        (
            b'{"flow":{"node_labels":[null]}}',
            "proto: (line 1:25): invalid value for string field nodeLabels: null",
        ),
        (
            b'{"lost_events":{"num_events_lost":-1}}',
            "proto: (line 1:35): invalid value for uint64 field numEventsLost: -1",
        ),
        (b'{"flow":{"l4":{"TCP":{"source_port":4294967296}}}}', None),
        (b'{"flow":', "proto: unexpected EOF"),
        (b'{"flow":{}} x', "proto: syntax error (line 1:13): invalid value x"),
        (
            # protojson reports any problem inside a string at the string's opening quote
            b'{"flow":{"uuid":"a\x01"}}',
            "proto: syntax error (line 1:17): invalid character '\\x01' in string",
        ),
        (b"   ", None),
        (b'{"flow":{"uuid":"\xff"}}', "proto: syntax error (line 1:17): invalid UTF-8 in string"),
        (
            b'{"flow":{"uuid":"ok","summary":"x\xc3("}}',
            "proto: syntax error (line 1:32): invalid UTF-8 in string",
        ),
        (b'{"flow":{"uuid":"\\ud800"}}', "proto: unexpected EOF"),
        (
            b'{"flow":{"uuid":"a\\ud800","summary":"x"}}',
            'proto: syntax error (line 1:17): invalid escape code "\\",\\"sum" in string',
        ),
        (
            b'{"flow":{"uuid":"\\ud800\\u0041"}}',
            'proto: syntax error (line 1:17): invalid escape code "\\\\u0041" in string',
        ),
        (
            b'{"flow":{"uuid":"\\udc00\\ud800"}}',
            'proto: syntax error (line 1:17): invalid escape code "\\\\ud800" in string',
        ),
        (b"{'a':1}", None),
        (b"[]", "proto: syntax error (line 1:1): unexpected token ["),
        (b"1", "proto: syntax error (line 1:1): unexpected token 1"),
        (b'{"flow":NaN}', None),
    ],
)
def test_malformed_lines_raise(line, message):
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    with pytest.raises(DecodeError) as info:
        decoder.decode(line)
    assert info.value.message.startswith("proto: ")
    assert isinstance(info.value, ValueError)
    if message is not None:
        assert info.value.message == message
    assert not decoder.lenient


def test_unknown_field_warns_once_then_lenient():
    warnings: list[str] = []
    decoder = ResponseDecoder(on_unknown_field=warnings.append)
    first = decoder.decode(b'{"flow":{"uuid":"x","newThing":1}}')
    assert first == {"flow": {"uuid": "x"}}
    assert warnings == ['proto: (line 1:21): unknown field "newThing"']
    second = decoder.decode(b'{"flow":{"uuid":"y","verdict":"SOMETHING_NEW","other":{"a":[1]}}}')
    assert second == {"flow": {"uuid": "y"}}
    third = decoder.decode(b'{"flow":{"uuid":"z","verdict":42}}')
    assert third == {"flow": {"uuid": "z", "verdict": 42}}
    with pytest.raises(DecodeError):  # still strict about malformed values
        decoder.decode(b'{"flow":{"uuid":1,"newer":2}}')
    assert len(warnings) == 1


def test_unknown_enum_name_warns_once():
    warnings: list[str] = []
    decoder = ResponseDecoder(on_unknown_field=warnings.append)
    record = decoder.decode(b'{"flow":{"uuid":"x","verdict":"ALSO_NEW"}}')
    assert record == {"flow": {"uuid": "x"}}
    assert warnings == ['proto: (line 1:31): invalid value for enum field verdict: "ALSO_NEW"']
    assert decoder.decode(b'{"flow":{"newThing":1}}') == {"flow": {}}
    assert len(warnings) == 1


def test_error_before_unknown_field_is_malformed_not_a_warning():
    warnings: list[str] = []
    decoder = ResponseDecoder(on_unknown_field=warnings.append)
    with pytest.raises(DecodeError, match="invalid value for string field uuid"):
        decoder.decode(b'{"flow":{"uuid":1,"newThing":1}}')
    assert warnings == []
    assert not decoder.lenient


def test_unknown_field_line_with_later_type_error_is_malformed_after_the_warning():
    warnings: list[str] = []
    decoder = ResponseDecoder(on_unknown_field=warnings.append)
    with pytest.raises(DecodeError, match="invalid value for string field uuid"):
        decoder.decode(b'{"flow":{"newThing":1,"uuid":1}}')
    assert warnings == ['proto: (line 1:10): unknown field "newThing"']


def test_normalize_flow_filter():
    assert normalize(
        {"sourcePod": ["a/b"], "verdict": ["DROPPED", 1], "reply": [False]}, "flow.FlowFilter"
    ) == {
        "source_pod": ["a/b"],
        "verdict": ["DROPPED", "FORWARDED"],
        "reply": [False],
    }
    with pytest.raises(DecodeError) as info:
        normalize({"bogus": 1}, "flow.FlowFilter")
    assert info.value.message == 'proto: (line 1:2): unknown field "bogus"'
    assert info.value.unknown
    assert normalize({"bogus": 1, "source_ip": ["1.1.1.1"]}, "flow.FlowFilter", lenient=True) == {
        "source_ip": ["1.1.1.1"]
    }


def test_parse_message_text_positions():
    with pytest.raises(DecodeError) as info:
        parse_message('{"source_pod":["x"],\n "bogus":1}', "flow.FlowFilter")
    assert info.value.message == 'proto: (line 2:2): unknown field "bogus"'
    assert parse_message(b'{"event_type":[{"type":"4"}]}', "flow.FlowFilter") == {"event_type": [{"type": 4}]}


def test_valid_surrogate_pair_is_kept():
    assert ResponseDecoder().decode(b'{"flow":{"uuid":"\\ud83d\\ude00"}}') == {"flow": {"uuid": "\U0001f600"}}
