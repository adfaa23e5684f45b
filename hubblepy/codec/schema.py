"""Schema model for the JSON codec, from the protobuf descriptors.

Nothing here is written by hand per message: field order, names, kinds, enums,
wrappers, oneofs and well-known types all come from the descriptors that the
generated modules under ``hubblepy.api`` register in the default descriptor pool.

Loading protobuf and the generated modules costs more than the rest of a short
`hubble observe --input-file`, so the same model is also kept as plain data in
:mod:`hubblepy.codec.schema_data` (written by ``scripts/gen_protos.py`` from the
descriptors, checked against them by the tests): :func:`message_info` builds from
it without importing protobuf. The ``descriptor`` attributes are filled in when a
descriptor is looked up (:func:`message_info_for`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

# Generated modules that register the Hubble API in the default pool.
API_MODULES = (
    "hubblepy.api.flow.flow_pb2",
    "hubblepy.api.relay.relay_pb2",
    "hubblepy.api.observer.observer_pb2",
    "hubblepy.api.peer.peer_pb2",
)

# FieldDescriptorProto.Type numbers (stable protobuf wire-schema values).
_TYPE_DOUBLE = 1
_TYPE_FLOAT = 2
_TYPE_INT64 = 3
_TYPE_UINT64 = 4
_TYPE_INT32 = 5
_TYPE_FIXED64 = 6
_TYPE_FIXED32 = 7
_TYPE_BOOL = 8
_TYPE_STRING = 9
_TYPE_GROUP = 10
_TYPE_MESSAGE = 11
_TYPE_BYTES = 12
_TYPE_UINT32 = 13
_TYPE_ENUM = 14
_TYPE_SFIXED32 = 15
_TYPE_SFIXED64 = 16
_TYPE_SINT32 = 17
_TYPE_SINT64 = 18

# Field kinds as small ints (compared often on the slow path).
STRING, BYTES, BOOL, INT32, UINT32, INT64, UINT64, FLOAT, DOUBLE, ENUM, MESSAGE = range(11)
TIMESTAMP, DURATION, WRAPPER, ANY, FIELD_MASK, UNSUPPORTED = range(11, 17)

_SCALAR_KINDS = {
    _TYPE_STRING: STRING,
    _TYPE_BYTES: BYTES,
    _TYPE_BOOL: BOOL,
    _TYPE_INT32: INT32,
    _TYPE_SINT32: INT32,
    _TYPE_SFIXED32: INT32,
    _TYPE_UINT32: UINT32,
    _TYPE_FIXED32: UINT32,
    _TYPE_INT64: INT64,
    _TYPE_SINT64: INT64,
    _TYPE_SFIXED64: INT64,
    _TYPE_UINT64: UINT64,
    _TYPE_FIXED64: UINT64,
    _TYPE_FLOAT: FLOAT,
    _TYPE_DOUBLE: DOUBLE,
    _TYPE_ENUM: ENUM,
}

# Kind names as Go's protoreflect.Kind prints them (used in error texts).
_KIND_NAMES = {
    _TYPE_STRING: "string",
    _TYPE_BYTES: "bytes",
    _TYPE_BOOL: "bool",
    _TYPE_INT32: "int32",
    _TYPE_SINT32: "sint32",
    _TYPE_SFIXED32: "sfixed32",
    _TYPE_UINT32: "uint32",
    _TYPE_FIXED32: "fixed32",
    _TYPE_INT64: "int64",
    _TYPE_SINT64: "sint64",
    _TYPE_SFIXED64: "sfixed64",
    _TYPE_UINT64: "uint64",
    _TYPE_FIXED64: "fixed64",
    _TYPE_FLOAT: "float",
    _TYPE_DOUBLE: "double",
    _TYPE_ENUM: "enum",
    _TYPE_MESSAGE: "message",
    _TYPE_GROUP: "group",
}

_WRAPPERS = {
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_UNSUPPORTED_WKT = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


@dataclass(eq=False, slots=True)
class EnumInfo:
    """One enum type: name -> number, and number -> the name protojson prints."""

    full_name: str
    numbers: dict[str, int]
    names: dict[int, str]


@dataclass(eq=False, slots=True)
class FieldInfo:
    """One field of a message, with everything the codec needs to know."""

    name: str  # proto (text) name: the canonical JSON key
    json_name: str  # lowerCamel name, also accepted on input
    number: int
    index: int  # declaration index
    kind: int
    kind_name: str  # Go protoreflect kind name, for error texts
    repeated: bool
    presence: bool  # explicit presence: written even when it holds the zero value
    oneof: str | None  # full name of the containing oneof
    message: MessageInfo | None = None  # MESSAGE kind only
    enum: EnumInfo | None = None  # ENUM kind (or ENUM inside a wrapper: never)
    wrapped: FieldInfo | None = None  # WRAPPER kind: the "value" field of the wrapper
    descriptor: FieldDescriptor | None = None


@dataclass(eq=False, slots=True)
class MessageInfo:
    """One message type: fields in declaration order plus a name lookup table."""

    full_name: str
    fields: list[FieldInfo] = field(default_factory=list)
    by_key: dict[str, FieldInfo] = field(default_factory=dict)
    oneof_members: dict[str, list[FieldInfo]] = field(default_factory=dict)
    descriptor: Descriptor | None = None


_messages: dict[str, MessageInfo] = {}
_enums: dict[str, EnumInfo] = {}
_loaded = False


def _load_api() -> None:
    global _loaded
    if not _loaded:
        for name in API_MODULES:
            importlib.import_module(name)
        _loaded = True


def enum_info(desc: EnumDescriptor) -> EnumInfo:
    info = _enums.get(desc.full_name)
    if info is None:
        numbers: dict[str, int] = {}
        names: dict[int, str] = {}
        for value in desc.values:  # declaration order: the first name of a number wins
            numbers[value.name] = value.number
            names.setdefault(value.number, value.name)
        info = EnumInfo(desc.full_name, numbers, names)
        _enums[desc.full_name] = info
    return info


def _field_kind(fd: FieldDescriptor) -> int:
    if fd.type in (_TYPE_MESSAGE, _TYPE_GROUP):
        name = fd.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return TIMESTAMP
        if name == "google.protobuf.Duration":
            return DURATION
        if name == "google.protobuf.Any":
            return ANY
        if name == "google.protobuf.FieldMask":
            return FIELD_MASK
        if name in _WRAPPERS:
            return WRAPPER
        if name in _UNSUPPORTED_WKT:
            return UNSUPPORTED
        return MESSAGE
    return _SCALAR_KINDS[fd.type]


def _field_info(fd: FieldDescriptor) -> FieldInfo:
    kind = _field_kind(fd)
    oneof = fd.containing_oneof
    info = FieldInfo(
        name=fd.name,
        json_name=fd.json_name,
        number=fd.number,
        index=fd.index,
        kind=kind,
        kind_name=_KIND_NAMES[fd.type],
        repeated=fd.is_repeated,
        presence=bool(fd.has_presence) and not fd.is_repeated,
        oneof=oneof.full_name if oneof is not None else None,
        descriptor=fd,
    )
    if kind == ENUM:
        info.enum = enum_info(fd.enum_type)
    elif kind == MESSAGE:
        info.message = message_info_for(fd.message_type)
    elif kind == WRAPPER:
        info.wrapped = _field_info(fd.message_type.fields_by_name["value"])
    return info


def message_info_for(desc: Descriptor) -> MessageInfo:
    """Schema of a message descriptor (built once, cycles allowed)."""
    info = _messages.get(desc.full_name)
    if info is not None:
        if info.descriptor is None:  # built from schema_data: attach the descriptors now
            info.descriptor = desc
            for finfo in info.fields:
                finfo.descriptor = desc.fields_by_name[finfo.name]
                if finfo.wrapped is not None and finfo.wrapped.descriptor is None:
                    finfo.wrapped.descriptor = finfo.descriptor.message_type.fields_by_name["value"]
        return info
    info = MessageInfo(desc.full_name, descriptor=desc)
    _messages[desc.full_name] = info  # before the fields: recursive types terminate
    for fd in desc.fields:  # declaration order
        finfo = _field_info(fd)
        info.fields.append(finfo)
        if finfo.oneof is not None:
            info.oneof_members.setdefault(finfo.oneof, []).append(finfo)
    # JSON names are looked up first, then proto names (like Go protojson).
    for finfo in info.fields:
        info.by_key.setdefault(finfo.name, finfo)
    for finfo in info.fields:
        info.by_key[finfo.json_name] = finfo
    return info


def find_descriptor(full_name: str) -> Descriptor:
    from google.protobuf import descriptor_pool

    _load_api()
    return descriptor_pool.Default().FindMessageTypeByName(full_name)


def message_info(full_name: str) -> MessageInfo:
    """Schema of the message called ``full_name`` (e.g. ``"flow.FlowFilter"``)."""
    info = _messages.get(full_name)
    if info is None:
        if _from_data(full_name):
            return _messages[full_name]
        info = message_info_for(find_descriptor(full_name))
    return info


def enum_names(full_name: str) -> dict[int, str]:
    """number -> the name protojson prints, of an API enum (e.g. ``"flow.Verdict"``)."""
    return _enum(full_name).names


def enum_numbers(full_name: str) -> dict[str, int]:
    """Every name (aliases too) -> number, of an API enum (e.g. ``"flow.DropReason"``)."""
    return _enum(full_name).numbers


def _enum(full_name: str) -> EnumInfo:
    info = _enums.get(full_name)
    if info is None:
        from hubblepy.codec import schema_data

        if full_name in schema_data.ENUMS:
            info = _enum_from_data(full_name, schema_data.ENUMS[full_name])
        else:
            from google.protobuf import descriptor_pool

            _load_api()
            info = enum_info(descriptor_pool.Default().FindEnumTypeByName(full_name))
    return info


# -- the same model from plain data (schema_data.py) ---------------------------------------------


def snapshot() -> tuple[dict[str, list[tuple]], dict[str, list[tuple[str, int]]]]:
    """Every API message and enum as plain data, from the descriptors (what schema_data.py holds).

    A message is a list of fields ``(name, json_name, number, index, kind, kind_name, repeated,
    presence, oneof, type)`` where ``type`` names the message (MESSAGE), enum (ENUM) or wrapper
    message (WRAPPER) of the field; an enum is its ``(name, number)`` values in declaration order.
    """
    from google.protobuf import descriptor_pool

    _load_api()
    pool = descriptor_pool.Default()
    messages: dict[str, list[tuple]] = {}
    enums: dict[str, list[tuple[str, int]]] = {}
    files = [importlib.import_module(module).DESCRIPTOR for module in API_MODULES]
    pending = [
        pool.FindMessageTypeByName(d.full_name) for f in files for d in f.message_types_by_name.values()
    ]
    for enum in (e for f in files for e in f.enum_types_by_name.values()):
        enums[enum.full_name] = [(v.name, v.number) for v in enum.values]
    while pending:
        desc = pending.pop()
        if desc.full_name in messages:
            continue
        fields = []
        for fd in desc.fields:
            kind = _field_kind(fd)
            type_name = ""
            if kind == ENUM:
                type_name = fd.enum_type.full_name
                enums[type_name] = [(v.name, v.number) for v in fd.enum_type.values]
            elif kind in (MESSAGE, WRAPPER):
                type_name = fd.message_type.full_name
                pending.append(fd.message_type)
            oneof = fd.containing_oneof
            fields.append(
                (
                    fd.name,
                    fd.json_name,
                    fd.number,
                    fd.index,
                    kind,
                    _KIND_NAMES[fd.type],
                    fd.is_repeated,
                    bool(fd.has_presence) and not fd.is_repeated,
                    oneof.full_name if oneof is not None else None,
                    type_name,
                )
            )
        messages[desc.full_name] = fields
    return dict(sorted(messages.items())), dict(sorted(enums.items()))


def _enum_from_data(full_name: str, values: Any) -> EnumInfo:
    numbers: dict[str, int] = {}
    names: dict[int, str] = {}
    for name, number in values:
        numbers[name] = number
        names.setdefault(number, name)
    info = _enums[full_name] = EnumInfo(full_name, numbers, names)
    return info


def _from_data(full_name: str) -> bool:
    """Build ``full_name`` (and what it refers to) from schema_data; False if it is not there."""
    from hubblepy.codec import schema_data

    if full_name not in schema_data.MESSAGES:
        return False
    todo = [full_name]
    built: list[MessageInfo] = []
    while todo:
        name = todo.pop()
        if name in _messages:
            continue
        info = _messages[name] = MessageInfo(name)
        built.append(info)
        for (
            fname,
            json_name,
            number,
            index,
            kind,
            kind_name,
            repeated,
            presence,
            oneof,
            type_name,
        ) in schema_data.MESSAGES[name]:
            finfo = FieldInfo(fname, json_name, number, index, kind, kind_name, repeated, presence, oneof)
            if kind == ENUM:
                finfo.enum = _enums.get(type_name) or _enum_from_data(type_name, schema_data.ENUMS[type_name])
            elif kind in (MESSAGE, WRAPPER):
                todo.append(type_name)
            info.fields.append(finfo)
    for info in built:  # every referenced message exists now: link them
        for finfo, data in zip(info.fields, schema_data.MESSAGES[info.full_name], strict=True):
            if finfo.kind == MESSAGE:
                finfo.message = _messages[data[-1]]
            elif finfo.kind == WRAPPER:
                value = _messages[data[-1]].fields[0]
                finfo.wrapped = FieldInfo(
                    value.name,
                    value.json_name,
                    value.number,
                    value.index,
                    value.kind,
                    value.kind_name,
                    value.repeated,
                    value.presence,
                    value.oneof,
                )
            if finfo.oneof is not None:
                info.oneof_members.setdefault(finfo.oneof, []).append(finfo)
        for finfo in info.fields:
            info.by_key.setdefault(finfo.name, finfo)
        for finfo in info.fields:
            info.by_key[finfo.json_name] = finfo
    return True
