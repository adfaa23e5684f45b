"""Canonical dicts <-> protobuf messages, for the gRPC server and client paths.

``message_to_dict`` walks only the fields that are set (``ListFields``) and
converts each with a converter chosen once per field descriptor, so it is much
cheaper than ``json_format``. ``dict_to_message`` is the inverse, one setter
closure per field compiled once per message type; it accepts canonical dicts
(and the lenient names/forms of the slow path for scalars).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from . import schema
from .errors import DecodeError
from .normalize import _float32_text, _snake_to_camel
from .timestamps import NS_PER_SECOND, format_nanos, format_timestamp, parse_rfc3339_ns, parse_timestamp

# --- message -> dict ----------------------------------------------------------------------

_Converter = Callable[[Any], Any]
_to_dict_plans: dict[FieldDescriptor, tuple[int, str, _Converter | None]] = {}
_needs_sort: dict[Descriptor, bool] = {}


def _double(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def _float(value: float) -> Any:
    if math.isnan(value) or math.isinf(value):
        return _double(value)
    return _double(_float32_text(value))


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _timestamp(value: Message) -> str:
    return format_timestamp(value.seconds, value.nanos)


def _duration(value: Message) -> str:
    seconds, nanos = value.seconds, value.nanos
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return f"{sign}{abs(seconds)}{format_nanos(abs(nanos))}s"


def _field_mask(value: Message) -> str:
    return ",".join(_snake_to_camel(path) for path in value.paths)


def _json_value(value: Message) -> Any:
    return json_format.MessageToDict(value, preserving_proto_field_name=True)


def _any(value: Message) -> dict:
    if not value.type_url and not value.value:
        return {}
    desc = descriptor_pool.Default().FindMessageTypeByName(value.type_url.rsplit("/", 1)[-1])
    inner = message_factory.GetMessageClass(desc)()
    inner.ParseFromString(value.value)
    special = _special_converter(desc.full_name)
    if special is None:
        return {"@type": value.type_url, **message_to_dict(inner)}
    return {"@type": value.type_url, "value": special(inner)}


def _special_converter(full_name: str) -> _Converter | None:
    specials: dict[str, _Converter] = {
        "google.protobuf.Timestamp": _timestamp,
        "google.protobuf.Duration": _duration,
        "google.protobuf.FieldMask": _field_mask,
        "google.protobuf.Any": _any,
        "google.protobuf.Struct": _json_value,
        "google.protobuf.Value": _json_value,
        "google.protobuf.ListValue": _json_value,
    }
    if full_name in specials:
        return specials[full_name]
    if full_name.startswith("google.protobuf.") and full_name.endswith("Value"):
        inner_fd = descriptor_pool.Default().FindMessageTypeByName(full_name).fields_by_name["value"]
        inner = _scalar_converter(schema._field_info(inner_fd))
        return lambda wrapper: inner(wrapper.value)
    return None


def _identity(value: Any) -> Any:
    return value


def _scalar_converter(f: schema.FieldInfo) -> _Converter:
    kind = f.kind
    if kind in (schema.INT64, schema.UINT64):
        return str
    if kind == schema.ENUM:
        assert f.enum is not None  # ENUM fields always carry their type (WRAPPER fields their value field)
        names = f.enum.names
        return lambda number: names.get(number, number)
    if kind == schema.DOUBLE:
        return _double
    if kind == schema.FLOAT:
        return _float
    if kind == schema.BYTES:
        return _bytes
    if kind == schema.MESSAGE:
        return message_to_dict
    if kind == schema.WRAPPER:
        assert f.wrapped is not None
        inner = _scalar_converter(f.wrapped)
        return lambda wrapper: inner(wrapper.value)
    assert f.descriptor is not None
    special = _special_converter(f.descriptor.message_type.full_name) if f.descriptor.message_type else None
    return special or _identity


def _plan(fd: FieldDescriptor) -> tuple[int, str, _Converter | None]:
    f = schema.message_info_for(fd.containing_type).fields[fd.index]
    convert = _scalar_converter(f)
    if f.repeated:
        if convert is _identity:
            convert = list
        else:
            element = convert
            convert = lambda values: [element(v) for v in values]  # noqa: E731
    plan = (fd.index, fd.name, None if convert is _identity else convert)
    _to_dict_plans[fd] = plan
    return plan


def _sort_key(item: tuple[FieldDescriptor, Any]) -> int:
    return item[0].index


def message_to_dict(msg: Message) -> dict:
    """Canonical dict of a protobuf message (only set fields, declaration order)."""
    fields = msg.ListFields()
    if len(fields) > 1:
        desc = msg.DESCRIPTOR
        needs_sort = _needs_sort.get(desc)
        if needs_sort is None:
            numbers = [fd.number for fd in desc.fields]
            needs_sort = _needs_sort[desc] = numbers != sorted(numbers)
        if needs_sort:
            fields.sort(key=_sort_key)
    plans = _to_dict_plans
    out = {}
    for fd, value in fields:
        plan = plans.get(fd) or _plan(fd)
        convert = plan[2]
        out[plan[1]] = value if convert is None else convert(value)
    return out


# --- dict -> message ----------------------------------------------------------------------
#
# Each message type gets, once, a table from JSON key (proto name and lowerCamel name) to a small
# setter closure chosen for that field's kind, so filling a message is a loop of dictionary hits
# and ``setattr``/``extend`` calls. Two tables exist per type: strict (the public default: unknown
# keys are errors, timestamps read as protojson does) and lenient (unknown keys skipped, any RFC
# 3339 time accepted), which the node observer uses for the dicts in its ring.

_Setter = Callable[[Message, Any], None]
_fill_tables: dict[tuple[Descriptor, bool], dict[str, _Setter]] = {}


def _fill(msg: Message, d: dict, lenient: bool) -> None:
    desc = msg.DESCRIPTOR
    table = _fill_tables.get((desc, lenient)) or _fill_table(desc, lenient)
    items = d.items()  # a non-dict fails here, reported against the enclosing field
    key = ""
    try:
        for key, value in items:
            setter = table.get(key)
            if setter is None:
                if lenient:
                    continue
                raise DecodeError(f'proto: unknown field "{key}" in {desc.full_name}')
            if value is not None:
                setter(msg, value)
    except DecodeError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        name = schema.message_info_for(desc).by_key[key].name
        raise DecodeError(f"proto: invalid value for field {desc.full_name}.{name}: {exc}") from None


def _fill_table(desc: Descriptor, lenient: bool) -> dict[str, _Setter]:
    table: dict[str, _Setter] = {}
    _fill_tables[(desc, lenient)] = table  # registered before the fields: recursive types terminate
    for key, f in schema.message_info_for(desc).by_key.items():
        table[key] = _setter(f, lenient)
    return table


def _bytes_value(value: str) -> bytes:
    return base64.b64decode(
        value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None
    )


def _floating_value(value: Any) -> Any:
    return float(value.replace("Infinity", "inf")) if type(value) is str else value


def _scalar_input(f: schema.FieldInfo) -> _Converter | None:
    """Converter from a canonical JSON value to what protobuf accepts; None when it takes it as is."""
    kind = f.kind
    if kind in (schema.INT64, schema.UINT64):
        return int
    if kind == schema.ENUM:
        assert f.enum is not None
        numbers = f.enum.numbers
        return lambda value: numbers[value] if type(value) is str else int(value)
    if kind == schema.BYTES:
        return _bytes_value
    if kind in (schema.DOUBLE, schema.FLOAT):
        return _floating_value
    return None


def _strict_timestamp(sub: Message, value: Any) -> None:
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"invalid timestamp {value!r}")
    sub.seconds, sub.nanos = parsed


def _lenient_timestamp(sub: Message, value: Any) -> None:
    sub.seconds, sub.nanos = divmod(parse_rfc3339_ns(value), NS_PER_SECOND)


def _special_filler(f: schema.FieldInfo, lenient: bool) -> _Setter:
    """Filler of one (sub-)message value: a message, a timestamp, a wrapper, an Any, other WKTs."""
    kind = f.kind
    if kind == schema.MESSAGE:

        def fill_message(sub: Message, value: Any) -> None:
            sub.SetInParent()
            _fill(sub, value, lenient)

        return fill_message
    if kind == schema.TIMESTAMP:
        return _lenient_timestamp if lenient else _strict_timestamp
    if kind == schema.WRAPPER:
        assert f.wrapped is not None
        inner = _scalar_input(f.wrapped)

        def fill_wrapper(sub: Message, value: Any) -> None:
            sub.value = value if inner is None else inner(value)  # marks the wrapper present

        return fill_wrapper
    if kind == schema.ANY:
        return lambda sub, value: _fill_any(sub, value, lenient)
    return lambda sub, value: json_format.ParseDict(value, sub, ignore_unknown_fields=lenient)


def _setter(f: schema.FieldInfo, lenient: bool) -> _Setter:
    name = f.name
    if f.kind < schema.MESSAGE:
        convert = _scalar_input(f)
        if f.repeated:
            if convert is None:
                return lambda msg, value: getattr(msg, name).extend(value)
            return lambda msg, value: getattr(msg, name).extend([convert(v) for v in value])
        if convert is None:
            return lambda msg, value: setattr(msg, name, value)
        return lambda msg, value: setattr(msg, name, convert(value))
    if f.kind == schema.MESSAGE and not f.repeated:  # the most common case, one call less

        def set_message(msg: Message, value: Any) -> None:
            sub = getattr(msg, name)
            sub.SetInParent()
            _fill(sub, value, lenient)

        return set_message
    fill_one = _special_filler(f, lenient)
    if f.repeated:

        def set_repeated(msg: Message, value: Any) -> None:
            add = getattr(msg, name).add
            for item in value:
                fill_one(add(), item)

        return set_repeated
    return lambda msg, value: fill_one(getattr(msg, name), value)


def _fill_any(sub: Message, value: dict, lenient: bool) -> None:
    if not value:
        sub.SetInParent()
        return
    type_url = value["@type"]
    desc = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    inner = message_factory.GetMessageClass(desc)()
    if _special_converter(desc.full_name) is None:
        _fill(inner, {k: v for k, v in value.items() if k != "@type"}, lenient)
    else:
        json_format.ParseDict(value["value"], inner, ignore_unknown_fields=lenient)
    sub.type_url = type_url
    sub.value = inner.SerializeToString()


def dict_to_message(d: dict, cls_or_msg: type[Message] | Message, *, lenient: bool = False) -> Message:
    """Protobuf message from a canonical dict; ``cls_or_msg`` is a message class or an instance to fill.

    Unknown keys and unreadable values raise :class:`DecodeError`. With ``lenient`` unknown keys are
    skipped and timestamps may use any RFC 3339 spelling (the node observer's ring, fed by files).
    """
    msg = cls_or_msg() if isinstance(cls_or_msg, type) else cls_or_msg
    _fill(msg, d, lenient)
    return msg
