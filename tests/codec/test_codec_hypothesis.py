"""Property tests: random flows rendered in many non-canonical ways.

Random protobuf ``GetFlowsResponse`` messages are drawn from the descriptors. Their
canonical dict (``message_to_dict``, cross-checked with ``json_format``) is then
rendered as JSON with random non-canonical choices: lowerCamel keys, shuffled key
order, enum numbers, 64-bit numbers, 32-bit strings, timestamps with offsets and
other fraction lengths, explicit nulls and default values, whitespace and ASCII
escapes. The decoder must give back exactly the canonical dict and must never
call a line canonical unless its bytes are the canonical encoding.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from hubblepy.api.flow import flow_pb2
from hubblepy.api.observer import observer_pb2
from hubblepy.codec import ResponseDecoder, encode_response, message_to_dict, parse_message, schema

SETTINGS = settings(
    max_examples=int(os.environ.get("HUBBLEPY_CODEC_EXAMPLES", "300")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_TEXT = st.text(
    alphabet=st.sampled_from(list('ab Z09<>&"\\/\n\t\x01\x1b\x7fé€\u2028\u2029😀:,{}[]')), max_size=6
)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799


def _draw_scalar(data, fd: FieldDescriptor):
    if fd.type == FieldDescriptor.TYPE_STRING:
        return data.draw(_TEXT)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return data.draw(st.booleans())
    if fd.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in fd.enum_type.values]
        return data.draw(st.sampled_from([*numbers, 0, 0, 99, -7]))
    if fd.type in _INT_RANGES:
        low, high = _INT_RANGES[fd.type]
        return data.draw(st.one_of(st.integers(max(low, -3), 3), st.integers(low, high)))
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return data.draw(st.sampled_from([0.0, 0.5, 2.0, -3.25]))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return data.draw(st.binary(max_size=4))
    raise AssertionError(fd.type)


def _fill_message(data, msg, depth: int) -> None:
    desc = msg.DESCRIPTOR
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds = data.draw(st.one_of(st.integers(_MIN_SECONDS, _MAX_SECONDS), st.just(1720094400)))
        msg.nanos = data.draw(
            st.one_of(st.just(0), st.integers(0, 999).map(lambda n: n * 1_000_000), st.integers(0, 10**9 - 1))
        )
        return
    if name == "google.protobuf.Any":
        if data.draw(st.booleans()):
            msg.Pack(flow_pb2.Emitter(name=data.draw(_TEXT), version="1"))
        return
    chosen_oneofs: dict[str, str | None] = {}
    for oneof in desc.oneofs:
        members = [f.name for f in oneof.fields]
        chosen_oneofs[oneof.name] = data.draw(st.sampled_from([None, *members]))
    presence_odds = 0.5 if depth < 2 else 0.2
    for fd in desc.fields:
        if fd.containing_oneof is not None:
            if chosen_oneofs[fd.containing_oneof.name] != fd.name:
                continue
        elif not data.draw(st.floats(0, 1)) < presence_odds:
            continue
        is_message = fd.type == FieldDescriptor.TYPE_MESSAGE
        if fd.is_repeated:
            count = data.draw(st.integers(0, 2))
            container = getattr(msg, fd.name)
            for _ in range(count):
                if is_message:
                    _fill_message(data, container.add(), depth + 1)
                else:
                    container.append(_draw_scalar(data, fd))
        elif is_message:
            sub = getattr(msg, fd.name)
            sub.SetInParent()
            if depth < 3:
                _fill_message(data, sub, depth + 1)
        else:
            setattr(msg, fd.name, _draw_scalar(data, fd))


def _draw_response(data) -> observer_pb2.GetFlowsResponse:
    msg = observer_pb2.GetFlowsResponse()
    _fill_message(data, msg, 0)
    return msg


# --- non-canonical rendering ------------------------------------------------------------


def _render_timestamp(data, text: str) -> str:
    base = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    frac = text[19:-1].lstrip(".")
    nanos = int(frac.ljust(9, "0")) if frac else 0
    digits = f"{nanos:09d}".rstrip("0")
    width = data.draw(st.integers(max(len(digits), 1), 9)) if data.draw(st.booleans()) else len(digits)
    fraction = f".{f'{nanos:09d}'[:width]}" if width else ""
    offset_minutes = data.draw(st.sampled_from([0, 0, 120, -330, 59, -(23 * 60 + 59)]))
    try:
        local = base + timedelta(minutes=offset_minutes)
    except OverflowError:
        offset_minutes = 0
    if offset_minutes == 0:
        zone = "Z" if data.draw(st.booleans()) else "+00:00"
        local = base
    else:
        sign = "+" if offset_minutes > 0 else "-"
        zone = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    stamp = f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    return stamp + fraction + zone


def _render_value(data, f: schema.FieldInfo, value):
    kind = f.kind
    if kind == schema.WRAPPER:
        return _render_value(data, f.wrapped, value)
    if kind == schema.MESSAGE:
        return _render_message(data, f.message, value)
    if kind == schema.ENUM and isinstance(value, str) and data.draw(st.booleans()):
        return f.enum.numbers[value]
    if kind in (schema.INT64, schema.UINT64) and data.draw(st.booleans()):
        return int(value)
    if kind in (schema.INT32, schema.UINT32) and data.draw(st.booleans()):
        return str(value)
    if kind == schema.TIMESTAMP and data.draw(st.booleans()):
        return _render_timestamp(data, value)
    return value


_DEFAULTS = {
    schema.STRING: "",
    schema.BOOL: False,
    schema.INT32: 0,
    schema.UINT32: 0,
    schema.INT64: "0",
    schema.UINT64: 0,
    schema.DOUBLE: 0,
    schema.FLOAT: 0.0,
    schema.BYTES: "",
}


def _render_message(data, info: schema.MessageInfo, canonical: dict) -> dict:
    items = []
    for key, value in canonical.items():
        if key == "@type":
            items.append((key, value))
            continue
        f = info.by_key[key]
        if f.repeated:
            rendered = [_render_value(data, f, item) for item in value]
        else:
            rendered = _render_value(data, f, value)
        name = f.json_name if data.draw(st.booleans()) else f.name
        items.append((name, rendered))
    present = {info.by_key[key].name for key in canonical if key != "@type"}
    for f in info.fields:
        if f.name in present or data.draw(st.integers(0, 7)) != 0:
            continue
        if f.repeated:
            default = data.draw(st.sampled_from([None, []]))
        elif f.presence or f.oneof is not None:
            default = None
        elif f.kind == schema.ENUM:
            default = data.draw(st.sampled_from([None, 0, f.enum.names.get(0, 0)]))
        else:
            default = data.draw(st.sampled_from([None, _DEFAULTS.get(f.kind)]))
        items.append((f.json_name if data.draw(st.booleans()) else f.name, default))
    if data.draw(st.booleans()):
        items = data.draw(st.permutations(items))
    return dict(items)


def _serialise(data, obj) -> bytes:
    style = data.draw(st.sampled_from(["compact", "spaced", "indent", "ascii"]))
    if style == "compact":
        return encode_response(obj)
    if style == "spaced":
        return json.dumps(obj, ensure_ascii=False).encode()
    if style == "indent":
        return json.dumps(obj, ensure_ascii=False, indent=1).replace("\n", " ").encode()
    return json.dumps(obj, separators=(",", ":")).encode()


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_message_to_dict_agrees_with_json_format(data):
    msg = _draw_response(data)
    canonical = message_to_dict(msg)
    assert canonical == json_format.MessageToDict(msg, preserving_proto_field_name=True)
    line = encode_response(canonical)
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    assert decoder.decode(line) == canonical
    assert encode_response(decoder.decode(line)) == line
    reparsed = json_format.Parse(line, observer_pb2.GetFlowsResponse())
    assert reparsed == msg


@SETTINGS
@given(st.data())
def test_non_canonical_renderings_normalise_and_are_never_called_canonical(data):
    msg = _draw_response(data)
    canonical = message_to_dict(msg)
    canonical_line = encode_response(canonical)
    info = schema.message_info("observer.GetFlowsResponse")
    rendered = _serialise(data, _render_message(data, info, canonical))
    decoder = ResponseDecoder(on_unknown_field=pytest.fail)
    decoded = decoder.decode(rendered)
    assert decoded == canonical
    assert encode_response(decoded) == canonical_line
    if decoder.last_was_canonical:
        assert rendered == canonical_line
    else:
        assert rendered != canonical_line or _needs_slow_path(canonical_line)
    oracle = json_format.Parse(rendered, observer_pb2.GetFlowsResponse())
    assert message_to_dict(oracle) == canonical
    assert parse_message(rendered, "observer.GetFlowsResponse") == canonical


def _needs_slow_path(line: bytes) -> bool:
    """Canonical lines the fast check may leave to the slow path (documented limits)."""
    decoder = ResponseDecoder()
    decoder.decode(line)
    return not decoder.last_was_canonical


def _slots(info: schema.MessageInfo, obj: dict, out: list) -> list:
    """Every (message info, dict, key) position of a canonical dict, nested ones included."""
    out.append((info, obj, None))
    for key, value in obj.items():
        f = info.by_key.get(key)
        if f is None:
            continue
        out.append((info, obj, key))
        if f.kind == schema.MESSAGE:
            for item in value if f.repeated and isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _slots(f.message, item, out)
    return out


_BAD_VALUES = [
    "",
    "NOPE",
    "0",
    "007",
    " 1",
    0,
    1,
    -1,
    2**31,
    2**32,
    2**63,
    2**64 - 1,
    -(2**63),
    1.5,
    True,
    False,
    None,
    [],
    {},
]
_BAD_TIMESTAMPS = [
    "2024-07-04T12:00:00.120Z",
    "2024-07-04T12:00:00.000Z",
    "2024-07-04T12:00:00+00:00",
    "2023-02-29T00:00:00Z",
    "2024-07-04T24:00:00Z",
    "0000-01-01T00:00:00Z",
    "2024-07-04t12:00:00Z",
]


_ZERO_VALUES = {
    schema.STRING: "",
    schema.BOOL: False,
    schema.INT32: 0,
    schema.UINT32: 0,
    schema.INT64: "0",
    schema.UINT64: "0",
}
_BAD_BY_KIND = {
    schema.STRING: ["", 1, None, ["x"]],
    schema.BOOL: [False, 1, "true"],
    schema.INT32: [0, "5", 2**31, -(2**31) - 1, True, 1.0],
    schema.UINT32: [0, "5", 2**32, -1, False, 1.0],
    schema.INT64: ["0", "007", "-0", 5, "1e3", " 5"],
    schema.UINT64: ["0", "007", "-1", 5, "1e3", "5 "],
    schema.TIMESTAMP: _BAD_TIMESTAMPS,
    schema.MESSAGE: [[], "x", None, 1],
}


def _zero_of(f: schema.FieldInfo):
    if f.kind == schema.ENUM:
        return f.enum.names.get(0, 0)
    return _ZERO_VALUES.get(f.kind)


def _mutate(data, info: schema.MessageInfo, obj: dict, key: str | None) -> None:
    """Apply one small change at a position, keeping the text compact."""
    items = list(obj.items())
    if key is None:
        choice = data.draw(st.sampled_from(["unknown-key", "null", "default", "reverse", "oneof"]))
        absent = [f for f in info.fields if f.name not in obj]
        if choice == "oneof":
            present = {info.by_key[k].oneof for k in obj if k in info.by_key}
            absent = [f for f in absent if f.oneof is not None and f.oneof in present]
        elif choice == "default":
            absent = [f for f in absent if f.kind in _ZERO_VALUES or f.kind == schema.ENUM or f.repeated]
        if choice == "unknown-key":
            items.append(("newThing", 1))
        elif choice == "reverse":
            items.reverse()
        elif absent:
            f = data.draw(st.sampled_from(absent))
            if choice == "null":
                value = None
            elif choice == "oneof":
                value = {} if f.kind == schema.MESSAGE else _zero_of(f)
            elif f.repeated:
                value = []
            else:
                value = _zero_of(f)
            items.append((f.name, value))
            items = sorted(
                items, key=lambda item: info.by_key[item[0]].index if item[0] in info.by_key else -1
            )
    else:
        f = info.by_key[key]
        choice = data.draw(st.sampled_from(["camel", "generic", "kind", "kind"]))
        value = obj[key]
        if choice == "camel":
            items = [(f.json_name if k == key else k, v) for k, v in items]
        elif choice == "kind" and f.repeated:
            value = data.draw(st.sampled_from([[], [None], [1], ["NOPE"], [{}]]))
        elif choice == "kind" and f.kind == schema.ENUM:
            names = list(f.enum.numbers)
            value = data.draw(st.sampled_from([f.enum.names.get(0, 0), "NOPE", 0, 1, *names]))
        elif choice == "kind" and f.kind in _BAD_BY_KIND:
            value = data.draw(st.sampled_from(_BAD_BY_KIND[f.kind]))
        else:
            value = data.draw(st.sampled_from(_BAD_VALUES))
        items = [(k, value if k == key else v) for k, v in items]
    obj.clear()
    obj.update(items)


@settings(
    max_examples=int(os.environ.get("HUBBLEPY_CODEC_EXAMPLES", "600")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.data())
def test_mutated_compact_lines_are_canonical_only_if_the_slow_path_agrees(data):
    """Soundness of the fast check against the independent slow path (stdlib parse + schema walk)."""
    info = schema.message_info("observer.GetFlowsResponse")
    canonical = message_to_dict(_draw_response(data))
    for _ in range(data.draw(st.integers(1, 2))):
        slots = _slots(info, canonical, [])
        _mutate(data, *data.draw(st.sampled_from(slots)))
    line = encode_response(canonical)  # compact, Go escapes: only the meaning can be wrong
    note(line)
    try:
        expected = parse_message(line, "observer.GetFlowsResponse")
    except ValueError:
        expected = None
    decoder = ResponseDecoder(on_unknown_field=lambda text: None)
    try:
        decoded = decoder.decode(line)
    except ValueError:
        assert expected is None
        return
    if decoder.last_was_canonical:
        assert expected is not None
        assert encode_response(expected) == line
    elif expected is not None:
        assert decoded == expected
