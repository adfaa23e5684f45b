"""Canonical dicts -> protobuf wire bytes through the C message constructor.

The node turns every flow it sends into a serialized ``GetFlowsResponse``. Filling a message field
by field from Python (:func:`hubblepy.codec.messages.dict_to_message`) costs one interpreted call per
field; protobuf's C (upb) constructor instead takes the whole nested dict at once, with enum names,
nested dicts and lists as they are. Only a few JSON forms of the canonical dict are not what the
constructor takes: 64-bit integers as strings, bytes as base64, Timestamps as RFC 3339 text,
wrapper types (``UInt32Value``...) as bare values, ``Any`` with ``@type``, floats spelled
``"NaN"``/``"Infinity"`` and the other well-known types. For each message type the keys that hold
such fields, or sub-messages that (transitively) do, are found once from the descriptors; a dict is
then copied only along those keys and the copy handed to the constructor.

The bytes are the ones :func:`dict_to_message` (lenient) + ``SerializeToString`` give: any dict the
constructor refuses (an unknown or camelCase key, a wrong type) is encoded by that slow path, which
also raises its usual :class:`~hubblepy.codec.errors.DecodeError` for bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from . import schema
from .errors import DecodeError
from .messages import _bytes_value, _floating_value, _special_filler, dict_to_message
from .timestamps import NS_PER_SECOND, parse_rfc3339_ns, parse_timestamp

_Fix = Callable[[Any], Any]
# Per message type: key -> fixer, for the keys whose values the constructor cannot take as they are.
# An empty table means "pass the dict as it is".
_tables: dict[str, dict[str, _Fix]] = {}
_building: set[str] = set()


def _timestamp(value: Any) -> dict[str, int]:
    parsed = parse_timestamp(value) if type(value) is str else None
    if parsed is None:  # another RFC 3339 spelling (or garbage: ValueError -> slow path)
        parsed = divmod(parse_rfc3339_ns(value), NS_PER_SECOND)
    return {"seconds": parsed[0], "nanos": parsed[1]}


def _enum(numbers: dict[str, int]) -> _Fix:
    return lambda value: numbers[value] if type(value) is str else int(value)


def _scalar_fix(f: schema.FieldInfo) -> _Fix | None:
    """How the canonical JSON value of a scalar field becomes what the constructor takes."""
    kind = f.kind
    if kind in (schema.INT64, schema.UINT64):
        return int
    if kind == schema.BYTES:
        return _bytes_value
    if kind in (schema.DOUBLE, schema.FLOAT):
        return _floating_value
    return None  # strings, bools, 32-bit ints and enum names go in as they are


def _message_class(f: schema.FieldInfo) -> type[Message]:
    from google.protobuf import message_factory

    assert f.descriptor is not None
    return message_factory.GetMessageClass(f.descriptor.message_type)


def _field_fix(f: schema.FieldInfo) -> _Fix | None:
    """Fixer of one value (one element for repeated fields); None when it goes in as it is."""
    kind = f.kind
    if kind < schema.MESSAGE:
        return _scalar_fix(f)
    if kind == schema.MESSAGE:
        assert f.message is not None
        sub_name = f.message.full_name
        if sub_name in _building:  # a recursive type: its table is looked up when used
            return lambda value: _fixed(value, _tables[sub_name])
        table = _table(f.message)
        if not table:
            return None
        return lambda value: _fixed(value, table)
    if kind == schema.TIMESTAMP:
        return _timestamp
    if kind == schema.WRAPPER:
        assert f.wrapped is not None
        inner = _scalar_fix(f.wrapped)
        if inner is None:
            return lambda value: {"value": value}
        return lambda value: {"value": inner(value)}
    # Any, Duration, FieldMask, Struct...: rare; built as a message by the slow path's filler.
    cls = _message_class(f)
    fill = _special_filler(f, True)

    def build(value: Any) -> Message:
        sub = cls()
        fill(sub, value)
        return sub

    return build


def _table(info: schema.MessageInfo) -> dict[str, _Fix]:
    name = info.full_name
    table = _tables.get(name)
    if table is not None:
        return table
    _building.add(name)
    try:
        table = {}
        for f in info.fields:
            fix = _field_fix(f)
            if fix is None:
                continue
            if f.repeated:
                element = fix
                fix = lambda values, element=element: [element(v) for v in values]  # noqa: E731
            table[f.name] = fix
        _tables[name] = table
        return table
    finally:
        _building.discard(name)


def _fixed(d: dict[str, Any], table: dict[str, _Fix]) -> dict[str, Any]:
    """``d`` with the values under ``table``'s keys fixed (a shallow copy; ``d`` is left alone)."""
    keys = table.keys() & d.keys()
    if not keys:
        return d
    out = dict(d)
    for key in keys:
        value = out[key]
        if value is not None:
            out[key] = table[key](value)
    return out


class WireEncoder:
    """Serialized bytes of one message type from canonical dicts (see the module docstring)."""

    def __init__(self, message_class: type[Message]) -> None:
        self.message_class = message_class
        desc: Descriptor = message_class.DESCRIPTOR
        self.table = _table(schema.message_info_for(desc))

    def message(self, d: dict[str, Any]) -> Message:
        """The message of ``d`` (as lenient :func:`dict_to_message` builds it)."""
        try:
            return self.message_class(**_fixed(d, self.table))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, DecodeError):
            return dict_to_message(d, self.message_class, lenient=True)

    def encode(self, d: dict[str, Any]) -> bytes:
        """Serialized message of ``d``; raises DecodeError for input the codec cannot read."""
        return self.message(d).SerializeToString()
