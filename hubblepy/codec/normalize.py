"""Slow path: turn any protojson-style JSON value into the canonical dict of a message.

Accepts what Go's ``protojson.Unmarshal`` accepts (proto and lowerCamel names,
enum names or numbers, 64-bit integers as numbers or strings, 32-bit integers as
strings, timestamps with offsets, ``null`` for absent, wrappers, Any) and
produces the canonical form (proto names in declaration order, defaults dropped,
enum names, 64-bit integers as strings, UTC timestamps with 0/3/6/9 digits).

Problems are raised as :class:`Problem` with the path of the offending token; the
caller turns that into a positioned :class:`~hubblepy.codec.errors.DecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from decimal import Decimal, InvalidOperation
from typing import Any

from . import schema
from .canonical import TIMESTAMP_RE
from .schema import FieldInfo, MessageInfo
from .timestamps import format_nanos, format_timestamp, parse_timestamp


class Pairs(list):
    """A JSON object as the list of its (key, value) members, duplicates and order kept."""

    __slots__ = ()


class Problem(Exception):
    """A semantic decode problem at a path of member/element indexes."""

    def __init__(
        self,
        path: tuple[int, ...],
        at_key: bool,
        template: str,
        *,
        syntax: bool = False,
        unknown: bool = False,
    ) -> None:
        super().__init__(template)
        self.path = path
        self.at_key = at_key
        self.template = template
        self.syntax = syntax
        self.unknown = unknown


_SKIP = object()  # a value that is dropped (lenient unknown enum name)

_INT_RANGES = {
    schema.INT32: (-(2**31), 2**31 - 1),
    schema.UINT32: (0, 2**32 - 1),
    schema.INT64: (-(2**63), 2**63 - 1),
    schema.UINT64: (0, 2**64 - 1),
}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,9}))?s")
_is_canonical_timestamp = TIMESTAMP_RE.fullmatch
_FLOAT32 = struct.Struct("<f")


def _invalid(f: FieldInfo, path: tuple[int, ...], *, unknown: bool = False) -> Problem:
    return Problem(
        path, False, f"invalid value for {f.kind_name} field {f.json_name}: {{raw}}", unknown=unknown
    )


def _unexpected(path: tuple[int, ...]) -> Problem:
    return Problem(path, False, "unexpected token {raw}", syntax=True)


def _members(obj: Any, path: tuple[int, ...]):
    if type(obj) is Pairs:
        return obj
    if isinstance(obj, dict):
        return obj.items()
    raise _unexpected(path)


def _timestamp(value: Any, path: tuple[int, ...]) -> str:
    if type(value) is not str:
        raise _unexpected(path)
    if _is_canonical_timestamp(value):
        return value
    try:
        parsed = parse_timestamp(value)
    except OverflowError:
        raise Problem(path, False, "google.protobuf.Timestamp value out of range: {raw}") from None
    if parsed is None:
        raise Problem(path, False, "invalid google.protobuf.Timestamp value {raw}")
    return format_timestamp(*parsed)


def _duration(value: Any, path: tuple[int, ...]) -> str:
    if type(value) is not str:
        raise _unexpected(path)
    found = _DURATION.fullmatch(value)
    if found is None:
        raise Problem(path, False, "invalid google.protobuf.Duration value {raw}")
    sign, secs, frac = found.groups()
    seconds, nanos = int(secs), int((frac or "").ljust(9, "0"))
    if seconds > 315576000000:
        raise Problem(path, False, "google.protobuf.Duration value out of range: {raw}")
    if seconds == 0 and nanos == 0:
        sign = ""
    return f"{sign}{seconds}{format_nanos(nanos)}s"


def _as_decimal(value: Any) -> Decimal | None:
    kind = type(value)
    if kind is int:
        return Decimal(value)
    if kind is float:
        return Decimal(value) if math.isfinite(value) else None
    if kind is Decimal:
        return value
    if kind is str:
        if _JSON_NUMBER.fullmatch(value) is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _integer(value: Any, f: FieldInfo, path: tuple[int, ...]) -> int:
    kind = type(value)
    if kind is int:
        number = value
    else:
        dec = _as_decimal(value)
        if dec is None or dec != dec.to_integral_value():
            raise _invalid(f, path)
        number = int(dec)
    low, high = _INT_RANGES[f.kind]
    if not low <= number <= high:
        raise _invalid(f, path)
    return number


def _float32_text(value: float) -> float:
    """The float32 value as the shortest decimal that round-trips in 32 bits."""
    packed = _FLOAT32.pack(value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if _FLOAT32.pack(candidate) == packed:
            return candidate
    return value


def _floating(value: Any, f: FieldInfo, path: tuple[int, ...]) -> float | int | str:
    if type(value) is str and value in ("NaN", "Infinity", "-Infinity"):
        return value
    dec = _as_decimal(value)
    if dec is None:
        raise _invalid(f, path)
    number = float(dec)
    if math.isinf(number):
        raise _invalid(f, path)
    if f.kind == schema.FLOAT:
        if abs(number) > 3.4028234663852886e38:
            raise _invalid(f, path)
        number = _float32_text(number)
    if number.is_integer() and abs(number) < 1e21:
        return int(number)  # Go prints integral doubles without a fraction
    return number


def _bytes(value: Any, f: FieldInfo, path: tuple[int, ...]) -> str:
    if type(value) is not str:
        raise _invalid(f, path)
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode()
    except (binascii.Error, ValueError):
        raise _invalid(f, path) from None


def _camel_to_snake(path: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), path)


def _snake_to_camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _field_mask(value: Any, path: tuple[int, ...]) -> str:
    if type(value) is not str:
        raise _unexpected(path)
    if not value:
        return ""
    out = []
    for item in value.split(","):
        snake = _camel_to_snake(item)
        if "_" in item or _snake_to_camel(snake) != item:
            raise Problem(path, False, "google.protobuf.FieldMask.paths contains invalid path: {raw}")
        out.append(item)
    return ",".join(out)


def _plain_json(value: Any) -> Any:
    if type(value) is Pairs:
        return {k: _plain_json(v) for k, v in value}
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if type(value) is Decimal:
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 1e21 else number
    return value


def _any(value: Any, path: tuple[int, ...], lenient: bool) -> dict:
    members = list(_members(value, path))
    type_url = None
    type_index = -1
    for index, (key, member) in enumerate(members):
        if key == "@type":
            if type_url is not None:
                raise Problem((*path, index), True, 'duplicate "@type" field')
            type_url, type_index = member, index
    if type_url is None:
        if not members:
            return {}
        raise Problem(path, False, 'missing "@type" field')
    if type(type_url) is not str:
        raise Problem((*path, type_index), False, 'invalid "@type" value: {raw}')
    try:
        desc = schema.find_descriptor(type_url.rsplit("/", 1)[-1])  # loads protobuf (Any is rare)
    except KeyError:
        raise Problem((*path, type_index), False, 'unable to resolve {raw}: "not found"') from None
    info = schema.message_info_for(desc)
    rest = Pairs((k, v) for k, v in members if k != "@type")
    special = _special_kind(desc.full_name)
    if special is None:
        body = normalize_message(rest, info, path, lenient)
        return {"@type": type_url, **body}
    # Well-known types with their own JSON form carry it under "value".
    out: dict = {"@type": type_url}
    for index, (key, member) in enumerate(members):
        if key == "@type":
            continue
        if key != "value":
            raise Problem((*path, index), True, "unknown field {raw}", unknown=True)
        out["value"] = _special_value(special, desc, member, (*path, index), lenient)
    if "value" not in out:
        raise Problem(path, False, 'missing "value" field')
    return out


def _special_kind(full_name: str) -> int | None:
    kinds = {
        "google.protobuf.Timestamp": schema.TIMESTAMP,
        "google.protobuf.Duration": schema.DURATION,
        "google.protobuf.FieldMask": schema.FIELD_MASK,
        "google.protobuf.Any": schema.ANY,
        "google.protobuf.Struct": schema.UNSUPPORTED,
        "google.protobuf.Value": schema.UNSUPPORTED,
        "google.protobuf.ListValue": schema.UNSUPPORTED,
    }
    if full_name in kinds:
        return kinds[full_name]
    if full_name.startswith("google.protobuf.") and full_name.endswith("Value"):
        return schema.WRAPPER
    return None


def _special_value(kind: int, desc: Any, value: Any, path: tuple[int, ...], lenient: bool) -> Any:
    if kind == schema.TIMESTAMP:
        return _timestamp(value, path)
    if kind == schema.DURATION:
        return _duration(value, path)
    if kind == schema.FIELD_MASK:
        return _field_mask(value, path)
    if kind == schema.ANY:
        return _any(value, path, lenient)
    if kind == schema.WRAPPER:
        inner = schema.message_info_for(desc).fields[0]
        return _single(value, inner, path, lenient)
    return _plain_json(value)


def _single(value: Any, f: FieldInfo, path: tuple[int, ...], lenient: bool) -> Any:
    """Canonical JSON value of one (non-repeated) value of field ``f``."""
    kind = f.kind
    if kind == schema.STRING:
        if type(value) is not str:
            raise _invalid(f, path)
        return value
    if kind == schema.MESSAGE:
        assert f.message is not None  # MESSAGE fields always carry their type, ENUM fields theirs
        return normalize_message(value, f.message, path, lenient)
    if kind == schema.ENUM:
        assert f.enum is not None
        if type(value) is str:
            number = f.enum.numbers.get(value)
            if number is None:
                if lenient:
                    return _SKIP
                raise _invalid(f, path, unknown=True)
            return f.enum.names[number]
        if type(value) is bool or value is None:
            raise _invalid(f, path)
        dec = _as_decimal(value)
        if dec is None or dec != dec.to_integral_value() or not -(2**31) <= dec < 2**31:
            raise _invalid(f, path)
        number = int(dec)
        return f.enum.names.get(number, number)
    if kind in (schema.INT32, schema.UINT32):
        if type(value) is bool or value is None:
            raise _invalid(f, path)
        return _integer(value, f, path)
    if kind in (schema.INT64, schema.UINT64):
        if type(value) is bool or value is None:
            raise _invalid(f, path)
        return str(_integer(value, f, path))
    if kind == schema.BOOL:
        if type(value) is not bool:
            raise _invalid(f, path)
        return value
    if kind == schema.TIMESTAMP:
        return _timestamp(value, path)
    if kind == schema.WRAPPER:
        assert f.wrapped is not None
        return _single(value, f.wrapped, path, lenient)
    if kind in (schema.DOUBLE, schema.FLOAT):
        if type(value) is bool or value is None:
            raise _invalid(f, path)
        return _floating(value, f, path)
    if kind == schema.BYTES:
        return _bytes(value, f, path)
    if kind == schema.ANY:
        return _any(value, path, lenient)
    if kind == schema.DURATION:
        return _duration(value, path)
    if kind == schema.FIELD_MASK:
        return _field_mask(value, path)
    return _plain_json(value)


def _is_default(value: Any, f: FieldInfo) -> bool:
    kind = f.kind
    if kind == schema.ENUM:
        assert f.enum is not None
        return value == f.enum.names.get(0, 0) or value == 0
    if kind in (schema.INT64, schema.UINT64):
        return value == "0"
    if kind in (schema.DOUBLE, schema.FLOAT):
        return value == 0 and not (type(value) is float and math.copysign(1.0, value) < 0)
    if kind in (schema.STRING, schema.BYTES, schema.BOOL, schema.INT32, schema.UINT32):
        return not value
    return False


_STRING, _ENUM, _MESSAGE, _INT32, _UINT32 = (
    schema.STRING,
    schema.ENUM,
    schema.MESSAGE,
    schema.INT32,
    schema.UINT32,
)


def normalize_message(obj: Any, info: MessageInfo, path: tuple[int, ...], lenient: bool) -> dict:
    """Canonical dict of message ``info`` from a JSON object (dict or :class:`Pairs`)."""
    slots: dict[int, tuple[str, Any]] = {}
    seen: set[int] = set()
    seen_oneofs: set[str] = set()
    by_key = info.by_key
    index = -1
    for key, value in _members(obj, path):
        index += 1
        f = by_key.get(key)
        if f is None:
            if lenient:
                continue
            raise Problem((*path, index), True, "unknown field {raw}", unknown=True)
        field_index = f.index
        if field_index in seen:
            raise Problem((*path, index), True, "duplicate field {raw}")
        seen.add(field_index)
        if value is None and f.kind != schema.UNSUPPORTED:
            continue
        kind = f.kind
        if f.repeated:
            if type(value) is not list:
                raise _unexpected((*path, index))
            if kind == _STRING and all(type(item) is str for item in value):
                items = list(value)
            else:
                here = (*path, index)
                items = []
                for position, element in enumerate(value):
                    item = _single(element, f, (*here, position), lenient)
                    if item is not _SKIP:
                        items.append(item)
            if items:
                slots[field_index] = (f.name, items)
            continue
        if f.oneof is not None:
            if f.oneof in seen_oneofs:
                raise Problem((*path, index), True, f"error parsing {{raw}}, oneof {f.oneof} is already set")
            seen_oneofs.add(f.oneof)
        # Fast paths for the common kinds; everything else goes through _single.
        if kind == _STRING and type(value) is str:
            if not value and not f.presence:
                continue
            item = value
        elif kind == _MESSAGE:
            assert f.message is not None
            item = normalize_message(value, f.message, (*path, index), lenient)
        elif kind == _ENUM and type(value) is str and f.enum is not None and value in f.enum.numbers:
            number = f.enum.numbers[value]
            if number == 0 and not f.presence:
                continue
            item = f.enum.names[number]
        elif kind in (_UINT32, _INT32) and type(value) is int and -(2**31) <= value < 2**31:
            if value < 0 and kind == _UINT32:
                raise _invalid(f, (*path, index))
            if value == 0 and not f.presence:
                continue
            item = value
        else:
            item = _single(value, f, (*path, index), lenient)
            if item is _SKIP or (not f.presence and _is_default(item, f)):
                continue
        slots[field_index] = (f.name, item)
    if len(slots) > 1:
        return {name: item for _, (name, item) in sorted(slots.items())}
    return dict(slots.values())
