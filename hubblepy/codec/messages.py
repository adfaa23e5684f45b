"""Canonical dicts <-> protobuf messages, for the gRPC server and client paths.

``message_to_dict`` walks only the fields that are set (``ListFields``) and
converts each with a converter chosen once per field descriptor, so it is much
cheaper than ``json_format``. ``dict_to_message`` is the inverse; it accepts
canonical dicts (and the lenient names/forms of the slow path for scalars).
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
from .timestamps import format_nanos, format_timestamp, parse_timestamp

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
        inner = _scalar_converter(f.wrapped)
        return lambda wrapper: inner(wrapper.value)
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


def _to_int(value: Any) -> int:
    return int(value)


def _fill(msg: Message, d: dict, info: schema.MessageInfo) -> None:
    by_key = info.by_key
    for key, value in d.items():
        f = by_key.get(key)
        if f is None:
            raise DecodeError(f'proto: unknown field "{key}" in {info.full_name}')
        if value is None:
            continue
        try:
            _set(msg, f, value)
        except DecodeError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise DecodeError(f"proto: invalid value for field {info.full_name}.{f.name}: {exc}") from None


def _scalar_value(f: schema.FieldInfo, value: Any) -> Any:
    kind = f.kind
    if kind in (schema.INT64, schema.UINT64):
        return int(value)
    if kind == schema.ENUM:
        return f.enum.numbers[value] if type(value) is str else int(value)
    if kind == schema.BYTES:
        return base64.b64decode(
            value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None
        )
    if kind in (schema.DOUBLE, schema.FLOAT) and type(value) is str:
        return float(value.replace("Infinity", "inf"))
    return value


def _fill_special(sub: Message, f: schema.FieldInfo, value: Any) -> None:
    kind = f.kind
    if kind == schema.MESSAGE:
        sub.SetInParent()
        _fill(sub, value, f.message)
    elif kind == schema.TIMESTAMP:
        parsed = parse_timestamp(value)
        if parsed is None:
            raise ValueError(f"invalid timestamp {value!r}")
        sub.seconds, sub.nanos = parsed
    elif kind == schema.WRAPPER:
        sub.value = _scalar_value(f.wrapped, value)
        sub.SetInParent()
    elif kind == schema.ANY:
        _fill_any(sub, value)
    else:
        json_format.ParseDict(value, sub)


def _fill_any(sub: Message, value: dict) -> None:
    if not value:
        sub.SetInParent()
        return
    type_url = value["@type"]
    desc = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    inner = message_factory.GetMessageClass(desc)()
    if _special_converter(desc.full_name) is None:
        _fill(inner, {k: v for k, v in value.items() if k != "@type"}, schema.message_info_for(desc))
    else:
        json_format.ParseDict(value["value"], inner)
    sub.type_url = type_url
    sub.value = inner.SerializeToString()


def _set(msg: Message, f: schema.FieldInfo, value: Any) -> None:
    kind = f.kind
    simple = kind < schema.MESSAGE
    if f.repeated:
        container = getattr(msg, f.name)
        if simple:
            container.extend([_scalar_value(f, v) for v in value])
        else:
            for item in value:
                _fill_special(container.add(), f, item)
    elif simple:
        setattr(msg, f.name, _scalar_value(f, value))
    else:
        _fill_special(getattr(msg, f.name), f, value)


def dict_to_message(d: dict, cls_or_msg: type[Message] | Message) -> Message:
    """Protobuf message from a canonical dict; ``cls_or_msg`` is a message class or an instance to fill."""
    msg = cls_or_msg() if isinstance(cls_or_msg, type) else cls_or_msg
    _fill(msg, d, schema.message_info_for(msg.DESCRIPTOR))
    return msg
