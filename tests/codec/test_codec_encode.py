"""encode / encode_response: Go encoding/json compaction with HTML escaping, keys in dict order."""

from __future__ import annotations

import json

import pytest

from hubblepy.codec import encode, encode_response


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": "<>&"}, b'{"a":"\\u003c\\u003e\\u0026"}'),
        ({"a": "\u2028\u2029"}, b'{"a":"\\u2028\\u2029"}'),
        ({"a": "\x00\x01\x08\x0c\n\r\t\x1b\x1f"}, b'{"a":"\\u0000\\u0001\\b\\f\\n\\r\\t\\u001b\\u001f"}'),
        ({"a": '"\\/'}, b'{"a":"\\"\\\\/"}'),
        ({"a": "\x7fé€😀"}, '{"a":"\x7fé€😀"}'.encode()),
        ({"z": 1, "a": [True, False], "m": {}}, b'{"z":1,"a":[true,false],"m":{}}'),
        ({"<key>": "x"}, b'{"\\u003ckey\\u003e":"x"}'),
    ],
)
def test_encode_matches_go(value, expected):
    assert encode(value) == expected
    assert json.loads(expected) == value


def test_encode_response_keeps_dict_order():
    record = {"flow": {"uuid": "u", "time": "2024-01-01T00:00:00Z"}, "time": "2024-01-01T00:00:00Z"}
    assert (
        encode_response(record)
        == b'{"flow":{"uuid":"u","time":"2024-01-01T00:00:00Z"},"time":"2024-01-01T00:00:00Z"}'
    )
    assert not encode_response(record).endswith(b"\n")
