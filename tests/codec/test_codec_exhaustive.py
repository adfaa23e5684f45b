"""Every field of every message reachable from GetFlowsResponse, one at a time.

For each field: a canonical non-default value is accepted as canonical, while its
zero value, its lowerCamel key, a null, or a wrong JSON type is never accepted as
canonical (it is normalised or rejected instead).
"""

from __future__ import annotations

import pytest

from hubblepy.codec import DecodeError, ResponseDecoder, encode_response, parse_message, schema


def _paths() -> list[tuple[list[tuple[str, bool]], schema.MessageInfo]]:
    """(path of (field name, repeated) from GetFlowsResponse, message) for each reachable message."""
    root = schema.message_info("observer.GetFlowsResponse")
    found = {root.full_name: ([], root)}
    queue = [root.full_name]
    while queue:
        path, info = found[queue.pop(0)]
        for f in info.fields:
            if f.kind == schema.MESSAGE and f.message.full_name not in found:
                found[f.message.full_name] = ([*path, (f.name, f.repeated)], f.message)
                queue.append(f.message.full_name)
    return list(found.values())


def _wrap(path: list[tuple[str, bool]], inner: dict) -> dict:
    for name, repeated in reversed(path):
        inner = {name: [inner] if repeated else inner}
    return inner


_SAMPLES = {
    schema.STRING: "x",
    schema.BOOL: True,
    schema.INT32: -5,
    schema.UINT32: 5,
    schema.INT64: "-5",
    schema.UINT64: "5",
    schema.TIMESTAMP: "2024-02-29T23:59:59.100Z",
}
_ZEROS = {
    schema.STRING: "",
    schema.BOOL: False,
    schema.INT32: 0,
    schema.UINT32: 0,
    schema.INT64: "0",
    schema.UINT64: "0",
}
_WRONG_TYPES = [1.5, "y", {}, [], True]


def _cases():
    for path, info in _paths():
        for f in info.fields:
            yield pytest.param(path, info, f, id=f"{info.full_name}.{f.name}")


def _sample(f: schema.FieldInfo):
    kind = f.wrapped.kind if f.kind == schema.WRAPPER else f.kind
    if kind == schema.ENUM:
        return next(name for number, name in f.enum.names.items() if number != 0)
    if kind == schema.MESSAGE:
        return {}
    return _SAMPLES.get(kind)


def _decode(line: bytes):
    decoder = ResponseDecoder(on_unknown_field=lambda text: None)
    try:
        return decoder.decode(line), decoder.last_was_canonical
    except DecodeError:
        return None, False


@pytest.mark.parametrize(("path", "info", "f"), list(_cases()))
def test_each_field(path, info, f):
    sample = _sample(f)
    if sample is None:
        pytest.skip(f"kind {f.kind_name} is left to the slow path")
    value = [sample] if f.repeated else sample
    line = encode_response(_wrap(path, {f.name: value}))
    record, canonical = _decode(line)
    assert canonical, line
    assert encode_response(record) == line

    variants = [encode_response(_wrap(path, {f.name: None}))]
    if f.json_name != f.name:
        variants.append(encode_response(_wrap(path, {f.json_name: value})))
    if f.repeated:
        variants.append(encode_response(_wrap(path, {f.name: []})))
    elif not f.presence:
        zero = f.enum.names.get(0, 0) if f.kind == schema.ENUM else _ZEROS.get(f.kind)
        variants.append(encode_response(_wrap(path, {f.name: zero})))
    for wrong in _WRONG_TYPES:
        variants.append(encode_response(_wrap(path, {f.name: [wrong] if f.repeated else wrong})))
    for variant in variants:
        record, canonical = _decode(variant)
        try:
            expected = parse_message(variant, "observer.GetFlowsResponse", lenient=True)
        except DecodeError:
            expected = None
        assert record == expected, variant
        if canonical:
            assert encode_response(expected) == variant
